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
use crate::tracker::metric::{Metric, MetricPattern, Source, Unit};
use crate::util::{GIB, MIB};

pub mod adaptive;
pub mod by_kind;
pub mod calibrate;
mod hourly;
pub mod logical;
pub mod noise;
#[cfg(test)]
mod tests;
mod units;
mod verdict;
mod warmup;

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

/// Limits for metrics whose name matches `pattern`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Which metrics: `host.rss@tree`, `host.rss@pid:*`, `gpu.*` (see [`MetricPattern`]).
    pub pattern: MetricPattern,
    /// The smallest growth rate that counts as a leak, in units per request.
    pub max_slope_per_request: f64,
    /// Growth over the measured window below this never counts as a leak (absolute floor).
    pub min_growth: f64,
    /// Set or changed by the user (`--max-slope`); the report says when it matched nothing.
    #[serde(default)]
    pub custom: bool,
}

/// What counts as a leak. Metrics that match no rule are analysed and reported, not judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Rules, first match wins.
    pub rules: Vec<Rule>,
    /// Confidence level of the intervals (and 1 - the family-wise error rate).
    pub confidence: f64,
    /// Requests dropped at the start of the measured window at least (on top of the automatic
    /// warm-up cut).
    pub min_warmup_requests: usize,
    /// Seed of every random draw, recorded in the report. The verdict itself is
    /// deterministic (rank-based intervals need no resampling); the seed drives
    /// [`calibrate`] and any future resampling method.
    pub seed: u64,
    /// The soak limit: growth per hour (in bytes) above which a judged metric leaks, under
    /// traffic or while idle, whatever its per-request slope.
    #[serde(default = "default_per_hour")]
    pub max_growth_per_hour: f64,
    /// Growth per hour is judged only over stretches at least this long (hours): a short run
    /// extrapolated to an hour says little.
    #[serde(default = "default_soak_min_hours")]
    pub soak_min_hours: f64,
    /// The traffic growth is projected at, in requests per day ("at 1M requests/day this
    /// process grows X GiB/day"): shown beside each slope, never judged.
    #[serde(default = "default_traffic")]
    pub traffic_per_day: f64,
}

/// Default soak limit: 256 MiB per hour (6 GiB a day).
pub const DEFAULT_MAX_GROWTH_PER_HOUR: f64 = 256.0 * MIB;
/// Default shortest stretch judged per hour: 2 minutes.
pub const DEFAULT_SOAK_MIN_HOURS: f64 = 2.0 / 60.0;

fn default_per_hour() -> f64 {
    DEFAULT_MAX_GROWTH_PER_HOUR
}

fn default_soak_min_hours() -> f64 {
    DEFAULT_SOAK_MIN_HOURS
}

fn default_traffic() -> f64 {
    DEFAULT_TRAFFIC_PER_DAY
}

/// Default traffic of the projections: one million requests a day (a busy SGLang replica).
pub const DEFAULT_TRAFFIC_PER_DAY: f64 = 1e6;

impl Thresholds {
    /// Set the leak limit of the rule for `pattern`. A pattern no rule has yet gets a new rule,
    /// checked first, with its source's calibrated growth floor (2 MiB for host and `/dev/shm`,
    /// 16 MiB for GPU metrics, none for the server's own counters).
    pub fn set_max_slope(&mut self, pattern: &MetricPattern, per_request: f64) {
        match self.rules.iter_mut().find(|r| r.pattern == *pattern) {
            Some(rule) => {
                rule.max_slope_per_request = per_request;
                rule.custom = true;
            }
            None => self.rules.insert(
                0,
                Rule {
                    pattern: pattern.clone(),
                    max_slope_per_request: per_request,
                    min_growth: default_floor(pattern.source()),
                    custom: true,
                },
            ),
        }
    }

