//! What the analysis computes for one metric, and the shapes it recognises in its growth.

use serde::{Deserialize, Serialize};

use super::*;

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
    /// A collector's sawtooth: the window climbs and falls at least [`shapes::SAWTOOTH_MIN_CYCLES`]
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
