//! Statistics: request-indexed series in, a [`Verdict`] out.
//!
//! Pure functions over numbers, no I/O, no clock: every function here is unit-testable
//! without a server. The tracker's [`Timeline`](crate::Timeline) is turned into
//! [`RequestSeries`] by the scenario; this module never sees a process.
//!
//! Per metric: drop missing readings, cut the warm-up (explicit minimum plus MSER-5 on
//! detrended batch means, never more than half the run), fit a Theil–Sen slope with Sen's
//! Kendall interval widened for autocorrelation, test "slope <= limit" with a one-sided
//! Mann–Kendall p-value, correct the p-values of all judged metrics together (Holm), then
//! apply the rules in [`Verdict`]'s docs. The verdict itself draws no random numbers; the
//! seeded generator lives in [`calibrate`], which measures false-alarm rates and power on
//! synthetic series ([`noise`]). docs/design/statistics.md explains the choices.

use serde::{Deserialize, Serialize};

use crate::load::KindSequence;
use crate::tracker::metric::Unit;

pub mod adaptive;
pub mod by_kind;
pub mod calibrate;
mod hourly;
pub mod logical;
mod metric;
pub mod noise;
mod shapes;
#[cfg(test)]
mod tests;
mod thresholds;
mod units;
mod verdict;
mod warmup;
pub use metric::{Deceleration, GivenBack, MetricAnalysis, Plateau, Sawtooth, Steps};
pub use thresholds::{
    DEFAULT_BUDGET_PER_MILLION, DEFAULT_MAX_GROWTH_PER_HOUR, DEFAULT_SOAK_MIN_HOURS,
    DEFAULT_TRAFFIC_PER_DAY, Rule, Thresholds, budget,
};

/// The statistics' own types and the reducer the tracker's store fills live in the leaf below
/// everything (`crate::stats`); they are named here, where a user looks for them.
pub use crate::stats::{BatchMeans, Batched, ConfidenceInterval, Estimate, MAX_POINTS};
pub(crate) use hourly::human_hours;
pub use hourly::{HourlyAnalysis, Stretch};
pub use logical::{IdleAccounting, IdleCheck};
pub use verdict::MIN_JUDGED;

/// One metric's values after each measured request (index 0 = first measured request), as batch
/// means: at most [`MAX_POINTS`] points however long the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSeries {
    /// Metric name, e.g. `host.rss@tree`.
    pub metric: String,
    /// Unit of the values (decides how they are shown).
    pub unit: Unit,
    /// Value after each measured request (or the mean over each batch of requests), in the
    /// metric's unit, positioned by request index.
    pub values: Batched,
    /// Readings taken after the cooldown settled, if a cooldown ran.
    pub cooldown: Vec<f64>,
    /// Room left before an out-of-memory failure, in the metric's unit (free GPU memory,
    /// host `MemAvailable`), used to project `requests_to_oom`.
    pub headroom: Option<f64>,
    /// The same metric against time during the measured phase (hours since its start), for the
    /// growth per hour; `None` when not recorded.
    #[serde(default)]
    pub by_time: Option<Batched>,
    /// The same metric against time during the idle phase, if there was one.
    #[serde(default)]
    pub idle: Option<Batched>,
}

impl RequestSeries {
    /// A series of raw values, one after each measured request from request 0.
    pub fn raw(metric: impl Into<String>, unit: Unit, values: &[f64]) -> Self {
        Self {
            metric: metric.into(),
            unit,
            values: Batched::from_requests(values, 0),
            cooldown: Vec::new(),
            headroom: None,
            by_time: None,
            idle: None,
        }
    }
}

/// The outcome of a metric or of a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Growth is confidently below the threshold.
    Pass,
    /// Growth too small or a run too short to call either way.
    Inconclusive,
    /// Growth confidently above the threshold, and still going on at the end of the run.
    Leak,
}

