//! Logical leaks: what the server's own accounting says once the load is over.
//!
//! A preallocated KV pool hides a leak from every memory metric: KV slots that are never given
//! back (SGLang's "token_to_kv_pool_allocator memory leak detected" class) grow no RSS and no GPU
//! memory. With no request in flight once the load is over, the KV tokens in use must be back at
//! their idle value from before the load, and no request may still be running; anything left is
//! a leak of its own kind (`server.kv_tokens@idle`, …), judged exactly — these are counts the
//! engine keeps, not noisy samples, so there is no interval and no threshold beyond rounding.
//!
//! The engine's own memory checks in its log ([`crate::fixture::logwatch`]) are judged here
//! too: any matching line fails the run. Pure functions: the readings come from
//! [`crate::tracker::idle`], the log matches from the fixture.

use serde::{Deserialize, Serialize};

use super::Outcome;
use crate::fixture::LogWatchReport;
use crate::tracker::Unit;
use crate::tracker::idle::{Expect, IdleReading};

/// Differences at or below this are rounding (vLLM's usage is a float fraction).
const TOLERANCE: f64 = 1e-9;

/// One quantity of the accounting: its idle value before the load, after it, and the
/// verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleCheck {
    /// `server.kv_tokens@idle`, `server.running_reqs@idle` (SGLang),
    /// `server.kv_cache_usage@idle`, `server.requests_running@idle` (vLLM).
    pub metric: String,
    /// `count` or `ratio`.
    pub unit: Unit,
    /// The value read before the load (the server idle, just started).
    #[serde(with = "crate::util::nan_null")]
    pub before: f64,
    /// The value it must return to: `before` for KV in use, 0 for running requests.
    #[serde(with = "crate::util::nan_null")]
    pub expected: f64,
    /// The value once the load is over: the first settle reading back at `expected`, else the
    /// last.
    #[serde(with = "crate::util::nan_null")]
    pub after: f64,
    /// Every reading of the settle wait, in order (the last is `after`).
    #[serde(with = "crate::util::nan_null_vec")]
    pub settle: Vec<f64>,
    /// `after - expected`.
    #[serde(with = "crate::util::nan_null")]
    pub excess: f64,
    /// Requests sent between the two readings (warm-up and measured).
    pub requests: u64,
    /// `excess / requests`: what each request left behind, on average.
    pub per_request: Option<f64>,
    /// What the quantity is out of (KV pool tokens, or KV blocks for vLLM), when known.
    pub capacity: Option<f64>,
    /// Pass (back at its idle value), leak (not), or inconclusive (the server was not idle
    /// before the load, so there is nothing to compare with).
    pub outcome: Outcome,
    /// Why, in one sentence.
    pub reason: String,
}

/// The idle accounting check of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdleAccounting {
    /// Whether the server has such accounting (`/v1/loads` or the gauges on `/metrics`). When
    /// not, `note` says why: never a silent pass.
    pub available: bool,
    /// `/v1/loads`, `/metrics (sglang)` or `/metrics (vllm)`.
    #[serde(default)]
    pub source: Option<String>,
    /// Why it is not available, or what else to know.
    #[serde(default)]
    pub note: Option<String>,
    /// How long the readings after the load took (the settle wait), ms.
    #[serde(default)]
    pub settle_ms: u64,
    /// One check per quantity.
    #[serde(default)]
    pub checks: Vec<IdleCheck>,
    /// The worst check (`None` when not available).
    #[serde(default)]
    pub outcome: Option<Outcome>,
}

impl IdleAccounting {
    /// The server has no accounting to check: said, never passed.
    pub fn unavailable(note: impl Into<String>) -> Self {
        Self {
            available: false,
            note: Some(note.into()),
            ..Self::default()
        }
    }

    /// The check of `metric`.
    pub fn check(&self, metric: &str) -> Option<&IdleCheck> {
        self.checks.iter().find(|c| c.metric == metric)
    }
}

/// Whether `v` is back where `e` says, given the value before.
fn settled(expect: Expect, before: f64, v: f64) -> bool {
    v - target(expect, before) <= TOLERANCE
}

