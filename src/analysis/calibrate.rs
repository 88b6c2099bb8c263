//! Calibration: false-alarm rate on clean shapes and power against leak size, on synthetic
//! series ([`noise`](super::noise)), next to the seed tool's first/last rule.
//!
//! Pure and seeded: the same [`CalibrationConfig`] gives the same table. Each shape draws
//! from its own ChaCha8 stream, so adding a row does not change the others.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::adaptive::{self, StopReason};
use super::noise::{RecordedNoise, Shape};
use super::{MIN_JUDGED, Outcome, RequestSeries, Thresholds, Verdict, analyze_with};
use crate::load::KindSequence;
use crate::util::{KIB, MIB};

/// Metrics a realistic run judges together (tree, three processes, GPU per process and
/// device, shm): the power column "among 8" applies Holm's smallest-p bound for that many.
const FAMILY: f64 = 8.0;

/// What to calibrate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationConfig {
    /// Runs per shape (each a fresh series).
    pub runs: usize,
    /// Measured requests per run.
    pub requests: usize,
    /// Seed of the generator.
    pub seed: u64,
    /// Thresholds under test.
    pub thresholds: Thresholds,
    /// Host leak sizes, bytes per request.
    pub host_leaks: Vec<f64>,
    /// GPU leak sizes, bytes per request (each run for 2 MiB and 20 MiB segments).
    pub gpu_leaks: Vec<f64>,
    /// Judge with the adaptive rule up to this budget of requests (`None`: one look at
    /// `requests`, the fixed-length rule).
    #[serde(default)]
    pub budget: Option<usize>,
    /// Only the shapes whose name starts with one of these (empty: every shape). Each shape
    /// keeps its own random stream, so a row's numbers do not depend on the others.
    #[serde(default)]
    pub only: Vec<String>,
    /// Keep the reasons of up to this many wrong verdicts per shape (0: none).
    #[serde(default)]
    pub explain: usize,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            runs: 1000,
            requests: 100,
            seed: 20_261_127,
            thresholds: Thresholds::default(),
            host_leaks: [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
                .iter()
                .map(|k| k * KIB)
                .collect(),
            gpu_leaks: [0.125, 0.25, 0.375, 0.5, 1.0, 2.0]
                .iter()
                .map(|m| m * MIB)
                .collect(),
            budget: None,
            only: Vec::new(),
            explain: 0,
        }
    }
}

/// One shape's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRow {
    /// Shape name.
    pub shape: String,
    /// Whether a leak was planted (the rates are power) or not (false-positive rates).
    pub planted: bool,
    /// Runs.
    pub runs: usize,
    /// Share of runs judged leak.
    pub leak: f64,
    /// Share of runs judged leak had 8 metrics been judged together (Holm).
    pub leak_among_8: f64,
    /// Share of runs judged inconclusive.
    pub inconclusive: f64,
    /// Share of runs the seed tool fails (growth per 100 requests > 100 MiB).
    pub seed_fail: f64,
    /// Adaptive rule: mean measured requests a run took.
    #[serde(default)]
    pub mean_requests: Option<f64>,
    /// Adaptive rule: share of runs stopped before the planned count (a certain leak).
    #[serde(default)]
    pub stopped_early: Option<f64>,
    /// Adaptive rule: share of runs that went past the planned count.
    #[serde(default)]
    pub extended: Option<f64>,
    /// With [`CalibrationConfig::explain`]: the reasons of the first few wrong verdicts (a
    /// clean run not passing, a planted leak not called), for whoever tunes the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wrong: Vec<String>,
}

/// The calibration table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationTable {
    /// The configuration that produced it.
    pub config: CalibrationConfig,
    /// Clean shapes first, then planted leaks by size.
    pub rows: Vec<CalibrationRow>,
}