impl Outcome {
    /// The word, as the JSON spells it: `pass`, `inconclusive`, `leak`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Inconclusive => "inconclusive",
            Outcome::Leak => "leak",
        }
    }
}

/// The seed tool's growth bands, per 100 requests (reported beside our verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedBand {
    /// Growth < 100 MiB per 100 requests.
    Stable,
    /// Growth 100–500 MiB per 100 requests.
    Concern,
    /// Growth > 500 MiB per 100 requests.
    Leak,
}

/// The verdict of a run: the worst judged metric decides.
///
/// A judged metric (one that matches a [`Rule`]) is
/// - **pass** when it grew less than the rule's `min_growth` with a slope interval reaching
///   zero, or its slope interval lies wholly below `max_slope_per_request` (the budget: 1 GiB
///   per million requests by default), or the cooldown's flush gave its growth back;
/// - **leak** when the Holm-adjusted one-sided p-value of "slope <= limit" is at most
///   `1 - confidence`, it grew at least the floor, and the growth is *steady*: both halves of
///   the judged window grow confidently, and no deceleration is still going on. Growth that
///   slowed down is judged on the part after it slowed (see `MetricAnalysis::deceleration`);
/// - **inconclusive** otherwise, with the reason and, where a longer run would settle it,
///   `requests_to_decide`.
///
/// With a request mix, each kind's growth per request of that kind is tested too
/// ([`by_kind`]), Holm-corrected with every other test of the run. Overall: leak if any judged
/// metric (or kind) leaks, else inconclusive if any is, else pass; with nothing judged,
/// inconclusive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Overall outcome.
    pub outcome: Outcome,
    /// Why, in sentences for a person (the leaking or undecided metrics first).
    pub reasons: Vec<String>,
    /// Per-metric results, judged metrics first.
    pub metrics: Vec<MetricAnalysis>,
    /// The thresholds used.
    pub thresholds: Thresholds,
    /// The significance level leaks were judged at: `1 - confidence`, or the last look's level
    /// in an [adaptive](adaptive) run (absent in reports before schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
}

impl Verdict {
    /// The analysis of one metric.
    pub fn metric(&self, name: &str) -> Option<&MetricAnalysis> {
        self.metrics.iter().find(|m| m.metric == name)
    }

    /// Judged metrics whose outcome is [`Outcome::Leak`].
    pub fn leaks(&self) -> impl Iterator<Item = &MetricAnalysis> {
        self.metrics
            .iter()
            .filter(|m| m.judged && m.outcome == Outcome::Leak)
    }
}

/// Analyse every series and combine the judged ones into a verdict.
///
/// Empty or all-NaN series are reported with `n = 0` and an inconclusive outcome when judged.
pub fn analyze(series: &[RequestSeries], thresholds: &Thresholds) -> Verdict {
    analyze_at(series, thresholds, 1.0 - thresholds.confidence)
}

/// [`analyze`] with leaks judged at significance level `alpha` (one look of an
/// [adaptive](adaptive) run) instead of `1 - confidence`; the intervals keep the configured
/// confidence.
pub fn analyze_at(series: &[RequestSeries], thresholds: &Thresholds, alpha: f64) -> Verdict {
    analyze_with(series, thresholds, alpha, None)
}

