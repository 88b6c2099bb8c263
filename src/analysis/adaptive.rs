//! Adaptive run length: looks at the verdict while requests are still being sent, so that a
//! certain leak stops the run early and an undecided metric gets more requests, with the
//! false-alarm rate still bounded across the looks.
//!
//! # The rule
//! For a planned count `n` and a budget `b ≥ n` (`max_requests`, 4 × `n` by default):
//! - **early looks** at `n/4` and `n/2` may only stop for a leak, each at `α/100`
//!   (Haybittle–Peto style: only a leak that is already certain ends the run), and only for a
//!   leak a bounded cache could hardly fake: at least [`EARLY_FLOORS`] × the rule's floor of
//!   growth, and still growing confidently above the limit over the last half of what was seen;
//! - **the planned look** at `n` stops when every judged metric is decided (or one leaks), at
//!   `α/2` when extensions may follow, at what is left of `α` otherwise;
//! - **extensions** of `n/2` requests each up to `b`, with the rest of `α` split evenly among
//!   them; the last one ends the run whatever it says.
//!
//! A clean server is called leaking only if some look rejects at its own level, so by
//! Bonferroni the false-alarm rate over the whole run is at most `Σ αₖ = α` — the same bound as
//! one look at the planned count. Passes need no spending: a pass is "the slope's interval lies
//! below the limit" at the configured confidence, at every look. `docs/calibration.md` checks
//! both with the adaptive table (`sglang-memtest calibrate --adaptive`).

use serde::{Deserialize, Serialize};

use super::{Outcome, Verdict};

/// Share of `α` each early look spends.
const EARLY_SHARE: f64 = 0.01;
/// An early look stops for a leak only past this many times the rule's `min_growth` (512 MiB
/// for host and `/dev/shm` memory, 8 GiB for GPU memory by default). Before the planned count
/// a leak cannot be told from a cache that fills and stops later in the run (a plateau at 70 %
/// passes at the planned count): with the floors of the 1 GiB-per-million budget (1 MiB host)
/// 64 × called half of the calibration's caches leaks at 300 planned requests (they fill up to
/// 1 MiB a request for 200 requests), so only growth no plausible cache of a clean run reaches
/// ends a run early.
pub const EARLY_FLOORS: f64 = 512.0;

/// Share of `α` the planned look spends when extensions may follow.
const PLANNED_SHARE: f64 = 0.5;

/// Why a look is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookKind {
    /// Before the planned count: stops only for a certain leak.
    Early,
    /// At the planned count.
    Planned,
    /// After the planned count, within the budget.
    Extension,
}

/// One look of the schedule: after `requests` measured requests, judge leaks at `alpha`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Look {
    /// Measured requests sent when the look is taken.
    pub requests: u64,
    /// Significance level of a leak at this look.
    pub alpha: f64,
    /// Early, planned or extension.
    pub kind: LookKind,
}

/// The looks for `planned` requests, a `budget` and an overall `alpha`, in order.
///
/// Early looks are left out when they would come before `min_early` requests (a trend needs
/// readings). The levels always sum to `alpha`.
pub fn schedule(planned: u64, budget: u64, alpha: f64, min_early: u64) -> Vec<Look> {
    let planned = planned.max(1);
    let budget = budget.max(planned);
    let mut early: Vec<u64> = [planned / 4, planned / 2]
        .into_iter()
        .filter(|&r| r >= min_early && r < planned)
        .collect();
    early.dedup();
    let step = (planned / 2).max(1);
    let mut extensions = Vec::new();
    let mut at = planned;
    while at < budget {
        at = (at + step).min(budget);
        extensions.push(at);
    }
    let early_alpha = alpha * EARLY_SHARE;
    let left = alpha - early_alpha * early.len() as f64;
    let planned_alpha = if extensions.is_empty() {
        left
    } else {
        alpha * PLANNED_SHARE
    };
    let ext_alpha = (left - planned_alpha) / extensions.len().max(1) as f64;
    let mut looks: Vec<Look> = early
        .into_iter()
        .map(|requests| Look {
            requests,
            alpha: early_alpha,
            kind: LookKind::Early,
        })
        .collect();
    looks.push(Look {
        requests: planned,
        alpha: planned_alpha,
        kind: LookKind::Planned,
    });
    looks.extend(extensions.into_iter().map(|requests| Look {
        requests,
        alpha: ext_alpha,
        kind: LookKind::Extension,
    }));
    looks
}