    /// Set every rule the user did not set with [`set_max_slope`](Self::set_max_slope) to a
    /// budget of `per_million` bytes per million requests.
    pub fn set_budget(&mut self, per_million: f64) {
        for r in self.rules.iter_mut().filter(|r| !r.custom) {
            r.max_slope_per_request = per_million / 1e6;
        }
    }

    /// The rule that judges the metric named `metric`, if any (first match wins).
    pub fn rule_for(&self, metric: &str) -> Option<&Rule> {
        let metric: Metric = metric.parse().ok()?;
        self.rules.iter().find(|r| r.pattern.matches(&metric))
    }
}

/// The calibrated growth floor of a source's metrics (see [`Thresholds::default`]).
fn default_floor(source: Source) -> f64 {
    match source {
        Source::Host | Source::Shm => HOST_FLOOR,
        Source::Gpu => GPU_FLOOR,
        Source::Server => 0.0,
    }
}

impl Default for Thresholds {
    /// Limits set from the calibration in `docs/calibration.md`: host and `/dev/shm` metrics
    /// fail above 32 KiB/request with at least 2 MiB of growth, GPU metrics above
    /// 128 KiB/request with at least 16 MiB. At 100 requests that keeps false alarms on every
    /// clean shape at or below 1 % and catches 64 KiB/request host leaks and 0.5 MiB/request
    /// GPU leaks (2 MiB allocator segments) at least 95 % of the time.
    fn default() -> Self {
        let rule = |pattern: &str, slope: f64, floor: f64| Rule {
            pattern: pattern
                .parse()
                .unwrap_or_else(|e| unreachable!("{pattern}: {e}")),
            max_slope_per_request: slope,
            min_growth: floor,
            custom: false,
        };
        Self {
            rules: vec![
                rule("host.rss@tree", HOST_SLOPE, HOST_FLOOR),
                rule("host.rss@pid:*", HOST_SLOPE, HOST_FLOOR),
                rule("gpu.proc@tree", GPU_SLOPE, GPU_FLOOR),
                rule("gpu.proc@pid:*", GPU_SLOPE, GPU_FLOOR),
                rule("gpu.used@dev:*", GPU_SLOPE, GPU_FLOOR),
                rule("shm.bytes", HOST_SLOPE, HOST_FLOOR),
            ],
            confidence: 0.95,
            min_warmup_requests: 0,
            seed: 0x5EED_CAFE,
            max_growth_per_hour: DEFAULT_MAX_GROWTH_PER_HOUR,
            soak_min_hours: DEFAULT_SOAK_MIN_HOURS,
            traffic_per_day: DEFAULT_TRAFFIC_PER_DAY,
        }
    }
}

/// The default budget of every memory metric: 1 GiB per million requests (1.05 KiB/request).
/// At a million requests a day a process within it grows at most 1 GiB a day; SGLang's own
/// clean processes stay far below it once warm (docs/calibration.md).
pub const DEFAULT_BUDGET_PER_MILLION: f64 = GIB;
/// Default leak limit of host and shm metrics, bytes per request.
const HOST_SLOPE: f64 = DEFAULT_BUDGET_PER_MILLION / 1e6;
/// Default growth floor of host and shm metrics, bytes: growth below it is within what
/// allocator steps and jitter do on their own, and never counts as a leak.
const HOST_FLOOR: f64 = MIB;
/// Default leak limit of GPU metrics, bytes per request.
const GPU_SLOPE: f64 = DEFAULT_BUDGET_PER_MILLION / 1e6;
/// Default growth floor of GPU metrics, bytes: the caching allocator reserves in segments of
/// 2 and 20 MiB, so less than this is one or two segments.
const GPU_FLOOR: f64 = 16.0 * MIB;

fn nan() -> f64 {
    f64::NAN
}

fn one() -> u64 {
    1
}