fn target(expect: Expect, before: f64) -> f64 {
    match expect {
        Expect::Baseline => before,
        Expect::Zero => 0.0,
    }
}

/// Whether every quantity of `reading` is back at its idle value (the settle wait stops then).
pub fn is_settled(before: &IdleReading, reading: &IdleReading) -> bool {
    before.values.iter().all(|b| {
        reading
            .get(&b.metric)
            .is_some_and(|a| settled(b.expect, b.value, a.value))
    })
}

/// `v` as the unit shows it.
fn show(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Ratio => format!("{v:.4}"),
        _ => format!("{v:.0}"),
    }
}

/// What a KV quantity is called in sentences.
fn what(metric: &str) -> &'static str {
    use crate::tracker::idle::{KV_CACHE_USAGE, KV_TOKENS, REQUESTS_RUNNING, RUNNING_REQS};
    match metric {
        KV_TOKENS => "KV tokens in use",
        KV_CACHE_USAGE => "KV cache usage",
        RUNNING_REQS | REQUESTS_RUNNING => "requests running",
        _ => "the value",
    }
}

/// Judges the readings: `before` (idle, before the load), `settle` (the readings of the settle
/// wait after the load, in order), `requests` sent in between.
pub fn judge(before: &IdleReading, settle: &[IdleReading], requests: u64) -> Vec<IdleCheck> {
    let busy_before = before
        .values
        .iter()
        .filter(|v| v.expect == Expect::Zero && v.value > TOLERANCE)
        .map(|v| format!("{} {}", show(v.unit, v.value), what(&v.metric)))
        .collect::<Vec<_>>();
    before
        .values
        .iter()
        .map(|b| {
            let series: Vec<f64> = settle
                .iter()
                .filter_map(|r| r.get(&b.metric).map(|v| v.value))
                .collect();
            let expected = target(b.expect, b.value);
            let after = series
                .iter()
                .copied()
                .find(|&v| settled(b.expect, b.value, v))
                .or_else(|| series.last().copied())
                .unwrap_or(f64::NAN);
            let excess = after - expected;
            let per_request = (requests > 0 && excess.is_finite()).then(|| excess / requests as f64);
            let capacity = settle
                .iter()
                .rev()
                .find_map(|r| r.get(&b.metric).and_then(|v| v.capacity))
                .or(b.capacity);
            let (u, name) = (b.unit, what(&b.metric));
            let (outcome, reason) = if series.is_empty() {
                (
                    Outcome::Inconclusive,
                    format!("no reading after the load (the server stopped answering {})", before.source),
                )
            } else if !busy_before.is_empty() {
                (
                    Outcome::Inconclusive,
                    format!(
                        "the server was not idle before the load ({}), so its idle value is unknown",
                        busy_before.join(", ")
                    ),
                )
            } else if excess <= TOLERANCE {
                (
                    Outcome::Pass,
                    format!("{name} back at {} after the load", show(u, expected)),
                )
            } else {
                let share = capacity
                    .filter(|c| *c > 0.0)
                    .map(|c| match u {
                        Unit::Ratio => format!(" (~{:.0} of {c:.0} KV blocks)", excess * c),
                        _ => format!(" ({:.2} % of the {c:.0} in the pool)", 100.0 * excess / c),
                    })
                    .unwrap_or_default();
                let each = per_request
                    .map(|p| format!(", {} per request over {requests} requests", show_fine(u, p)))
                    .unwrap_or_default();
                (
                    Outcome::Leak,
                    format!(
                        "{name} {} with no request in flight, idle value {}: {} left behind{share}{each}; memory metrics cannot see this (the KV pool is preallocated)",
                        show(u, after),
                        show(u, expected),
                        signed(u, excess),
                    ),
                )
            };
            IdleCheck {
                metric: b.metric.clone(),
                unit: u,
                before: b.value,
                expected,
                after,
                settle: series,
                excess,
                requests,
                per_request,
                capacity,
                outcome,
                reason,
            }
        })
        .collect()
}

fn signed(unit: Unit, v: f64) -> String {
    format!("+{}", show(unit, v))
}

