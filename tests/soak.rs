//! A million requests in bounded memory: the soak the harness was built for, against the
//! reference server. Ignored (minutes of load): `cargo test --release --test soak -- --ignored
//! --nocapture`; `MEMTEST_SOAK_REQUESTS` runs another count. Each run prints the harness's peak
//! RSS (VmHWM of this test process, which holds the tracker, the driver and the analysis).

mod common;

use common::{quick, run};
use sglang_memtest::analysis::{Outcome, Stretch};
use sglang_memtest::load::Workload;
use sglang_memtest::report::{Report, RunOutcome};
use sglang_memtest::tracker::{Phase, metric};

fn requests() -> u64 {
    std::env::var("MEMTEST_SOAK_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// VmHWM of this process, in MiB.
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

fn soak(name: &str, knobs: &[&str]) -> Report {
    let n = requests();
    let started = std::time::Instant::now();
    // Tokens at once: a million requests are about the harness, not the generation.
    let knobs: Vec<&str> = knobs
        .iter()
        .copied()
        .chain(["--token-delay-us=0"])
        .collect();
    let r = run(&quick(name, &knobs, Workload::Text)
        .requests(n)
        .warmup_requests(100)
        .concurrency(64)
        .set("request_interval", "0")
        .set("sample_interval", "0.1")
        // The reference server answers ~20,000 requests a second: a million take about a
        // minute, so the hourly judgement is allowed on stretches from 20 s.
        .set("soak_min_duration", "20s"));
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "[{name}] {} measured requests in {secs:.0} s ({:.0}/s), harness peak RSS {:.1} MiB, outcome {:?}",
        r.timeline.requests_in(Phase::Measure),
        r.timeline.requests_in(Phase::Measure) as f64 / secs,
        peak_rss_mib(),
        r.outcome
    );
    eprintln!("{}", r.summary());
    r
}

#[test]
#[ignore = "a million requests: cargo test --release --test soak -- --ignored --nocapture"]
fn a_million_requests_with_a_4_kib_leak_are_called_by_the_soak_limit() {
    let r = soak("soak_leak_4k", &["--leak-bytes-per-request=4096"]);
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let tree = r
        .verdict
        .as_ref()
        .and_then(|v| v.metric(metric::HOST_RSS_TREE))
        .expect("tree verdict");
    assert!(
        tree.hourly
            .iter()
            .any(|h| h.stretch == Stretch::Traffic && h.outcome == Outcome::Leak),
        "the soak limit calls it: {:?}",
        tree.hourly
    );
    assert!(
        peak_rss_mib() < 200.0,
        "harness peak RSS {}",
        peak_rss_mib()
    );
}

#[test]
#[ignore = "a million requests: cargo test --release --test soak -- --ignored --nocapture"]
fn a_million_clean_requests_pass() {
    let r = soak("soak_clean", &[]);
    r.assert_pass();
    assert!(
        peak_rss_mib() < 200.0,
        "harness peak RSS {}",
        peak_rss_mib()
    );
}