/// Everything computed for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricAnalysis {
    /// Metric name.
    pub metric: String,
    /// Unit of the values, growths and slopes.
    pub unit: Unit,
    /// Whether a rule judged this metric (else it is only reported).
    pub judged: bool,
    /// Requests cut from the start as warm-up (automatic cut and minimum together).
    pub warmup_cut: usize,
    /// Points in the analysed (steady) window: readings, or batch means of `batch` readings.
    pub n: usize,
    /// Requests per point (1 unless the run was longer than the statistics' point budget).
    #[serde(default = "one")]
    pub batch: u64,
    /// Measured requests in the analysed window.
    #[serde(default)]
    pub requests: u64,
    /// Level at the start of the analysed window (median of its first tenth, at least 3
    /// readings). NaN when there is no reading.
    #[serde(with = "crate::util::nan_null")]
    pub baseline: f64,
    /// Value after the last measured request.
    #[serde(with = "crate::util::nan_null")]
    pub last: f64,
    /// Highest value in the analysed window.
    #[serde(with = "crate::util::nan_null")]
    pub peak: f64,
    /// Level at the end of the analysed window (median of its last tenth) minus `baseline`:
    /// medians, so one transient reading at either end does not count as growth.
    #[serde(with = "crate::util::nan_null")]
    pub growth: f64,
    /// The same over the last half of the window (used to tell a plateau from a staircase
    /// whose last step came late).
    #[serde(default = "nan")]
    #[serde(with = "crate::util::nan_null")]
    pub late_growth: f64,
    /// Growth per request over the analysed window.
    pub slope: Option<Estimate>,
    /// Growth per request over the last half of the analysed window: does growth go on?
    pub late_slope: Option<Estimate>,
    /// One-sided p-value of "slope <= threshold" (before the correction across metrics).
    pub p_value: Option<f64>,
    /// `p_value` after the Holm–Bonferroni correction across all judged metrics; a leak
    /// needs it at or below `1 - confidence`.
    #[serde(default)]
    pub p_value_adjusted: Option<f64>,
    /// Cooldown level minus the baseline (secondary signal).
    pub residual: Option<f64>,
    /// The seed tool's band for `growth` scaled to 100 requests (bytes metrics only).
    pub seed_band: Option<SeedBand>,
    /// Requests until the headroom is used up at the slope's point estimate.
    pub requests_to_oom: Option<f64>,
    /// For an inconclusive metric: about how many measured requests (warm-up included)
    /// would decide it, from how the interval shrinks with n. None when no run length would
    /// (the estimate sits on the limit) or the outcome is decided.
    #[serde(default)]
    pub requests_to_decide: Option<u64>,
    /// Readings dropped as missing (NaN or infinite).
    #[serde(default)]
    pub missing: usize,
    /// How much autocorrelation widened the slope's interval: the variance factor n / ESS
    /// (1 = independent readings; steps and sawtooths give more).
    #[serde(default)]
    pub autocorrelation_inflation: Option<f64>,
    /// Growth that stopped: a bounded cache that filled and then stayed flat (the outcome is
    /// then a pass, with this named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plateau: Option<Plateau>,
    /// A collector's sawtooth: the window climbs and falls at least [`verdict::SAWTOOTH_MIN_CYCLES`]
    /// times, so the trend is judged on its cycles' troughs too (where the window ends in a
    /// cycle moves a straight line's slope; the troughs do not care).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sawtooth: Option<Sawtooth>,
    /// Growth that came in a few jumps (an allocator's heap growing in chunks): the jumps and
    /// the slope of what is left between them. An adaptive run does not stop on a leak that
    /// this explains (see `adaptive::decide`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Steps>,
    /// Growth that slowed down: the first half of the window grew confidently faster than the
    /// second, so the first half was judged as warm-up and only the second half was judged
    /// (`slope` is then the second half's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deceleration: Option<Deceleration>,
    /// Whether the judged window grew like a straight line: confidently in both its halves and
    /// no longer slowing down. A leak needs it.
    #[serde(default)]
    pub steady: bool,
    /// Growth the cooldown (after the engine's cache flush) gave back: what stayed is within
    /// the limit per measured request, so the memory was held, not lost (a flushable cache, a
    /// collector's sawtooth). The outcome is then a pass, with this named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_back: Option<GivenBack>,
    /// The slope projected at `thresholds.traffic_per_day`: growth per day at that traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<f64>,
    /// Growth per hour under traffic and while idle (soaks: stretches of at least
    /// `thresholds.soak_min_hours`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hourly: Vec<HourlyAnalysis>,
    /// The growth split by request kind, when the run mixed kinds and this metric did not pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_kind: Option<by_kind::KindAttribution>,
    /// Requests before the automatic warm-up cut, before any deceleration cut: where the
    /// per-kind block test starts (every kind shares a slowing warm-up, so blocks compare like
    /// with like from there, and twice the blocks decide a rare kind).
    #[serde(skip)]
    pub(crate) warmed_from: usize,
    /// Outcome for this metric: the worst of the per-request and the hourly judgements.
    pub outcome: Outcome,
    /// Why, in sentences for a person.
    pub reasons: Vec<String>,
}

