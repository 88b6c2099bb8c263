//! CI self-tests of the leaks memory cannot see, against the reference server: KV tokens never
//! given back (the server's own accounting, `/v1/loads` or `/metrics`, read idle before the load
//! and after the cooldown), and the engine's own memory checks in its log.

mod common;

use common::{assert_report_written, quick, run};
use sglang_memtest::Error;
use sglang_memtest::analysis::Outcome;
use sglang_memtest::fixture::LogFinding;
use sglang_memtest::load::Workload;
use sglang_memtest::report::{Report, RunOutcome};
use sglang_memtest::scenario::ScenarioError;
use sglang_memtest::tracker::idle::{KV_TOKENS, RUNNING_REQS};

/// Warm-up (5) and measured (60) requests of `quick`.
const REQUESTS: u64 = 65;

fn accounting(r: &Report) -> &sglang_memtest::analysis::IdleAccounting {
    r.idle_accounting
        .as_ref()
        .unwrap_or_else(|| panic!("no idle accounting\n{}", r.summary()))
}

fn check<'a>(r: &'a Report, metric: &str) -> &'a sglang_memtest::analysis::IdleCheck {
    accounting(r)
        .check(metric)
        .unwrap_or_else(|| panic!("no {metric} check\n{}", r.summary()))
}

/// Every memory metric the run judged passed: the leak is invisible to them.
fn assert_memory_flat(r: &Report) {
    let v = r.verdict.as_ref().expect("a memory verdict");
    assert_eq!(v.outcome, Outcome::Pass, "{}", r.summary());
    assert!(v.metrics.iter().any(|m| m.judged), "{}", r.summary());
}

#[test]
fn a_planted_kv_token_leak_is_caught_with_memory_flat() {
    let r = run(&quick(
        "kv_leak",
        &["--leak-kv-tokens-per-request=8"],
        Workload::Text,
    ));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    assert_memory_flat(&r);
    let a = accounting(&r);
    assert_eq!(a.source.as_deref(), Some("/v1/loads"));
    assert_eq!(a.outcome, Some(Outcome::Leak));
    let kv = check(&r, KV_TOKENS);
    assert_eq!(kv.outcome, Outcome::Leak, "{}", kv.reason);
    assert_eq!((kv.before, kv.after), (0.0, (8 * REQUESTS) as f64));
    assert_eq!(kv.requests, REQUESTS);
    assert_eq!(kv.per_request, Some(8.0));
    assert_eq!(kv.capacity, Some(4096.0));
    // Read before the cooldown's flush, which hands the reference server's leaked tokens back
    // (as SGLang's /flush_cache resets its KV allocator): after it the leak would look healed.
    // The settle wait read it several times before giving up.
    assert!(kv.settle.len() >= 3, "{:?}", kv.settle);
    assert_eq!(check(&r, RUNNING_REQS).outcome, Outcome::Pass);
    // No log line: the accounting alone fails the run.
    assert_eq!(r.log_watch.as_ref().map(|l| l.total_matches), Some(0));
    let summary = r.summary();
    assert!(
        summary.contains("why: server.kv_tokens@idle: KV tokens in use 520"),
        "{summary}"
    );
    assert!(
        summary.contains("LEAK      server.kv_tokens@idle"),
        "{summary}"
    );
    assert_report_written(&r);
    let back = Report::read_json(r.files.json.as_ref().expect("json")).expect("parses");
    assert_eq!(back.idle_accounting, r.idle_accounting);
}

#[test]
fn a_clean_server_passes_the_accounting_check_at_once() {
    let r = run(&quick("kv_clean", &[], Workload::Text).set("concurrency", "4"));
    r.assert_pass();
    let a = accounting(&r);
    assert!(a.available);
    assert_eq!(a.outcome, Some(Outcome::Pass));
    for c in &a.checks {
        assert_eq!(c.outcome, Outcome::Pass, "{c:?}");
        assert_eq!((c.before, c.after, c.excess), (0.0, 0.0, 0.0));
        assert_eq!(c.settle.len(), 1, "back at idle on the first reading");
    }
    let log = r.log_watch.as_ref().expect("the log was watched");
    assert!(
        log.available && log.lines > 0 && log.total_matches == 0,
        "{log:?}"
    );
    assert!(
        r.summary().contains("server log: no memory check"),
        "{}",
        r.summary()
    );
}