/// Per-request values are small: two decimals for counts, six for ratios.
fn show_fine(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Ratio => format!("{v:.6}"),
        _ => format!("{v:.2}"),
    }
}

/// The accounting of a run whose `before` reading worked.
pub fn accounting(
    before: &IdleReading,
    settle: &[IdleReading],
    requests: u64,
    settle_ms: u64,
) -> IdleAccounting {
    let checks = judge(before, settle, requests);
    let outcome = checks.iter().map(|c| c.outcome).max();
    IdleAccounting {
        available: true,
        source: Some(before.source.clone()),
        note: None,
        settle_ms,
        checks,
        outcome,
    }
}

/// What the engine's own checks add to the run's outcome: `Leak` when the idle accounting
/// leaks or the log has a matching line, with the reasons (leaks first); `None` when they
/// change nothing.
pub fn engine_findings(
    idle: Option<&IdleAccounting>,
    log: Option<&LogWatchReport>,
) -> Option<(Outcome, Vec<String>)> {
    let mut reasons: Vec<String> = idle
        .into_iter()
        .flat_map(|a| &a.checks)
        .filter(|c| c.outcome == Outcome::Leak)
        .map(|c| format!("{}: {}", c.metric, c.reason))
        .collect();
    if let Some(first) = log.and_then(LogWatchReport::first) {
        let total = log.map_or(0, |l| l.total_matches);
        reasons.push(log_reason(first, total));
    }
    (!reasons.is_empty()).then_some((Outcome::Leak, reasons))
}