/// Bounded growth: the metric grew, then stayed flat for a confident stretch to the end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    /// The measured request from which it is flat.
    pub since_request: u64,
    /// Growth from the first measured request to the plateau's level (what the cache took).
    #[serde(with = "crate::util::nan_null")]
    pub growth: f64,
    /// The plateau's level (absent, read as NaN, in reports made before it was added).
    #[serde(default = "nan", with = "crate::util::nan_null")]
    pub level: f64,
    /// Requests on the plateau (it runs to the end of the window).
    pub flat_requests: u64,
    /// Upper bound of the plateau's slope (per request), confidently below the limit.
    #[serde(with = "crate::util::nan_null")]
    pub slope_hi: f64,
}

/// A sawtooth in the judged window: memory that climbs and is freed all at once, cycle after
/// cycle (a garbage collector, a pool trimmed when full).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sawtooth {
    /// Falls seen (each ends a cycle).
    pub cycles: usize,
    /// The median fall.
    #[serde(with = "crate::util::nan_null")]
    pub height: f64,
    /// Slope of the cycles' troughs (the lowest reading after each fall), with its interval.
    pub troughs: Estimate,
}

/// Jumps in the judged window: readings that moved by at least a quarter of the floor and eight
/// times the median step at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Steps {
    /// How many jumps (up or down).
    pub count: usize,
    /// Their sum (signed).
    #[serde(with = "crate::util::nan_null")]
    pub total: f64,
    /// Slope of the window with the jumps taken out, with its interval.
    pub between: Estimate,
}

/// Growth that slowed down over the window: judged on its second half only.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Deceleration {
    /// Slope over the first half of the window (before the cut).
    pub early: Estimate,
    /// Slope over the second half (what is judged).
    pub late: Estimate,
    /// The measured request the judged half starts at.
    pub from_request: u64,
}

/// Growth the cooldown gave back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GivenBack {
    /// Growth from the first measured request to the end of the window.
    #[serde(with = "crate::util::nan_null")]
    pub grew: f64,
    /// What was still held after the cooldown, against the first measured request (may be
    /// negative: below where it started).
    #[serde(with = "crate::util::nan_null")]
    pub kept: f64,
    /// Whether the growth reached a cap before the end (a plateau): `false` means it grew
    /// until the flush, with no cap seen.
    pub capped: bool,
}

/// A per-request limit as a budget a person can reason about: `1 KiB/request` is "1 GiB per
/// million requests".
pub fn budget(unit: Unit, per_request: f64) -> String {
    match unit {
        Unit::Bytes => format!(
            "{} per million requests",
            crate::util::human_bytes(per_request * 1e6)
        ),
        _ => format!("{:.3} per million requests", per_request * 1e6),
    }
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