/// [`analyze_at`] for a run that mixed request kinds: each judged metric's growth is also split
/// by kind ([`by_kind`]) and each kind's growth per request of that kind is judged against the
/// metric's limit, corrected together with every other test of the run, so a leak confined to
/// one kind (rejections, aborts) is not diluted by the others.
pub fn analyze_with(
    series: &[RequestSeries],
    thresholds: &Thresholds,
    alpha: f64,
    kinds: Option<&KindSequence>,
) -> Verdict {
    let mut metrics: Vec<MetricAnalysis> = series
        .iter()
        .map(|s| verdict::measure(s, thresholds).0)
        .collect();
    // A process seen for a small part of the run (a compiler child such as Triton's `ptxas`, a
    // helper that exits) cannot show a per-request trend; its memory counts in the tree.
    let longest = series.iter().map(|s| s.values.readings).max().unwrap_or(0);
    for (m, s) in metrics.iter_mut().zip(series) {
        let per_process = crate::tracker::metric::pid_of(&s.metric).is_some();
        if m.judged && per_process && (s.values.readings as f64) < TRANSIENT_SHARE * longest as f64
        {
            m.judged = false;
            m.p_value = None;
            m.reasons.push(format!(
                "a transient process, seen after {} of {longest} measured requests: not judged on its own (its memory counts in the tree)",
                s.values.readings
            ));
        }
    }
    for (m, s) in metrics.iter_mut().zip(series) {
        if !m.judged {
            continue;
        }
        let stretches = [
            (s.by_time.as_ref(), Stretch::Traffic),
            (s.idle.as_ref(), Stretch::Idle),
        ];
        for (b, stretch) in stretches {
            if let Some(h) = b.and_then(|b| {
                hourly::measure(
                    b,
                    stretch,
                    thresholds.max_growth_per_hour,
                    s.headroom,
                    thresholds,
                )
            }) {
                m.hourly.push(h);
            }
        }
    }
    if let Some(kinds) = kinds.filter(|k| k.names.len() >= 2) {
        for (m, s) in metrics.iter_mut().zip(series) {
            if let (true, Some(rule)) = (m.judged, thresholds.rule_for(&s.metric)) {
                m.by_kind = split_by_kind(m, s, kinds, rule, thresholds.confidence);
            }
        }
    }
    holm(&mut metrics);
    for (m, s) in metrics.iter_mut().zip(series) {
        let rule = thresholds.rule_for(&s.metric).filter(|_| m.judged);
        verdict::judge(
            m,
            rule,
            alpha,
            s.values.readings,
            thresholds.traffic_per_day,
        );
        if let (Some(rule), Some(mut a)) = (rule, m.by_kind.take()) {
            judge_kinds(m, &mut a, rule, alpha);
            m.by_kind = Some(a);
        }
        if let Some(rule) = rule {
            // A series with no request index at all (fleet telemetry judged without a request
            // counter) is judged against time alone: its hourly judgement decides.
            let time_only = s.values.readings == 0 && !m.hourly.is_empty();
            if time_only {
                m.reasons.clear();
            }
            let unit = m.unit;
            let fmt = |v: f64| units::fmt_value(unit, v);
            let given_back = m.given_back.is_some();
            for h in &mut m.hourly {
                hourly::judge(h, alpha, rule.min_growth, &fmt);
                // The same growth under traffic, by the clock: what the cooldown gave back is
                // not a leak per hour either, nor undecided (real SGLang's collected reference
                // cycles grew +1 GiB/hour for 3 minutes and were all returned; on a busy machine
                // the same cycles read +153 MiB/hour, CI −435..+1004, "not clearly below").
                if given_back && h.stretch == Stretch::Traffic && h.outcome != Outcome::Pass {
                    h.outcome = Outcome::Pass;
                    h.reason
                        .push_str("; the cooldown gave it back: memory that is freed, not a leak");
                }
                m.reasons.push(h.reason.clone());
            }
            let worst = m.hourly.iter().map(|h| h.outcome).max();
            // A per-request leak stays a leak; a pass needs every stretch to pass.
            if let Some(w) = worst
                && (w > m.outcome || time_only)
            {
                m.outcome = w;
            }
        }
    }
    metrics.sort_by_key(|m| (!m.judged, std::cmp::Reverse(m.outcome)));
    let outcome = metrics
        .iter()
        .filter(|m| m.judged)
        .map(|m| m.outcome)
        .max()
        .unwrap_or(Outcome::Inconclusive);
    let mut reasons: Vec<String> = metrics
        .iter()
        .filter(|m| m.judged && m.outcome == outcome)
        .flat_map(|m| m.reasons.iter().map(move |r| format!("{}: {r}", m.metric)))
        .collect();
    if !metrics.iter().any(|m| m.judged) {
        reasons.push("no metric matched a threshold rule, so nothing was judged".into());
    }
    Verdict {
        outcome,
        reasons,
        metrics,
        thresholds: thresholds.clone(),
        alpha: Some(alpha),
    }
}