#[test]
fn metrics_are_the_fallback_without_loads() {
    let r = run(&quick(
        "kv_leak_metrics",
        &[
            "--no-loads-endpoint",
            "--enable-metrics",
            "--leak-kv-tokens-per-request=2",
        ],
        Workload::Text,
    ));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    assert_memory_flat(&r);
    let a = accounting(&r);
    assert_eq!(a.source.as_deref(), Some("/metrics (sglang)"));
    assert_eq!(
        a.note.as_deref(),
        Some("read from /metrics (sglang) because /v1/loads answered HTTP 404")
    );
    assert_eq!(check(&r, KV_TOKENS).after, (2 * REQUESTS) as f64);
    // SGLang's gauges can lag at idle by up to 30 s: a leftover there is waited out longer.
    assert!(a.settle_ms >= 30_000, "{}", a.settle_ms);
}

#[test]
fn a_server_without_accounting_says_not_available_and_never_passes_it_silently() {
    let r = run(&quick("kv_none", &["--no-loads-endpoint"], Workload::Text));
    // Memory still decides the run...
    r.assert_pass();
    // ...and the report says the accounting could not be checked.
    let a = accounting(&r);
    assert!(!a.available);
    assert!(a.checks.is_empty() && a.outcome.is_none());
    let note = a.note.as_deref().unwrap_or_default();
    assert!(note.starts_with("not available"), "{note}");
    assert!(note.contains("/v1/loads answered HTTP 404"), "{note}");
    assert!(note.contains("/metrics answered HTTP 404"), "{note}");
    assert!(
        r.summary().contains("accounting: not available"),
        "{}",
        r.summary()
    );
}

const ENGINE_LINE: &str = "[2026-12-01 14:02:11] pool memory leak detected! [full] total=4096, available=4000, evictable=0, protected=0, session_held=0, uncached=0";

#[test]
fn an_engine_memory_check_in_the_log_is_quoted_and_fails_the_run() {
    let line = format!("--log-line={ENGINE_LINE}");
    let r = run(&quick(
        "log_line",
        &[line.as_str(), "--log-line-after=10"],
        Workload::Text,
    ));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    // Memory and accounting are clean: the log alone fails the run.
    assert_memory_flat(&r);
    assert_eq!(accounting(&r).outcome, Some(Outcome::Pass));
    let log = r.log_watch.as_ref().expect("watched");
    assert_eq!(log.total_matches, 1, "{log:?}");
    let m = &log.matches[0];
    assert_eq!(m.text, ENGINE_LINE);
    assert_eq!(m.finding, LogFinding::Leak);
    assert_eq!(m.role.as_deref(), Some("scheduler"));
    assert_eq!(m.pattern, "sglang: memory leak detected");
    // The line number points into the log file.
    let file = std::fs::read_to_string(r.files.server_log.as_ref().expect("a log file"))
        .expect("the log file");
    assert_eq!(file.lines().nth(m.line as usize - 1), Some(ENGINE_LINE));
    let summary = r.summary();
    assert!(summary.contains("why: server log, line"), "{summary}");
    assert!(summary.contains(ENGINE_LINE), "{summary}");
    assert_report_written(&r);
}

#[test]
fn a_server_killed_by_its_own_check_fails_cleanly_with_the_line_quoted() {
    // As SGLang's strict idle check: the line, then the server dies at the next request.
    let line = format!("--log-line={ENGINE_LINE}");
    let started = std::time::Instant::now();
    let r = run(&quick(
        "log_line_crash",
        &[line.as_str(), "--log-line-after=10", "--crash-after=10"],
        Workload::Text,
    ));
    assert!(started.elapsed().as_secs() < 60, "no hang");
    assert_eq!(r.outcome, RunOutcome::Error, "{}", r.summary());
    let cause = r.error.as_ref().and_then(|e| e.cause());
    assert!(
        matches!(
            cause,
            Some(Error::Scenario(ScenarioError::EngineCheckFailed { .. }))
        ),
        "{}",
        r.summary()
    );
    let message = &r.error.as_ref().expect("an error").message;
    assert!(message.contains(ENGINE_LINE), "{message}");
    assert!(message.contains("the server then exited"), "{message}");
    assert_eq!(r.log_watch.as_ref().map(|l| l.total_matches), Some(1));
    assert_report_written(&r);
}