/// Why the measured requests ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A leak was certain before the planned count.
    LeakCertain,
    /// At the planned count or an extension, every judged metric was decided (or one leaked).
    Decided,
    /// The budget was spent with a metric still undecided.
    Budget,
}

impl StopReason {
    /// In words, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::LeakCertain => "a leak was already certain before the planned count",
            StopReason::Decided => "every judged metric was decided",
            StopReason::Budget => "the request budget was spent with a metric still undecided",
        }
    }
}

/// Whether the run stops after `look`, given the verdict at that look.
pub fn decide(look: &Look, verdict: &Verdict, last: bool) -> Option<StopReason> {
    let leak = verdict.outcome == Outcome::Leak;
    match look.kind {
        LookKind::Early => (leak && unmistakable(verdict)).then_some(StopReason::LeakCertain),
        LookKind::Planned | LookKind::Extension => {
            let open = unnamed(verdict)
                || kind_unnamed(verdict, look.alpha)
                || slowing(verdict)
                || stepped(verdict)
                || near_floor(verdict);
            if (leak && (last || !open)) || verdict.outcome == Outcome::Pass {
                Some(StopReason::Decided)
            } else if last {
                Some(StopReason::Budget)
            } else {
                None
            }
        }
    }
}

/// Whether a leak was seen only in a whole (the tree, a device, `/dev/shm`) while some process's
/// metric is still undecided: the run goes on to name the process — a maintainer fixes a
/// process, not a tree. (A 2 KiB/request leak in SGLang's detokenizer is certain in the tree's
/// sum at 300 requests, in the detokenizer alone only later.)
fn unnamed(verdict: &Verdict) -> bool {
    let per_process = |metric: &str| crate::tracker::metric::pid_of(metric).is_some();
    !verdict.leaks().any(|m| per_process(&m.metric))
        && verdict
            .metrics
            .iter()
            .any(|m| m.judged && m.outcome == Outcome::Inconclusive && per_process(&m.metric))
}

/// How far below the look's level a leak's own p-value must be for the run to go on naming
/// its kind.
const KIND_CERTAIN: f64 = 0.01;

/// Whether a leaking metric's growth points at a request kind that is not named yet: no kind
/// leaks, but some kind's blocks grew more than the reference's by more than the limit at the
/// look's level before the correction across every test (a handful of blocks a kind at the
/// planned count; SGLang's rejection kinds, 6 blocks each in 300 requests of the error-paths mix,
/// reached p = 0.002 and 0.007 where Holm over ~50 tests asked for 0.001). More requests bring
/// more blocks: the run goes on to name the kind, as it does to name a process — when the leak
/// itself is certain ([`KIND_CERTAIN`]).
fn kind_unnamed(verdict: &Verdict, alpha: f64) -> bool {
    // Only a leak certain enough to survive the smaller levels of the later looks: a marginal one
    // is called where it is (extending it would trade a leak now for a coin toss later).
    let certain = |p: Option<f64>| p.is_some_and(|p| p <= KIND_CERTAIN * alpha);
    verdict
        .leaks()
        .filter(|m| certain(m.p_value_adjusted))
        .any(|m| {
            m.by_kind.as_ref().is_some_and(|a| {
                !a.kinds.iter().any(|k| k.outcome == Outcome::Leak)
                    && a.kinds
                        .iter()
                        .any(|k| k.p_value.is_some_and(|p| p <= alpha))
            })
        })
}

