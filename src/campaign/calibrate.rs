//! Calibration on the reference server: how often real clean processes are called leaks, and
//! how often real planted leaks are caught, with the same pipeline as every scenario.
//!
//! The synthetic calibration (`analysis::calibrate`) covers noise models; this one covers what
//! synthetic series cannot: real allocators, real page faults, real sampling jitter.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::ScenarioConfig;
use crate::load::Workload;
use crate::report::RunOutcome;
use crate::scenario::Target;
use crate::tracker::metric;

/// One server configuration and whether it leaks.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Name for the table.
    pub name: &'static str,
    /// Reference-server knobs.
    pub knobs: Vec<String>,
    /// Whether a leak is planted.
    pub leaks: bool,
}

/// The shapes measured by default: clean ones first, then planted leaks.
pub fn default_shapes() -> Vec<Shape> {
    let shape = |name, knobs: &[&str], leaks| Shape {
        name,
        knobs: knobs.iter().map(|s| (*s).to_owned()).collect(),
        leaks,
    };
    vec![
        shape("clean", &[], false),
        shape("clean, 2 child processes", &["--children=2"], false),
        shape(
            "one-off 64 MiB warm-up step",
            &["--warmup-step-bytes=67108864"],
            false,
        ),
        shape(
            "bounded cache, 1 MiB/request up to 16 MiB",
            &[
                "--cache-bytes-per-request=1048576",
                "--cache-cap-bytes=16777216",
            ],
            false,
        ),
        shape(
            "leak 64 KiB/request",
            &["--leak-bytes-per-request=65536"],
            true,
        ),
        shape(
            "leak 64 KiB/request in a child",
            &[
                "--children=2",
                "--leak-in-child",
                "--leak-bytes-per-request=65536",
            ],
            true,
        ),
        shape(
            "leak 1 MiB/request",
            &["--leak-bytes-per-request=1048576"],
            true,
        ),
    ]
}

/// Counts of outcomes for one shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Runs.
    pub runs: usize,
    /// Leak verdicts.
    pub leak: usize,
    /// Inconclusive verdicts.
    pub inconclusive: usize,
    /// Runs that ended in error (setup or run).
    pub error: usize,
    /// Runs the seed tool's first/last rule fails (tree RSS growth > 100 MiB per 100 requests).
    pub seed_fail: usize,
}

/// Run `runs` scenarios of `shape` (100 measured requests each) against the reference server;
/// stops early when `cancel` is cancelled.
pub async fn run_shape(
    exe: &std::path::Path,
    shape: &Shape,
    runs: usize,
    requests: u64,
    out_dir: &std::path::Path,
    cancel: &tokio_util::sync::CancellationToken,
) -> Tally {
    let mut tally = Tally::default();
    for i in 0..runs {
        if cancel.is_cancelled() {
            break;
        }
        let target = Target::Reference {
            exe: exe.to_path_buf(),
            args: shape.knobs.clone(),
        };
        let built = ScenarioConfig::new(format!("calibrate_{i}"), Workload::Text)
            .target(target)
            .quick()
            .requests(requests)
            .request_interval(Duration::from_millis(5))
            .baseline(Duration::from_millis(100))
            .seed(i as u64)
            .out_dir(out_dir)
            .plots(false)
            .build();
        let report = match built {
            Ok(s) => s.run_until(cancel).await,
            Err(e) => {
                tracing::error!("calibration scenario: {e}");
                tally.runs += 1;
                tally.error += 1;
                continue;
            }
        };
        tally.runs += 1;
        match report.outcome {
            RunOutcome::Leak => tally.leak += 1,
            RunOutcome::Inconclusive => tally.inconclusive += 1,
            RunOutcome::Error => tally.error += 1,
            RunOutcome::Pass => {}
        }
        let seed_fail = report
            .verdict
            .as_ref()
            .and_then(|v| v.metric(metric::HOST_RSS_TREE))
            .is_some_and(|m| {
                m.n > 1 && m.growth / (m.n - 1) as f64 * 100.0 > 100.0 * crate::util::MIB
            });
        tally.seed_fail += usize::from(seed_fail);
    }
    tally
}

/// The markdown table of a calibration on the reference server.
pub fn to_markdown(rows: &[(Shape, Tally)], requests: u64) -> String {
    let pct = |n: usize, d: usize| {
        if d == 0 {
            "-".to_owned()
        } else {
            format!("{:.1} %", 100.0 * n as f64 / d as f64)
        }
    };
    let mut out = format!(
        "Reference server, {requests} measured requests per run (5 ms apart, sampled every 50 ms and after each request), default thresholds.\n\n\
         | server | planted leak | runs | leak verdict | inconclusive | error | seed rule fails |\n|---|---|---:|---:|---:|---:|---:|\n"
    );
    for (shape, t) in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            shape.name,
            if shape.leaks { "yes" } else { "no" },
            t.runs,
            pct(t.leak, t.runs),
            pct(t.inconclusive, t.runs),
            pct(t.error, t.runs),
            pct(t.seed_fail, t.runs)
        ));
    }
    out
}

/// Where calibration runs write their (throw-away) reports.
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join("sglang-memtest-calibrate")
}