/// The growth of `m` (measured from `s`) split by request kind over its judged window.
fn split_by_kind(
    m: &MetricAnalysis,
    s: &RequestSeries,
    kinds: &KindSequence,
    rule: &Rule,
    level: f64,
) -> Option<by_kind::KindAttribution> {
    let first = s.values.x.first().copied().unwrap_or(0.0);
    let from = s
        .values
        .x
        .iter()
        .take_while(|x| **x < first + m.warmed_from.min(m.warmup_cut) as f64)
        .count();
    let unit = m.unit;
    let mut a = by_kind::attribute(
        s,
        from,
        kinds,
        rule.max_slope_per_request,
        level,
        move |v| units::fmt_value(unit, v),
    )?;
    by_kind::test_blocks(&mut a, s, from, kinds, rule.max_slope_per_request, level);
    Some(a)
}

/// Judges each kind of `a` (its p-values corrected): a kind that leaks makes the metric leak,
/// unless the metric's growth was bounded or given back. The split's finding joins the
/// reasons of a metric that did not pass.
fn judge_kinds(m: &mut MetricAnalysis, a: &mut by_kind::KindAttribution, rule: &Rule, alpha: f64) {
    let unit = m.unit;
    let bounded = m.plateau.is_some() || m.given_back.is_some();
    let found = if bounded {
        Vec::new()
    } else {
        by_kind::judge(a, alpha, rule.min_growth, |v| units::fmt_value(unit, v))
    };
    if !found.is_empty() {
        m.outcome = Outcome::Leak;
        m.reasons.extend(found);
    } else if m.outcome != Outcome::Pass {
        m.reasons.push(a.finding.clone());
    }
}

/// A per-process metric with readings after fewer than this share of the run's measured requests
/// belongs to a transient process and is reported, not judged.
const TRANSIENT_SHARE: f64 = 0.5;

/// Holm–Bonferroni step-down adjustment of every judged test's p-value (per request, and per
/// hour under traffic and idle), so that watching twenty metrics does not multiply the false
/// alarms by twenty.
fn holm(metrics: &mut [MetricAnalysis]) {
    enum Test {
        PerRequest,
        Hourly(usize),
        Kind(usize),
    }
    let mut order: Vec<(usize, Test, f64)> = Vec::new();
    for (i, m) in metrics.iter().enumerate().filter(|(_, m)| m.judged) {
        if let Some(p) = m.p_value {
            order.push((i, Test::PerRequest, p));
        }
        for (k, h) in m.hourly.iter().enumerate() {
            if let Some(p) = h.p_value {
                order.push((i, Test::Hourly(k), p));
            }
        }
        for (k, s) in m.by_kind.iter().flat_map(|a| a.kinds.iter().enumerate()) {
            if let Some(p) = s.p_value {
                order.push((i, Test::Kind(k), p));
            }
        }
    }
    order.sort_by(|a, b| a.2.total_cmp(&b.2));
    let m = order.len();
    let mut running: f64 = 0.0;
    for (rank, (i, test, p)) in order.into_iter().enumerate() {
        running = running.max(((m - rank) as f64 * p).min(1.0));
        let adjusted = Some(running);
        match test {
            Test::PerRequest => metrics[i].p_value_adjusted = adjusted,
            Test::Hourly(k) => metrics[i].hourly[k].p_value_adjusted = adjusted,
            Test::Kind(k) => {
                if let Some(a) = &mut metrics[i].by_kind {
                    a.kinds[k].p_value_adjusted = adjusted;
                }
            }
        }
    }
}