/// A leak whose last half grew less than this share of its whole window's slope is still
/// slowing down: the run goes on rather than stop on it.
const SLOWING_SHARE: f64 = 0.75;

/// Whether a leaking metric still measurably slows down — its last half's slope (the point
/// estimate) below [`SLOWING_SHARE`] of the whole window's, though not confidently enough for
/// the deceleration cut. A server warming up (τ ≈ 50 requests) and a cache that stops late read
/// as leaks at the planned look; a straight line does not slow down, and more requests tell them
/// apart (the warm-up ends, the cache's plateau grows long enough to be seen). Only a look that
/// may extend uses this: the last one judges what it has.
fn slowing(verdict: &Verdict) -> bool {
    verdict.leaks().any(|m| match (m.slope, m.late_slope) {
        (Some(whole), Some(late)) => late.point < SLOWING_SHARE * whole.point,
        _ => false,
    })
}

/// Whether a leaking metric grew in a few jumps and, between them, not clearly above its limit
/// (the slope with the jumps taken out has an interval reaching below the limit): an allocator
/// growing its heap in chunks now and then, or a leak of large objects seen too few times. More
/// requests tell them apart — the chunks stop, the objects keep coming.
fn stepped(verdict: &Verdict) -> bool {
    verdict.leaks().any(|m| {
        m.steps.is_some_and(|s| {
            verdict
                .thresholds
                .rule_for(&m.metric)
                .is_some_and(|r| s.total > 0.0 && s.between.ci.lo <= r.max_slope_per_request)
        })
    })
}

/// A leak that grew less than this many floors over its judged window is not stopped on by a
/// look that may extend.
const NEAR_FLOOR: f64 = 2.0;

/// Whether a leaking metric only just crossed its floor: the final verdict cuts the warm-up again
/// on the whole run, and the cut (MSER on the batch means) moves with the last readings — a
/// 32 KiB/request leak of the reference server was LEAK at its look (1.2 MiB over 40 requests)
/// and "grew only 556 KiB, below the floor" in the final verdict, which cut half the run. More
/// requests put it past the floor for good; the last look judges what it has.
fn near_floor(verdict: &Verdict) -> bool {
    verdict.leaks().any(|m| {
        verdict
            .thresholds
            .rule_for(&m.metric)
            .is_some_and(|r| m.growth < NEAR_FLOOR * r.min_growth)
    })
}

/// Whether every leaking metric of an early look grew far past its floor and still grows
/// confidently above its limit over the last half of the readings.
fn unmistakable(verdict: &Verdict) -> bool {
    verdict.leaks().all(|m| {
        verdict.thresholds.rule_for(&m.metric).is_some_and(|r| {
            m.growth >= EARLY_FLOORS * r.min_growth
                && m.late_slope
                    .is_some_and(|l| l.ci.lo > r.max_slope_per_request)
        })
    })
}

/// What one look saw (the report's record of the adaptive run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookRecord {
    /// The look.
    #[serde(flatten)]
    pub look: Look,
    /// The verdict at this look.
    pub outcome: Outcome,
    /// Judged metrics still inconclusive at this look.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undecided: Vec<String>,
}

impl LookRecord {
    /// The record of `look` given its verdict.
    pub fn new(look: Look, verdict: &Verdict) -> Self {
        Self {
            look,
            outcome: verdict.outcome,
            undecided: verdict
                .metrics
                .iter()
                .filter(|m| m.judged && m.outcome == Outcome::Inconclusive)
                .map(|m| m.metric.clone())
                .collect(),
        }
    }
}

/// How an adaptive run went: the plan, every look, how many requests it took and why it
/// stopped. The final verdict is judged at the level of the last look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adaptive {
    /// The planned measured requests (`num_requests`).
    pub planned: u64,
    /// The budget (`max_requests`).
    pub budget: u64,
    /// Measured requests sent.
    pub requests: u64,
    /// Why it stopped.
    pub stopped: StopReason,
    /// The looks taken, in order.
    pub looks: Vec<LookRecord>,
    /// The overall significance level the looks split among them.
    pub alpha: f64,
}

