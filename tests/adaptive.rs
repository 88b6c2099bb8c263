//! Adaptive run length against the reference server: a certain leak stops the run early, an
//! undecided clean server gets more requests until it is decided, a fixed budget is one look.
//! Every verdict is computed by the harness from real memory.

mod common;

use common::{quick, run};
use sglang_memtest::analysis::Outcome;
use sglang_memtest::analysis::adaptive::{LookKind, StopReason};
use sglang_memtest::load::Workload;
use sglang_memtest::report::{Report, RunOutcome};
use sglang_memtest::tracker::metric;

fn adaptive(r: &Report) -> &sglang_memtest::analysis::adaptive::Adaptive {
    r.adaptive
        .as_ref()
        .unwrap_or_else(|| panic!("no adaptive record: {}", r.summary()))
}

#[test]
fn a_certain_leak_stops_the_run_before_the_planned_count() {
    let r = run(&quick(
        "adaptive_big_leak",
        &["--leak-bytes-per-request=33554432"],
        Workload::Text,
    )
    .requests(100));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let a = adaptive(&r);
    assert_eq!(a.stopped, StopReason::LeakCertain, "{}", a.summary());
    // 32 MiB/request: 800 MiB by n/4, past the 512 MiB (512 × the 1 MiB floor) no cache of a
    // clean run is trusted to reach.
    assert_eq!(
        a.requests,
        25,
        "the first early look (n/4) stops it: {}",
        a.summary()
    );
    assert_eq!(common::measured(&r), 25);
    let tree = r
        .verdict
        .as_ref()
        .unwrap()
        .metric(metric::HOST_RSS_TREE)
        .unwrap();
    assert_eq!(tree.outcome, Outcome::Leak);
    assert!(
        r.verdict.as_ref().unwrap().alpha.unwrap() < 0.001,
        "an early look judges at a small share of alpha"
    );
}

/// Memory that creeps 24 KiB/request under 0–24 MiB of per-request scratch memory, judged
/// against a 32 KiB/request limit (a budget of 31.25 GiB per million requests): at 100 requests
/// the slope's interval straddles the limit; more requests narrow it until it lies below.
#[test]
fn a_clean_run_undecided_at_the_planned_count_decides_itself_within_the_budget() {
    let r = run(&quick(
        "adaptive_undecided",
        &["--leak-bytes-per-request=24576", "--jitter-bytes=25165824"],
        Workload::Text,
    )
    .set("budget", "31.25GiB")
    .requests(100));
    let a = adaptive(&r);
    let planned = a
        .looks
        .iter()
        .find(|l| l.look.kind == LookKind::Planned)
        .expect("a planned look");
    assert_eq!(
        planned.outcome,
        Outcome::Inconclusive,
        "undecided at the planned count: {}",
        r.summary()
    );
    assert!(!planned.undecided.is_empty());
    assert_eq!(r.outcome, RunOutcome::Pass, "{}", r.summary());
    assert_eq!(a.stopped, StopReason::Decided, "{}", a.summary());
    assert!(
        a.requests > 100 && a.requests <= a.budget && a.budget == 400,
        "{}",
        a.summary()
    );
    assert_eq!(common::measured(&r) as u64, a.requests);
    let console = r.summary();
    assert!(console.contains("stopped after"), "{console}");
}

#[test]
fn a_budget_equal_to_the_planned_count_is_a_fixed_length() {
    let r = run(&quick("adaptive_fixed", &[], Workload::Text)
        .requests(100)
        .max_requests(100));
    r.assert_pass();
    let a = adaptive(&r);
    assert_eq!(a.requests, 100);
    assert_eq!(a.looks.last().unwrap().look.kind, LookKind::Planned);
    let total: f64 = a.looks.iter().map(|l| l.look.alpha).sum();
    assert!(
        (total - 0.05).abs() < 1e-9,
        "the looks spend alpha: {total}"
    );
}

#[test]
fn a_budget_below_the_planned_count_is_refused_naming_both() {
    let e = quick("adaptive_bad", &[], Workload::Text)
        .requests(100)
        .set("max_requests", "50")
        .build()
        .expect_err("a budget below the plan");
    let text = e.to_string();
    assert!(
        text.contains("max_requests") && text.contains("100"),
        "{text}"
    );
}

/// A cache of 512 KiB per request capped at 32 MiB: full at about request 64 of 100, flat to
/// the end. Not a leak, and not "inconclusive": a pass that names the plateau.
#[test]
fn a_cache_that_fills_and_stays_flat_passes_with_the_plateau_named() {
    let r = run(&quick(
        "plateau",
        &[
            "--cache-bytes-per-request=524288",
            "--cache-cap-bytes=33554432",
        ],
        Workload::Text,
    )
    .requests(100));
    assert_eq!(r.outcome, RunOutcome::Pass, "{}", r.summary());
    let tree = r
        .verdict
        .as_ref()
        .unwrap()
        .metric(metric::HOST_RSS_TREE)
        .unwrap();
    let p = tree
        .plateau
        .unwrap_or_else(|| panic!("no plateau named: {}", r.summary()));
    assert!(
        (50..=80).contains(&p.since_request),
        "flat since request {} (the cache is full at ~64)",
        p.since_request
    );
    assert!(
        (20.0..34.0).contains(&(p.growth / 1048576.0)),
        "grew {} B to the plateau (the cap is 32 MiB)",
        p.growth
    );
    assert!(
        r.summary().contains("bounded growth"),
        "the console names it: {}",
        r.summary()
    );
}