/// One sentence on the first matching line of the log.
pub fn log_reason(first: &crate::fixture::LogMatch, total: u64) -> String {
    let by = first
        .role
        .as_deref()
        .map(|r| format!("{r}, "))
        .unwrap_or_default();
    let more = if total > 1 {
        format!(" (and {} more matching lines)", total - 1)
    } else {
        String::new()
    };
    format!(
        "server log, line {} ({by}{:.1} s after the start): {}: \"{}\"{more}",
        first.line,
        first.since_start_ms as f64 / 1000.0,
        first.finding.describe(),
        first.text.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::idle::{IdleValue, KV_CACHE_USAGE, KV_TOKENS, RUNNING_REQS};

    fn sglang(used: f64, running: f64) -> IdleReading {
        IdleReading {
            source: "/v1/loads".into(),
            values: vec![
                IdleValue {
                    metric: KV_TOKENS.into(),
                    unit: Unit::Count,
                    value: used,
                    capacity: Some(4096.0),
                    expect: Expect::Baseline,
                },
                IdleValue {
                    metric: RUNNING_REQS.into(),
                    unit: Unit::Count,
                    value: running,
                    capacity: None,
                    expect: Expect::Zero,
                },
            ],
        }
    }

    #[test]
    fn back_at_idle_passes() {
        let a = accounting(&sglang(0.0, 0.0), &[sglang(0.0, 0.0)], 65, 3);
        assert_eq!(a.outcome, Some(Outcome::Pass));
        assert!(a.checks.iter().all(|c| c.outcome == Outcome::Pass));
        assert_eq!(engine_findings(Some(&a), None), None);
    }

    #[test]
    fn tokens_left_behind_are_a_leak_with_the_numbers() {
        let a = accounting(
            &sglang(0.0, 0.0),
            &[sglang(520.0, 0.0), sglang(520.0, 0.0)],
            65,
            3000,
        );
        let kv = a.check(KV_TOKENS).expect("kv");
        assert_eq!(kv.outcome, Outcome::Leak);
        assert_eq!((kv.before, kv.after, kv.excess), (0.0, 520.0, 520.0));
        assert_eq!(kv.per_request, Some(8.0));
        assert_eq!(kv.settle, vec![520.0, 520.0]);
        assert!(kv.reason.contains("+520"), "{}", kv.reason);
        assert!(
            kv.reason.contains("8.00 per request over 65"),
            "{}",
            kv.reason
        );
        assert!(kv.reason.contains("12.70 %"), "{}", kv.reason);
        assert_eq!(
            a.check(RUNNING_REQS).map(|c| c.outcome),
            Some(Outcome::Pass)
        );
        let (o, reasons) = engine_findings(Some(&a), None).expect("a finding");
        assert_eq!(o, Outcome::Leak);
        assert!(
            reasons[0].starts_with("server.kv_tokens@idle: "),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_value_that_settles_during_the_wait_passes() {
        let a = accounting(
            &sglang(0.0, 0.0),
            &[sglang(40.0, 1.0), sglang(0.0, 0.0)],
            10,
            250,
        );
        assert_eq!(a.outcome, Some(Outcome::Pass), "{a:?}");
        assert!(is_settled(&sglang(0.0, 0.0), &sglang(0.0, 0.0)));
        assert!(!is_settled(&sglang(0.0, 0.0), &sglang(1.0, 0.0)));
        assert!(!is_settled(&sglang(0.0, 0.0), &sglang(0.0, 1.0)));
    }

    #[test]
    fn a_stuck_request_is_a_leak_and_a_busy_start_inconclusive() {
        let a = accounting(&sglang(0.0, 0.0), &[sglang(0.0, 2.0)], 10, 3000);
        assert_eq!(
            a.check(RUNNING_REQS).map(|c| c.outcome),
            Some(Outcome::Leak)
        );
        let busy = accounting(&sglang(30.0, 1.0), &[sglang(30.0, 1.0)], 10, 3000);
        assert!(
            busy.checks
                .iter()
                .all(|c| c.outcome == Outcome::Inconclusive),
            "{busy:?}"
        );
        let gone = accounting(&sglang(0.0, 0.0), &[], 10, 3000);
        assert!(
            gone.checks
                .iter()
                .all(|c| c.outcome == Outcome::Inconclusive)
        );
        assert!(gone.checks[0].after.is_nan());
        // NaN goes to the JSON as null and comes back.
        let json = serde_json::to_string(&gone).expect("serializes");
        assert!(json.contains("\"after\":null"), "{json}");
        let back: IdleAccounting = serde_json::from_str(&json).expect("parses");
        assert!(back.checks[0].after.is_nan());
    }

    #[test]
    fn vllm_usage_is_a_fraction_shown_in_blocks() {
        let r = |u: f64| IdleReading {
            source: "/metrics (vllm)".into(),
            values: vec![IdleValue {
                metric: KV_CACHE_USAGE.into(),
                unit: Unit::Ratio,
                value: u,
                capacity: Some(16384.0),
                expect: Expect::Baseline,
            }],
        };
        let a = accounting(&r(0.0), &[r(20.0 / 16384.0)], 10, 3000);
        let c = a.check(KV_CACHE_USAGE).expect("usage");
        assert_eq!(c.outcome, Outcome::Leak);
        assert!(c.reason.contains("~20 of 16384 KV blocks"), "{}", c.reason);
        assert_eq!(
            accounting(&r(0.0), &[r(1e-12)], 10, 1).outcome,
            Some(Outcome::Pass)
        );
    }

    #[test]
    fn a_log_match_is_a_finding_of_its_own() {
        let log = LogWatchReport {
            available: true,
            note: None,
            lines: 100,
            matches: vec![crate::fixture::LogMatch {
                line: 42,
                at: "2026-12-01T14:00:00.000Z".into(),
                since_start_ms: 12_300,
                finding: crate::fixture::LogFinding::Leak,
                pattern: "sglang: memory leak detected".into(),
                role: Some("scheduler".into()),
                text: "pool memory leak detected! [full] total=4096".into(),
            }],
            total_matches: 3,
        };
        let (o, reasons) = engine_findings(None, Some(&log)).expect("a finding");
        assert_eq!(o, Outcome::Leak);
        assert_eq!(
            reasons,
            [
                "server log, line 42 (scheduler, 12.3 s after the start): the engine's memory leak check fired: \"pool memory leak detected! [full] total=4096\" (and 2 more matching lines)"
            ]
        );
        assert_eq!(
            engine_findings(None, Some(&LogWatchReport::default())),
            None
        );
    }
}
