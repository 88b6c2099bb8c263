//! Helpers shared by the control tests: quick scenarios against the reference server.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::time::Duration;

use sglang_memtest::load::Workload;
use sglang_memtest::report::Report;
use sglang_memtest::tracker::{GpuMode, Phase};
use sglang_memtest::{Scenario, Target};

/// The reference server's executable, built by cargo for these tests.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sglang-memtest"))
}

/// A fresh output folder for one test (kept under target/ so failures can be inspected).
pub fn out_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("controls")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A short scenario against the reference server with `knobs`: 60 measured requests 10 ms
/// apart, sampled every 50 ms (each request also gets its own reading), no plots, no GPU.
pub fn quick(test: &str, knobs: &[&str], workload: Workload) -> Scenario {
    let target = Target::Reference {
        exe: exe(),
        args: knobs.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut s = Scenario::new(test, target, workload)
        .with_out_dir(out_dir(test))
        .with_plots(false);
    s.driver.num_requests = 60;
    s.driver.warmup_requests = 5;
    s.driver.interval = Duration::from_millis(10);
    s.tracker.interval = Duration::from_millis(50);
    s.tracker.gpu = GpuMode::Off;
    s.cooldown.settle = Duration::from_millis(300);
    s.baseline = Duration::from_millis(200);
    s.startup_timeout = Duration::from_secs(30);
    s
}

/// Run a scenario on a fresh runtime (tests stay synchronous and simple).
pub fn run(s: &Scenario) -> Report {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(s.run())
}

/// Every PID the tracker saw during the run.
pub fn seen_pids(r: &Report) -> Vec<u32> {
    r.timeline.processes.keys().copied().collect()
}

/// True when `pid` is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// The report on disk parses back and equals the one returned.
pub fn assert_report_written(r: &Report) {
    let path = r.files.json.as_ref().expect("a JSON report path");
    let back = Report::read_json(path).expect("the JSON report parses");
    assert_eq!(back.outcome, r.outcome);
    assert_eq!(back.scenario, r.scenario);
}

/// Measured requests that got a reading.
pub fn measured(r: &Report) -> usize {
    r.timeline.marks_in(Phase::Measure).count()
}