/// Clean shapes the false-positive target applies to, and the stress case it does not.
fn negatives() -> Vec<Shape> {
    vec![
        Shape::HostWhite,
        Shape::HostAllocatorSteps,
        Shape::HostBoundedCache,
        Shape::HostSawtoothGc,
        Shape::HostWarmupStep,
        Shape::GpuAllocFree,
        Shape::GpuWarmupStep,
        Shape::GpuMidRunSegment,
        Shape::HostLateCache,
        Shape::HostDecelerating,
        Shape::HostSawtoothBusy,
        Shape::HostFlushableCache,
        Shape::HostMixClean,
    ]
}

/// Run the calibration.
pub fn run(config: &CalibrationConfig) -> CalibrationTable {
    let mut shapes = negatives();
    shapes.extend(
        config
            .host_leaks
            .iter()
            .map(|&per_request| Shape::HostLeak { per_request }),
    );
    for segment in [2.0 * MIB, 20.0 * MIB] {
        shapes.extend(config.gpu_leaks.iter().map(|&per_request| Shape::GpuLeak {
            per_request,
            segment,
        }));
    }
    // Appended, not inserted: every earlier shape keeps its random stream (and its numbers).
    shapes.extend([0.3, 0.5, 0.7].map(|at| Shape::HostPlateau { at }));
    for noise in RecordedNoise::ALL {
        for per_request in [0.0, 2.0 * KIB, 4.0 * KIB] {
            shapes.push(Shape::Recorded { noise, per_request });
        }
    }
    shapes.extend([MIB, 8.0 * MIB].map(|per_request| Shape::HostLeak { per_request }));
    shapes.extend([16.0 * KIB, 64.0 * KIB].map(|per_request| Shape::HostKindLeak { per_request }));
    let rows = shapes
        .iter()
        .enumerate()
        .filter(|(_, shape)| {
            let name = shape.name();
            config.only.is_empty() || config.only.iter().any(|p| name.starts_with(p.as_str()))
        })
        .map(|(k, shape)| row(config, k as u64, shape))
        .collect();
    CalibrationTable {
        config: config.clone(),
        rows,
    }
}

fn row(config: &CalibrationConfig, stream: u64, shape: &Shape) -> CalibrationRow {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    rng.set_stream(stream);
    let alpha = 1.0 - config.thresholds.confidence;
    let (mut leak, mut leak8, mut inconclusive, mut seed_fail) = (0usize, 0usize, 0usize, 0usize);
    let (mut used, mut early, mut extended) = (0u64, 0usize, 0usize);
    let n = config.requests;
    let mut wrong = Vec::new();
    for run in 0..config.runs {
        let kinds = shape
            .mix()
            .map(|mix| KindSequence::from_mix(&mix, config.budget.unwrap_or(n).max(n) as u64));
        let (verdict, level, requests) = match config.budget {
            None => {
                let (values, cooldown) = shape.generate_run(n, n, &mut rng);
                seed_fail += usize::from(seed_rule_fails(&values));
                let mut s = series(shape, &values);
                s.cooldown = cooldown;
                (
                    analyze_with(&[s], &config.thresholds, alpha, kinds.as_ref()),
                    alpha,
                    n,
                )
            }
            Some(budget) => {
                let (values, cooldown) = shape.generate_run(n, budget.max(n), &mut rng);
                seed_fail += usize::from(seed_rule_fails(&values[..n]));
                let (verdict, level, requests, stopped) = judge_adaptively(
                    shape.metric(),
                    &values,
                    &cooldown,
                    kinds.as_ref(),
                    n,
                    &config.thresholds,
                );
                early += usize::from(stopped == StopReason::LeakCertain);
                extended += usize::from(requests > n);
                (verdict, level, requests)
            }
        };
        used += requests as u64;
        let m = &verdict.metrics[0];
        let right = if shape.is_leak() {
            Outcome::Leak
        } else {
            Outcome::Pass
        };
        if m.outcome != right && wrong.len() < config.explain {
            wrong.push(format!(
                "run {run}: {:?} after {requests} requests: {}",
                m.outcome,
                m.reasons.join("; ")
            ));
        }
        match m.outcome {
            Outcome::Leak => {
                leak += 1;
                leak8 += usize::from(m.p_value.is_some_and(|p| FAMILY * p <= level));
            }
            Outcome::Inconclusive => inconclusive += 1,
            Outcome::Pass => {}
        }
    }
    let share = |k: usize| k as f64 / config.runs.max(1) as f64;
    let adaptive = config.budget.is_some();
    CalibrationRow {
        shape: shape.name(),
        planted: shape.is_leak(),
        runs: config.runs,
        leak: share(leak),
        leak_among_8: share(leak8),
        inconclusive: share(inconclusive),
        seed_fail: share(seed_fail),
        mean_requests: adaptive.then(|| used as f64 / config.runs.max(1) as f64),
        stopped_early: adaptive.then(|| share(early)),
        extended: adaptive.then(|| share(extended)),
        wrong,
    }
}

