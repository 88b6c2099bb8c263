//! What counts as a leak: the per-metric rules, their defaults, and the limit as a budget.

use serde::{Deserialize, Serialize};

use crate::tracker::metric::{Metric, MetricPattern, Source, Unit};
use crate::util::{GIB, MIB};

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
