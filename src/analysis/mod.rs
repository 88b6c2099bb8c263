//! Statistics: request-indexed series in, a [`Verdict`] out.
//!
//! Pure functions over numbers, no I/O, seeded randomness: every function here is
//! unit-testable without a server. The tracker's [`Timeline`](crate::Timeline) is turned into
//! [`RequestSeries`] by the scenario; this module never sees a process.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A point estimate with its standard error and confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Point estimate.
    pub point: f64,
    /// Standard error of the estimate.
    pub std_err: f64,
    /// Confidence interval.
    pub ci: ConfidenceInterval,
}

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

/// One metric's values after each measured request (index 0 = first measured request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSeries {
    /// Metric name, e.g. `host.rss@tree`.
    pub metric: String,
    /// Value after each measured request, in the metric's unit.
    pub values: Vec<f64>,
    /// Readings taken after the cooldown settled, if a cooldown ran.
    pub cooldown: Vec<f64>,
    /// Room left before an out-of-memory failure, in the metric's unit (free GPU memory,
    /// host `MemAvailable`), used to project `requests_to_oom`.
    pub headroom: Option<f64>,
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
    /// Metric name pattern: an exact name, or a prefix ending in `*` (`host.rss@pid:*`).
    pub pattern: String,
    /// The smallest growth rate that counts as a leak, in units per request.
    pub max_slope_per_request: f64,
    /// Growth over the measured window below this never counts as a leak (absolute floor).
    pub min_growth: f64,
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
    /// Seed of every random draw (bootstrap), recorded in the report.
    pub seed: u64,
}

impl Thresholds {
    /// The rule that judges `metric`, if any.
    pub fn rule_for(&self, metric: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| match r.pattern.strip_suffix('*') {
            Some(prefix) => metric.starts_with(prefix),
            None => metric == r.pattern,
        })
    }
}

impl Default for Thresholds {
    fn default() -> Self {
        const KIB: f64 = 1024.0;
        const MIB: f64 = 1024.0 * 1024.0;
        let rule = |pattern: &str, slope: f64, floor: f64| Rule {
            pattern: pattern.to_owned(),
            max_slope_per_request: slope,
            min_growth: floor,
        };
        Self {
            rules: vec![
                rule("host.rss@tree", 16.0 * KIB, 4.0 * MIB),
                rule("host.rss@pid:*", 16.0 * KIB, 4.0 * MIB),
                rule("gpu.proc@tree", 128.0 * KIB, 16.0 * MIB),
                rule("gpu.proc@pid:*", 128.0 * KIB, 16.0 * MIB),
                rule("gpu.used@dev:*", 128.0 * KIB, 16.0 * MIB),
                rule("shm.bytes", 16.0 * KIB, 4.0 * MIB),
            ],
            confidence: 0.95,
            min_warmup_requests: 0,
            seed: 0x5EED_CAFE,
        }
    }
}

/// Everything computed for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricAnalysis {
    /// Metric name.
    pub metric: String,
    /// Whether a rule judged this metric (else it is only reported).
    pub judged: bool,
    /// Requests cut from the start as warm-up (automatic cut and minimum together).
    pub warmup_cut: usize,
    /// Requests in the analysed (steady) window.
    pub n: usize,
    /// Value at the start of the analysed window.
    pub baseline: f64,
    /// Value after the last measured request.
    pub last: f64,
    /// Highest value in the analysed window.
    pub peak: f64,
    /// `last - baseline`.
    pub growth: f64,
    /// Growth per request over the analysed window.
    pub slope: Option<Estimate>,
    /// Growth per request over the last half of the analysed window: does growth go on?
    pub late_slope: Option<Estimate>,
    /// One-sided p-value of "slope <= threshold" (before the correction across metrics).
    pub p_value: Option<f64>,
    /// Cooldown level minus the baseline (secondary signal).
    pub residual: Option<f64>,
    /// The seed tool's band for `growth` scaled to 100 requests (bytes metrics only).
    pub seed_band: Option<SeedBand>,
    /// Requests until the headroom is used up at the slope's point estimate.
    pub requests_to_oom: Option<f64>,
    /// Outcome for this metric.
    pub outcome: Outcome,
    /// Why, in sentences for a person.
    pub reasons: Vec<String>,
}

/// The verdict of a run: the worst judged metric decides.
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
}

impl Verdict {
    /// The analysis of one metric.
    pub fn metric(&self, name: &str) -> Option<&MetricAnalysis> {
        self.metrics.iter().find(|m| m.metric == name)
    }

    /// Judged metrics whose outcome is [`Outcome::Leak`].
    pub fn leaks(&self) -> impl Iterator<Item = &MetricAnalysis> {
        self.metrics.iter().filter(|m| m.judged && m.outcome == Outcome::Leak)
    }
}

/// Analyse every series and combine the judged ones into a verdict.
///
/// Empty or all-NaN series are reported with `n = 0` and an inconclusive outcome when judged.
pub fn analyze(series: &[RequestSeries], thresholds: &Thresholds) -> Verdict {
    let _ = BTreeMap::<(), ()>::new();
    let mut metrics: Vec<MetricAnalysis> =
        series.iter().map(|s| simple::analyze_one(s, thresholds)).collect();
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
    Verdict { outcome, reasons, metrics, thresholds: thresholds.clone() }
}

mod simple;