fn series(shape: &Shape, values: &[f64]) -> RequestSeries {
    RequestSeries::raw(shape.metric(), crate::tracker::metric::Unit::Bytes, values)
}

/// The adaptive rule of a run of `metric`, on a series long enough for its budget: the verdict where it
/// stopped, that look's level, the requests it took, and why it stopped.
///
/// `cooldown` joins the verdict at the look that stops the run (the cooldown comes after the last
/// request); `kinds`, when the run mixed kinds, which kind each request was.
pub fn judge_adaptively(
    metric: &str,
    values: &[f64],
    cooldown: &[f64],
    kinds: Option<&KindSequence>,
    planned: usize,
    thresholds: &Thresholds,
) -> (Verdict, f64, usize, StopReason) {
    let alpha = 1.0 - thresholds.confidence;
    let looks = adaptive::schedule(
        planned as u64,
        values.len() as u64,
        alpha,
        2 * MIN_JUDGED as u64,
    );
    for (i, look) in looks.iter().enumerate() {
        let k = (look.requests as usize).min(values.len());
        let mut s = RequestSeries::raw(metric, crate::tracker::metric::Unit::Bytes, &values[..k]);
        let verdict = analyze_with(std::slice::from_ref(&s), thresholds, look.alpha, kinds);
        if let Some(stopped) = adaptive::decide(look, &verdict, i + 1 == looks.len()) {
            // The run ends here: its cooldown follows the last request, and the final verdict
            // sees it (as a real run's does).
            s.cooldown = cooldown.to_vec();
            let verdict = analyze_with(std::slice::from_ref(&s), thresholds, look.alpha, kinds);
            return (verdict, look.alpha, k, stopped);
        }
    }
    unreachable!("the last look always decides")
}

/// The seed tool's rule: first-to-last growth scaled to 100 requests above 100 MiB.
fn seed_rule_fails(values: &[f64]) -> bool {
    match (values.first(), values.last()) {
        (Some(a), Some(b)) if values.len() > 1 => {
            (b - a) / (values.len() - 1) as f64 * 100.0 > 100.0 * MIB
        }
        _ => false,
    }
}