impl Adaptive {
    /// One sentence for the report: how many requests, and why it stopped.
    pub fn summary(&self) -> String {
        let looks = self.looks.len();
        let plural = if looks == 1 { "" } else { "s" };
        format!(
            "{} measured requests (planned {}, budget {}): stopped after {looks} look{plural} because {}",
            self.requests,
            self.planned,
            self.budget,
            self.stopped.describe(),
        )
    }

    /// The level the final verdict is judged at: the last look's.
    pub fn final_alpha(&self) -> Option<f64> {
        self.looks.last().map(|l| l.look.alpha)
    }

    /// A sentence when the run stopped on a leak that the final verdict — with the cooldown —
    /// does not hold (a collector's garbage or a flushable cache climbs like a leak until the
    /// flush), leaving metrics undecided that the extension would have had requests for.
    pub fn refuted_stop(&self, verdict: &Verdict) -> Option<String> {
        let last = self.looks.last()?;
        if self.stopped == StopReason::Budget
            || last.outcome != Outcome::Leak
            || verdict.outcome == Outcome::Leak
            || !verdict.metrics.iter().any(|m| m.given_back.is_some())
        {
            return None;
        }
        let undecided: Vec<&str> = verdict
            .metrics
            .iter()
            .filter(|m| m.judged && m.outcome == Outcome::Inconclusive)
            .map(|m| m.metric.as_str())
            .collect();
        (!undecided.is_empty()).then(|| {
            format!(
                "the run stopped at {} measured requests on a leak that the cooldown then gave back, so {} got no extension; a longer run (--requests) would decide it",
                self.requests,
                undecided.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that stopped on a leak the cooldown gave back says what got no extension.
    #[test]
    fn a_stop_on_a_leak_the_cooldown_refuted_is_said() {
        let mut v = one_process(|_| 0.0);
        let a = Adaptive {
            planned: 300,
            budget: 1200,
            requests: 300,
            stopped: StopReason::Decided,
            looks: vec![LookRecord {
                look: PLANNED,
                outcome: Outcome::Leak,
                undecided: Vec::new(),
            }],
            alpha: 0.05,
        };
        assert_eq!(
            a.refuted_stop(&v),
            None,
            "nothing undecided: nothing to say"
        );
        v.metrics[0].outcome = Outcome::Inconclusive;
        v.outcome = Outcome::Inconclusive;
        assert_eq!(
            a.refuted_stop(&v),
            None,
            "nothing was given back: not refuted"
        );
        v.metrics[0].given_back = Some(crate::analysis::GivenBack {
            grew: 8e6,
            kept: 0.0,
            capped: false,
        });
        let note = a.refuted_stop(&v).unwrap_or_default();
        assert!(
            note.contains("gave back") && note.contains(&v.metrics[0].metric),
            "{note}"
        );
        v.outcome = Outcome::Leak;
        assert_eq!(a.refuted_stop(&v), None, "a leak that held is no news");
    }

    /// A leak only just past its floor at a look that may extend runs on; the last look stops.
    #[test]
    fn a_leak_just_past_the_floor_runs_on() {
        // 1.5 MiB over 300 requests: 5 KiB/request, certain, but under two floors.
        let v = one_process(|i| i * 5.0 * 1024.0);
        assert_eq!(v.outcome, Outcome::Leak, "{:?}", v.reasons);
        assert!(near_floor(&v));
        assert_eq!(decide(&PLANNED, &v, false), None);
        assert_eq!(decide(&PLANNED, &v, true), Some(StopReason::Decided));
        // 3 MiB: past two floors, decided.
        let v = one_process(|i| i * 10.0 * 1024.0);
        assert_eq!(decide(&PLANNED, &v, false), Some(StopReason::Decided));
    }

    /// The planned look of a 300-request run, at its level.
    const PLANNED: Look = Look {
        requests: 300,
        alpha: 0.025,
        kind: LookKind::Planned,
    };

    /// The verdict on one process's memory over 300 readings, `f(i)` above 1 GB plus a
    /// deterministic jitter of up to 3 KiB.
    fn one_process(f: impl Fn(f64) -> f64) -> Verdict {
        use crate::analysis::{RequestSeries, Thresholds, analyze};
        use crate::tracker::metric::Unit;
        let values: Vec<f64> = (0..300)
            .map(|i| 1e9 + f(f64::from(i)) + 512.0 * f64::from(i % 7))
            .collect();
        analyze(
            &[RequestSeries::raw("host.rss@pid:7", Unit::Bytes, &values)],
            &Thresholds::default(),
        )
    }

    fn total(looks: &[Look]) -> f64 {
        looks.iter().map(|l| l.alpha).sum()
    }

    #[test]
    fn the_levels_sum_to_alpha_whatever_the_budget() {
        for (n, b) in [
            (100, 400),
            (100, 100),
            (100, 130),
            (3, 12),
            (50, 200),
            (1000, 1001),
        ] {
            let looks = schedule(n, b, 0.05, 10);
            assert!((total(&looks) - 0.05).abs() < 1e-12, "{n}/{b}: {looks:?}");
            assert_eq!(looks.last().unwrap().requests, b.max(n));
            assert!(looks.windows(2).all(|w| w[0].requests < w[1].requests));
            assert_eq!(
                looks.iter().filter(|l| l.kind == LookKind::Planned).count(),
                1
            );
        }
    }

    #[test]
    fn the_default_schedule_for_100_requests() {
        let looks = schedule(100, 400, 0.05, 10);
        let at: Vec<u64> = looks.iter().map(|l| l.requests).collect();
        assert_eq!(at, [25, 50, 100, 150, 200, 250, 300, 350, 400]);
        assert!((looks[0].alpha - 0.0005).abs() < 1e-12);
        assert!((looks[2].alpha - 0.025).abs() < 1e-12);
        assert!((looks[3].alpha - 0.024 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn short_runs_have_no_early_looks_and_no_budget_means_one_look_at_alpha() {
        let looks = schedule(12, 12, 0.05, 10);
        assert_eq!(looks.len(), 1);
        assert!((looks[0].alpha - 0.05).abs() < 1e-12);
        assert_eq!(looks[0].kind, LookKind::Planned);
    }

    #[test]
    fn a_leak_seen_only_in_the_tree_runs_on_until_a_process_is_named() {
        use crate::analysis::{RequestSeries, Thresholds, analyze};
        use crate::tracker::metric::Unit;
        let line = |metric: &str, per_request: f64| {
            let values: Vec<f64> = (0..300)
                .map(|i| 1e9 + per_request * f64::from(i) + 512.0 * f64::from(i % 7))
                .collect();
            RequestSeries::raw(metric, Unit::Bytes, &values)
        };
        let mut v = analyze(
            &[
                line("host.rss@tree", 8192.0),
                line("host.rss@pid:7", 8192.0),
            ],
            &Thresholds::default(),
        );
        assert_eq!(v.outcome, Outcome::Leak);
        let planned = PLANNED;
        // The process leaks too: named, the run stops.
        assert_eq!(decide(&planned, &v, false), Some(StopReason::Decided));
        // Only the tree: the process is still undecided, so the run goes on…
        v.metrics[1].outcome = Outcome::Inconclusive;
        assert_eq!(decide(&planned, &v, false), None);
        // …unless the budget is spent.
        assert_eq!(decide(&planned, &v, true), Some(StopReason::Decided));
    }

    /// A leak whose last half grew at under ¾ of its whole window's pace (a warm-up still ending
    /// at the planned look, too noisy for the deceleration cut) does not stop the run; at the
    /// budget's end the look judges what it has. A straight line stops at once.
    #[test]
    fn a_leak_that_still_slows_down_runs_on() {
        let line = one_process(|i| 8192.0 * i);
        let planned = PLANNED;
        assert_eq!(line.outcome, Outcome::Leak);
        assert!(!slowing(&line));
        assert_eq!(decide(&planned, &line, false), Some(StopReason::Decided));
        let mut slower = line.clone();
        let late = slower.metrics[0].late_slope.as_mut().unwrap();
        late.point *= 0.6;
        assert!(slowing(&slower));
        assert_eq!(decide(&planned, &slower, false), None);
        assert_eq!(decide(&planned, &slower, true), Some(StopReason::Decided));
    }

    /// A leak whose growth points at a kind not yet named (a kind's raw p-value at the look's
    /// level, none leaking after the correction) runs on; once a kind is named, or when none
    /// points anywhere, it stops.
    #[test]
    fn a_leak_that_points_at_an_unnamed_kind_runs_on() {
        let mut v = one_process(|i| 16384.0 * i);
        let planned = PLANNED;
        let kind = |name: &str, p: f64, outcome: &str| {
            serde_json::json!({"kind": name, "requests": 30, "blocks": 6, "p_value": p,
                "outcome": outcome,
                "slope": {"point": 0.0, "std_err": 0.0, "ci": {"level": 0.95, "lo": 0.0, "hi": 0.0}}})
        };
        let split = |kinds: Vec<serde_json::Value>| {
            serde_json::from_value(
                serde_json::json!({"kinds": kinds, "follows": [], "finding": ""}),
            )
            .expect("a kind split")
        };
        v.metrics[0].by_kind = Some(split(vec![
            kind("reject-max-tokens", 0.002, "pass"),
            kind("plain", 0.9, "pass"),
        ]));
        assert!(kind_unnamed(&v, planned.alpha));
        assert_eq!(decide(&planned, &v, false), None);
        assert_eq!(decide(&planned, &v, true), Some(StopReason::Decided));
        v.metrics[0].by_kind = Some(split(vec![
            kind("reject-max-tokens", 1e-6, "leak"),
            kind("plain", 0.9, "pass"),
        ]));
        assert_eq!(decide(&planned, &v, false), Some(StopReason::Decided));
        v.metrics[0].by_kind = Some(split(vec![
            kind("reject-max-tokens", 0.4, "pass"),
            kind("plain", 0.9, "pass"),
        ]));
        assert_eq!(decide(&planned, &v, false), Some(StopReason::Decided));
    }

    /// Three 512 KiB jumps over 300 requests, flat between them: the window reads as a leak of
    /// ~5 KiB a request, but the jumps explain it, so the run goes on; a line with the same jumps
    /// on top still leaks between them and stops.
    #[test]
    fn a_leak_a_few_jumps_explain_runs_on() {
        let run = |per_request: f64| {
            one_process(|i| {
                let jumps = [60.0, 140.0, 230.0].iter().filter(|&&at| i >= at).count();
                524_288.0 * jumps as f64 + per_request * i
            })
        };
        let planned = PLANNED;
        let mut jumps = run(0.0);
        let steps = jumps.metrics[0].steps.expect("the jumps are seen");
        assert_eq!(steps.count, 3);
        assert!(steps.between.ci.hi < 1024.0, "{steps:?}");
        jumps.metrics[0].outcome = Outcome::Leak;
        jumps.outcome = Outcome::Leak;
        assert!(stepped(&jumps));
        assert_eq!(decide(&planned, &jumps, false), None);
        assert_eq!(decide(&planned, &jumps, true), Some(StopReason::Decided));
        let leak = run(8192.0);
        assert_eq!(leak.outcome, Outcome::Leak, "{:?}", leak.metrics[0].reasons);
        assert!(!stepped(&leak));
        assert_eq!(decide(&planned, &leak, false), Some(StopReason::Decided));
    }
}
