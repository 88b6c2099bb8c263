//! The harness's own memory over a long run: `cargo bench --bench soak` drives 1,000,000 requests
//! at concurrency 64 into the reference server (clean, then with a 4 KiB/request leak, each in a
//! process of its own) and prints a table: requests, time, throughput, the harness's peak RSS
//! (VmHWM) and the verdict. `MEMTEST_SOAK_REQUESTS` changes the count. Not a timed test: the
//! machine's noise moves the seconds, not the memory.

use std::process::Command;
use std::time::Instant;

use sglang_memtest::{ScenarioConfig, Workload};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn one(label: &str, knobs: &[&str], requests: u64) {
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_sglang-memtest"));
    let out = std::env::temp_dir().join(format!("memtest-bench-soak-{label}"));
    let _ = std::fs::remove_dir_all(&out);
    let scenario = ScenarioConfig::new(format!("soak_{label}"), Workload::Text)
        // Tokens at once: the driver, not the reference server's generation, is what is timed.
        .reference(knobs.iter().copied().chain(["--token-delay-us=0"]))
        .set("reference_bin", exe.display().to_string())
        .quick()
        .requests(requests)
        .warmup_requests(100)
        .concurrency(64)
        .set("request_interval", "0")
        .set("soak_min_duration", "20s")
        .plots(false)
        .out_dir(&out)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let t0 = Instant::now();
    let report = scenario.run_blocking();
    let secs = t0.elapsed().as_secs_f64();
    let raw = std::fs::read_dir(&out)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0);
    println!(
        "| {label} | {} | {secs:.0} s | {:.0}/s | {:.1} MiB | {:.0} MiB | {:?} |",
        report.requests.as_ref().map_or(0, |r| r.measured),
        requests as f64 / secs,
        peak_rss_mib(),
        raw as f64 / 1048576.0,
        report.outcome
    );
    let _ = std::fs::remove_dir_all(&out);
}

fn main() {
    let requests: u64 = std::env::var("MEMTEST_SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // Each case in a fresh process, so its peak RSS is its own.
    if let Some(label) = std::env::args().skip_while(|a| a != "--case").nth(1) {
        let knobs: &[&str] = if label == "leak-4k" {
            &["--leak-bytes-per-request=4096"]
        } else {
            &[]
        };
        one(&label, knobs, requests);
        return;
    }
    println!(
        "| run | measured requests | time | throughput | harness peak RSS | raw files | outcome |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let me = std::env::current_exe().expect("the bench's own path");
    for label in ["clean", "leak-4k"] {
        let status = Command::new(&me)
            .args(["--case", label])
            .status()
            .expect("the bench re-runs itself");
        assert!(status.success(), "case {label} failed");
    }
}