impl CalibrationTable {
    /// The table as Markdown (what `docs/calibration.md` shows).
    pub fn to_markdown(&self) -> String {
        let c = &self.config;
        let mut out = match c.budget {
            None => format!(
                "{} runs per shape, {} measured requests each, seed {}, confidence {}.\n\n",
                c.runs, c.requests, c.seed, c.thresholds.confidence
            ),
            Some(b) => format!(
                "{} runs per shape, the adaptive rule: {} planned measured requests, a budget of {b}, seed {}, confidence {} (α = {:.2} split across the looks).\n\n",
                c.runs,
                c.requests,
                c.seed,
                c.thresholds.confidence,
                1.0 - c.thresholds.confidence
            ),
        };
        let adaptive = c.budget.is_some();
        let pct = |x: f64| format!("{:.1} %", 100.0 * x);
        for planted in [false, true] {
            let (title, first) = if planted {
                (
                    "Power (planted leaks)",
                    "| shape | leak | leak among 8 metrics (Holm) | inconclusive |",
                )
            } else {
                (
                    "False positives (clean shapes)",
                    "| shape | leak (false positive) | inconclusive |",
                )
            };
            let cols = first.matches('|').count() - 1;
            let (extra, extra_cols) = if adaptive {
                (" mean requests | stopped early | extended |", 3)
            } else {
                (" seed rule fails |", 1)
            };
            out += &format!(
                "### {title}\n\n{first}{extra}\n|---|{}\n",
                "---:|".repeat(cols - 1 + extra_cols)
            );
            for r in self.rows.iter().filter(|r| r.planted == planted) {
                let mut line = format!("| {} | {} |", r.shape, pct(r.leak));
                if planted {
                    line += &format!(" {} |", pct(r.leak_among_8));
                }
                line += &format!(" {} |", pct(r.inconclusive));
                if adaptive {
                    line += &format!(
                        " {:.0} | {} | {} |",
                        r.mean_requests.unwrap_or(f64::NAN),
                        pct(r.stopped_early.unwrap_or(0.0)),
                        pct(r.extended.unwrap_or(0.0))
                    );
                } else {
                    line += &format!(" {} |", pct(r.seed_fail));
                }
                out += &line;
                out += "\n";
            }
            out += "\n";
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_calibration_is_deterministic_and_sane() {
        let config = CalibrationConfig {
            runs: 20,
            only: [
                "host: white jitter",
                "host: allocator steps",
                "host leak 64",
            ]
            .map(String::from)
            .to_vec(),
            ..CalibrationConfig::default()
        };
        let a = run(&config);
        assert_eq!(a, run(&config));
        let white = &a.rows[0];
        assert!(!white.planted && white.leak == 0.0);
        let big = a
            .rows
            .iter()
            .find(|r| r.shape.starts_with("host leak 64"))
            .unwrap();
        assert!(big.leak > 0.9, "{big:?}");
        assert!(a.to_markdown().contains("| host: white jitter | 0.0 %"));
    }

    #[test]
    fn the_adaptive_rule_extends_undecided_runs_and_decides_real_size_leaks_at_the_plan() {
        let config = CalibrationConfig {
            runs: 20,
            budget: Some(400),
            only: [
                "host leak 64",
                "host: white jitter",
                "gpu: one 20 MiB segment mid-run",
            ]
            .map(String::from)
            .to_vec(),
            ..CalibrationConfig::default()
        };
        let t = run(&config);
        let row = |prefix: &str| t.rows.iter().find(|r| r.shape.starts_with(prefix)).unwrap();
        // 64 KiB a request is 6 MiB at the plan: certain, but far below the early looks' floor
        // (512 MiB), so it is called at the planned look, never before.
        let big = row("host leak 64");
        assert!(big.leak > 0.9, "{big:?}");
        assert_eq!(big.stopped_early, Some(0.0), "{big:?}");
        assert!(big.mean_requests.unwrap() <= 110.0, "{big:?}");
        let white = row("host: white jitter");
        assert_eq!(white.leak, 0.0);
        assert_eq!(
            white.mean_requests,
            Some(100.0),
            "a decided clean run stops at the plan"
        );
        // Undecided at 100 requests in 4 of 5 fixed-length runs; decided within the budget.
        let segment = row("gpu: one 20 MiB segment mid-run");
        assert!(segment.extended.unwrap() > 0.5, "{segment:?}");
        assert!(
            segment.inconclusive < 0.1 && segment.leak == 0.0,
            "{segment:?}"
        );
        assert!(t.to_markdown().contains("mean requests"));
    }
}
