//! Helpers shared by the control tests: quick scenarios against the reference server.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::time::Duration;

use sglang_memtest::ScenarioConfig;
use sglang_memtest::load::Workload;
use sglang_memtest::report::Report;
use sglang_memtest::tracker::Phase;

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
pub fn quick(test: &str, knobs: &[&str], workload: Workload) -> ScenarioConfig {
    ScenarioConfig::new(test, workload)
        .reference(knobs.iter().copied())
        .set("reference_bin", exe().display().to_string())
        .quick()
        .requests(60)
        .warmup_requests(5)
        .out_dir(out_dir(test))
        .plots(false)
        .startup_timeout(Duration::from_secs(30))
}

/// Build and run a scenario (on a runtime of its own, as a plain test would).
pub fn run(c: &ScenarioConfig) -> Report {
    c.clone()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .run_blocking()
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
    r.timeline.requests_in(Phase::Measure) as usize
}
