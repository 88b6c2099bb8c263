//! Calibration: false-alarm rate on clean shapes and power against leak size, on synthetic
//! series ([`noise`](super::noise)), next to the seed tool's first/last rule.
//!
//! Pure and seeded: the same [`CalibrationConfig`] gives the same table. Each shape draws
//! from its own ChaCha8 stream, so adding a row does not change the others.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::noise::Shape;
use super::{Outcome, RequestSeries, Thresholds, analyze};

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * KIB;
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
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        Self {
            runs: 1000,
            requests: 100,
            seed: 20_261_127,
            thresholds: Thresholds::default(),
            host_leaks: [16.0, 32.0, 48.0, 64.0, 96.0, 128.0, 256.0]
                .iter()
                .map(|k| k * KIB)
                .collect(),
            gpu_leaks: [0.125, 0.25, 0.375, 0.5, 1.0, 2.0]
                .iter()
                .map(|m| m * MIB)
                .collect(),
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
    let rows = shapes
        .iter()
        .enumerate()
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
    for _ in 0..config.runs {
        let values = shape.generate(config.requests, &mut rng);
        seed_fail += usize::from(seed_rule_fails(&values));
        let series =
            RequestSeries::raw(shape.metric(), crate::tracker::metric::Unit::Bytes, &values);
        let verdict = analyze(std::slice::from_ref(&series), &config.thresholds);
        let m = &verdict.metrics[0];
        match m.outcome {
            Outcome::Leak => {
                leak += 1;
                leak8 += usize::from(m.p_value.is_some_and(|p| FAMILY * p <= alpha));
            }
            Outcome::Inconclusive => inconclusive += 1,
            Outcome::Pass => {}
        }
    }
    let share = |k: usize| k as f64 / config.runs.max(1) as f64;
    CalibrationRow {
        shape: shape.name(),
        planted: shape.is_leak(),
        runs: config.runs,
        leak: share(leak),
        leak_among_8: share(leak8),
        inconclusive: share(inconclusive),
        seed_fail: share(seed_fail),
    }
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
        let mut out = format!(
            "{} runs per shape, {} measured requests each, seed {}, confidence {}.\n\n",
            c.runs, c.requests, c.seed, c.thresholds.confidence
        );
        for planted in [false, true] {
            out += if planted {
                "### Power (planted leaks)\n\n| shape | leak | leak among 8 metrics (Holm) | inconclusive | seed rule fails |\n|---|---:|---:|---:|---:|\n"
            } else {
                "### False positives (clean shapes)\n\n| shape | leak (false positive) | inconclusive | seed rule fails |\n|---|---:|---:|---:|\n"
            };
            for r in self.rows.iter().filter(|r| r.planted == planted) {
                let pct = |x: f64| format!("{:.1} %", 100.0 * x);
                out += &if planted {
                    format!(
                        "| {} | {} | {} | {} | {} |\n",
                        r.shape,
                        pct(r.leak),
                        pct(r.leak_among_8),
                        pct(r.inconclusive),
                        pct(r.seed_fail)
                    )
                } else {
                    format!(
                        "| {} | {} | {} | {} |\n",
                        r.shape,
                        pct(r.leak),
                        pct(r.inconclusive),
                        pct(r.seed_fail)
                    )
                };
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
            ..CalibrationConfig::default()
        };
        let a = run(&config);
        assert_eq!(a, run(&config));
        let white = &a.rows[0];
        assert!(!white.planted && white.leak == 0.0);
        let big = a
            .rows
            .iter()
            .find(|r| r.shape.starts_with("host leak 256"))
            .unwrap();
        assert!(big.leak > 0.9, "{big:?}");
        assert!(a.to_markdown().contains("| host: white jitter | 0.0 %"));
    }
}
