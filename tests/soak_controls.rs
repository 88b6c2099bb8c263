//! CI self-tests of the soak machinery against the reference server, in seconds instead of
//! hours: the growth-per-hour limit, the idle phase judged on its own, time-based runs with
//! Poisson arrivals, and a report rebuilt from the raw files (the ignored `tests/soak.rs` runs
//! the million-request version).

mod common;

use common::{quick, run};
use sglang_memtest::analysis::{Outcome, Stretch};
use sglang_memtest::load::Workload;
use sglang_memtest::report::RunOutcome;
use sglang_memtest::tracker::{Phase, metric};

#[test]
fn a_small_per_request_leak_passes_the_request_limit_and_fails_the_hourly_one() {
    // 960 B/request (the reference server adds ~200 B of its own) is under a per-request budget
    // of 4 GiB per million requests (4.2 KiB), but at this rate it is gigabytes an hour.
    let r = run(&quick(
        "soak_960",
        &["--leak-bytes-per-request=960"],
        Workload::Text,
    )
    .set("budget", "4GiB")
    .set("duration", "6s")
    .set("concurrency", "8")
    .set("request_interval", "0.002")
    .set("soak_min_duration", "3s"));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let tree = r
        .verdict
        .as_ref()
        .and_then(|v| v.metric(metric::HOST_RSS_TREE))
        .expect("tree verdict");
    let per_request = tree.slope.expect("a slope").point;
    assert!(
        per_request < 4096.0,
        "per request {per_request} B: the hourly limit must be what catches it"
    );
    let hourly = tree
        .hourly
        .iter()
        .find(|h| h.stretch == Stretch::Traffic)
        .expect("judged per hour");
    assert_eq!(hourly.outcome, Outcome::Leak, "{}", hourly.reason);
    assert!(r.timeline.requests_in(Phase::Measure) > 500);
}

#[test]
fn the_same_soak_without_a_leak_passes_per_request_and_per_hour() {
    let r = run(&quick("soak_clean", &[], Workload::Text)
        .set("duration", "6s")
        .set("concurrency", "8")
        .set("request_interval", "0.002")
        .set("soak_min_duration", "3s"));
    r.assert_pass();
    let tree = r
        .verdict
        .as_ref()
        .and_then(|v| v.metric(metric::HOST_RSS_TREE))
        .expect("tree verdict");
    assert!(
        tree.hourly
            .iter()
            .any(|h| h.stretch == Stretch::Traffic && h.outcome == Outcome::Pass),
        "{:?}",
        tree.hourly
    );
}

#[test]
fn memory_that_grows_with_no_traffic_is_caught_in_the_idle_phase() {
    // 1 MiB/s: ~10 KiB per request under traffic (a pass), +8 MiB in an 8 s idle phase.
    let r = run(&quick(
        "idle_leak",
        &["--leak-bytes-per-second=1048576"],
        Workload::Text,
    )
    .set("idle", "8s")
    .set("soak_min_duration", "3s"));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let tree = r
        .verdict
        .as_ref()
        .and_then(|v| v.metric(metric::HOST_RSS_TREE))
        .expect("tree verdict");
    let idle = tree
        .hourly
        .iter()
        .find(|h| h.stretch == Stretch::Idle)
        .expect("the idle phase is judged");
    assert_eq!(idle.outcome, Outcome::Leak, "{}", idle.reason);
    assert!(idle.reason.contains("idle"), "{}", idle.reason);

    let clean = run(&quick("idle_clean", &[], Workload::Text)
        .set("idle", "8s")
        .set("soak_min_duration", "3s"));
    clean.assert_pass();
}

#[test]
fn a_time_based_run_with_poisson_arrivals_sends_about_rate_times_duration() {
    let r = run(&quick("poisson", &[], Workload::Text)
        .set("duration", "4s")
        .set("request_rate", "50")
        .set("arrival", "poisson"));
    r.assert_pass();
    let n = r.timeline.requests_in(Phase::Measure);
    assert!((120..=280).contains(&n), "{n} requests in 4 s at 50/s");
    let raw = r.timeline.raw.as_ref().expect("raw files");
    let dir = r
        .files
        .json
        .as_ref()
        .and_then(|p| p.parent())
        .expect("a folder");
    for f in [&raw.samples, &raw.marks, &raw.processes] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let marks = std::fs::read_to_string(dir.join(&raw.marks)).expect("marks");
    assert!(marks.starts_with("t_us,phase,request\n"), "{marks:.100}");
    assert!(
        r.request_records().expect("records").len() as u64 >= n,
        "every request has a record"
    );
}
