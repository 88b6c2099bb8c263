//! Compare two reports metric by metric: did a change (a PR, a new SGLang build) add a leak or
//! make one worse?
//!
//! Metrics are matched by **process role**, never by PID — two runs never share PIDs:
//! `host.rss@pid:944` in the baseline and `host.rss@pid:1203` in the new run are both
//! `host.rss@scheduler` — and, when a run mixed request kinds, by kind too
//! (`host.rss@tokenizer_manager [reject-long-prompt]`). Per metric the new slope minus the
//! baseline's is given with an interval combined from both runs' intervals, and classified:
//!
//! - **regressed**: the metric leaks now and did not before, or its slope rose with confidence
//!   by more than the [`RegressionRule`] allows (by default: the difference's interval lies wholly
//!   above +1 GiB per million requests, 1.0 KiB/request) — a PR that takes a process from 0.6 to
//!   21 KiB/request regresses even when neither run crossed the leak limit;
//! - **improved**: it leaked before and passes now, or its slope fell by more than the rule's
//!   increase with confidence;
//! - **same** otherwise; **added** / **removed** for a metric only one run has (a new process
//!   role that leaks counts as regressed).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::Report;
use super::roles::{process_keys, stable_metric};
use crate::analysis::{ConfidenceInterval, Estimate, Outcome};
use crate::tracker::Unit;
use crate::util::signed_bytes;

/// How a metric changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Leaks now and did not before, or grows confidently faster by more than its limit.
    Regressed,
    /// Leaked before and passes now, or grows confidently slower by more than its limit.
    Improved,
    /// Neither.
    Same,
    /// Only in the new report (and not leaking there).
    Added,
    /// Only in the baseline.
    Removed,
}

impl Change {
    fn word(self) -> &'static str {
        match self {
            Change::Regressed => "REGRESSED",
            Change::Improved => "improved",
            Change::Same => "same",
            Change::Added => "added",
            Change::Removed => "removed",
        }
    }
}

/// One metric in both reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    /// The metric, per-process metrics by role (`host.rss@scheduler`).
    pub metric: String,
    /// Slope per request in the baseline report.
    pub before: Option<Estimate>,
    /// Slope per request in the new report.
    pub after: Option<Estimate>,
    /// `after - before`, its interval combined from both (per side, in quadrature).
    pub difference: Option<Estimate>,
    /// The metric's leak limit per request (the new report's rule): the margin of a change.
    pub limit: Option<f64>,
    /// Outcome before.
    pub outcome_before: Option<Outcome>,
    /// Outcome after.
    pub outcome_after: Option<Outcome>,
    /// Regressed, improved, same, added or removed.
    pub change: Change,
    /// Why, in a sentence.
    pub reason: String,
}

impl MetricDelta {
    /// The new report is worse for this metric.
    pub fn regressed(&self) -> bool {
        self.change == Change::Regressed
    }
}

/// The comparison of two reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// `scenario, target, model, started` of the baseline.
    pub baseline: String,
    /// The same of the new report.
    pub new: String,
    /// Per judged metric (in either report), regressions first.
    pub metrics: Vec<MetricDelta>,
}

impl Comparison {
    /// True when some metric regressed.
    pub fn regressed(&self) -> bool {
        self.metrics.iter().any(MetricDelta::regressed)
    }

    /// A table for a person.
    pub fn to_table(&self) -> String {
        let slope = |e: &Option<Estimate>| {
            e.map_or("-".to_owned(), |e| {
                format!(
                    "{} [{} .. {}]",
                    signed_bytes(e.point),
                    signed_bytes(e.ci.lo),
                    signed_bytes(e.ci.hi)
                )
            })
        };
        let outcome =
            |o: Option<Outcome>| o.map_or("-".to_owned(), |o| format!("{o:?}").to_lowercase());
        let mut out = format!("baseline: {}\nnew:      {}\n\n", self.baseline, self.new);
        let _ = writeln!(
            out,
            "{:<34} {:>34} {:>34} {:>36}  change",
            "metric (per request)", "baseline", "new", "difference"
        );
        for m in &self.metrics {
            let _ = writeln!(
                out,
                "{:<34} {:>34} {:>34} {:>36}  {} ({} → {})",
                m.metric,
                slope(&m.before),
                slope(&m.after),
                slope(&m.difference),
                m.change.word(),
                outcome(m.outcome_before),
                outcome(m.outcome_after),
            );
        }
        let regressed: Vec<&MetricDelta> = self.metrics.iter().filter(|m| m.regressed()).collect();
        if regressed.is_empty() {
            out.push_str("\nno regression\n");
        } else {
            out.push('\n');
            for m in regressed {
                let _ = writeln!(out, "regressed: {}: {}", m.metric, m.reason);
            }
        }
        out
    }
}

/// `after - before` with an interval: each side's half-width combined in quadrature.
fn difference(before: &Estimate, after: &Estimate) -> Estimate {
    let point = after.point - before.point;
    let down = (after.point - after.ci.lo).hypot(before.ci.hi - before.point);
    let up = (after.ci.hi - after.point).hypot(before.point - before.ci.lo);
    Estimate {
        point,
        std_err: after.std_err.hypot(before.std_err),
        ci: ConfidenceInterval {
            level: after.ci.level.min(before.ci.level),
            lo: point - down,
            hi: point + up,
        },
    }
}

/// When a slope that went up counts as a regression: the difference's interval lies wholly above
/// `min_increase` (per request) and, when `min_ratio` is set, the new slope is at least that much
/// above the old one (`0.5`: 50 % faster).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionRule {
    /// The smallest increase in growth per request that regresses, in the metric's unit per
    /// request (bytes for memory). Metrics not in bytes use their own leak limit.
    pub min_increase: f64,
    /// The smallest relative increase that regresses (0: off).
    pub min_ratio: f64,
}

impl Default for RegressionRule {
    /// +1 GiB per million requests (1.0 KiB/request): the default budget of a whole metric.
    fn default() -> Self {
        Self {
            min_increase: crate::analysis::DEFAULT_BUDGET_PER_MILLION / 1e6,
            min_ratio: 0.0,
        }
    }
}

struct Judged {
    key: String,
    unit: Unit,
    slope: Option<Estimate>,
    outcome: Outcome,
}

/// Every judged metric of `r`, per-process ones by role, and each request kind of a metric
/// that was split by kind as `metric [kind]`.
fn judged(r: &Report) -> Vec<Judged> {
    let keys = process_keys(&r.timeline);
    let mut out = Vec::new();
    for m in r
        .verdict
        .iter()
        .flat_map(|v| v.metrics.iter().filter(|m| m.judged))
    {
        let key = stable_metric(&m.metric, &keys);
        for k in m.by_kind.iter().flat_map(|a| &a.kinds) {
            out.push(Judged {
                key: format!("{key} [{}]", k.kind),
                unit: m.unit,
                slope: Some(k.slope),
                outcome: k.outcome,
            });
        }
        out.push(Judged {
            key,
            unit: m.unit,
            slope: m.slope,
            outcome: m.outcome,
        });
    }
    out
}

fn describe(r: &Report) -> String {
    format!(
        "{} ({}) against {}{}, started {}",
        r.scenario,
        r.test_type,
        r.target.kind,
        r.target
            .model
            .as_ref()
            .map(|m| format!(" {m}"))
            .unwrap_or_default(),
        r.started_at
    )
}

/// Compare `after` (the candidate) against `before` (the baseline) with the default
/// [`RegressionRule`].
pub fn compare(before: &Report, after: &Report) -> Comparison {
    compare_with(before, after, &RegressionRule::default())
}

/// Compare `after` (the candidate) against `before` (the baseline): a metric (or a request kind
/// of it) regresses when it leaks now and did not before, or when its growth per request rose
/// by more than `rule` allows with confidence.
pub fn compare_with(before: &Report, after: &Report, rule: &RegressionRule) -> Comparison {
    let (a, b) = (judged(before), judged(after));
    let mut names: Vec<String> = a.iter().chain(&b).map(|x| x.key.clone()).collect();
    names.sort();
    names.dedup();
    let limit_of = |name: &str| {
        // A per-process key no longer parses as a metric: its rule is that of any PID.
        let probe = match name.split_once('@') {
            Some((q, scope)) if !matches!(scope, "tree") && !scope.starts_with("dev:") => {
                format!("{q}@pid:1")
            }
            _ => name.to_owned(),
        };
        let probe = probe.split(" [").next().unwrap_or(&probe).to_owned();
        after
            .thresholds
            .rule_for(&probe)
            .or_else(|| before.thresholds.rule_for(&probe))
            .map(|r| r.max_slope_per_request)
    };
    let mut metrics: Vec<MetricDelta> = names
        .into_iter()
        .map(|name| {
            let x = a.iter().find(|m| m.key == name);
            let y = b.iter().find(|m| m.key == name);
            let limit = limit_of(&name);
            let diff = match (x.and_then(|x| x.slope), y.and_then(|y| y.slope)) {
                (Some(p), Some(q)) => Some(difference(&p, &q)),
                _ => None,
            };
            let bytes = x.or(y).is_some_and(|m| m.unit == Unit::Bytes);
            let margin = if bytes {
                rule.min_increase
            } else {
                limit.unwrap_or(0.0)
            };
            let faster = |d: &Estimate| {
                d.ci.lo > margin
                    && (rule.min_ratio <= 0.0
                        || x.and_then(|x| x.slope).is_none_or(|p| {
                            d.point >= rule.min_ratio * p.point.max(0.0)
                        }))
            };
            let ob = x.map(|x| x.outcome);
            let oa = y.map(|y| y.outcome);
            let (change, reason) = match (ob, oa) {
                (None, Some(Outcome::Leak)) => (
                    Change::Regressed,
                    "a new process (or metric) that leaks".to_owned(),
                ),
                (None, _) => (Change::Added, "only in the new report".to_owned()),
                (_, None) => (Change::Removed, "only in the baseline".to_owned()),
                (Some(ob), Some(Outcome::Leak)) if ob != Outcome::Leak => (
                    Change::Regressed,
                    format!("leaks now ({ob:?} before)").to_lowercase(),
                ),
                _ if diff.as_ref().is_some_and(faster) => (
                    Change::Regressed,
                    format!(
                        "grows faster by {} with confidence, more than the {}/request a change may add{}",
                        diff.map_or_else(String::new, |d| format!(
                            "{}/request [{} .. {}]",
                            signed_bytes(d.point),
                            signed_bytes(d.ci.lo),
                            signed_bytes(d.ci.hi)
                        )),
                        signed_bytes(margin),
                        if rule.min_ratio > 0.0 {
                            format!(" and {:.0} % of the baseline's slope", rule.min_ratio * 100.0)
                        } else {
                            String::new()
                        }
                    ),
                ),
                (Some(Outcome::Leak), Some(Outcome::Pass)) => {
                    (Change::Improved, "leaked before, passes now".to_owned())
                }
                _ if diff.is_some_and(|d| d.ci.hi < -margin) => (
                    Change::Improved,
                    format!(
                        "grows slower by more than {}/request with confidence",
                        signed_bytes(margin)
                    ),
                ),
                _ => (
                    Change::Same,
                    "no change beyond the limit that the intervals can tell".to_owned(),
                ),
            };
            MetricDelta {
                metric: name,
                before: x.and_then(|x| x.slope),
                after: y.and_then(|y| y.slope),
                difference: diff,
                limit,
                outcome_before: ob,
                outcome_after: oa,
                change,
                reason,
            }
        })
        .collect();
    metrics.sort_by(|p, q| p.change.cmp(&q.change).then(p.metric.cmp(&q.metric)));
    Comparison {
        baseline: describe(before),
        new: describe(after),
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{RequestSeries, Thresholds, analyze};
    use crate::report::{ReportFiles, RunOutcome, SCHEMA_VERSION, TargetInfo};
    use crate::tracker::{ProcessInfo, Timeline, Unit};

    use crate::util::{GIB, KIB, MIB};

    /// A run of 200 requests: each `(pid, role, bytes per request)` grows at that rate (plus a
    /// little deterministic jitter), the tree is their sum.
    fn report(procs: &[(u32, &str, f64)]) -> Report {
        let n = 200;
        let mut tree = vec![0.0; n];
        let mut series = Vec::new();
        let mut timeline = Timeline::default();
        for (k, &(pid, role, per_request)) in procs.iter().enumerate() {
            let values: Vec<f64> = (0..n)
                .map(|i| {
                    let jitter = ((i * 7 + k * 3) % 11) as f64 * 2048.0;
                    (k as f64 + 1.0) * 500.0 * MIB + per_request * i as f64 + jitter
                })
                .collect();
            for (t, v) in tree.iter_mut().zip(&values) {
                *t += v;
            }
            series.push(RequestSeries::raw(
                format!("host.rss@pid:{pid}"),
                Unit::Bytes,
                &values,
            ));
            timeline.processes.insert(
                pid,
                ProcessInfo {
                    pid,
                    ppid: 1,
                    name: format!("sglang::{role}"),
                    role: Some(role.into()),
                    cmdline: String::new(),
                    first_seen_ms: k as u64,
                    last_seen_ms: 100,
                },
            );
        }
        series.push(RequestSeries::raw("host.rss@tree", Unit::Bytes, &tree));
        let verdict = analyze(&series, &Thresholds::default());
        Report {
            schema_version: SCHEMA_VERSION,
            tool: "test".into(),
            scenario: "text_model".into(),
            test_type: "text".into(),
            outcome: RunOutcome::from(verdict.outcome),
            error: None,
            started_at: String::new(),
            duration_ms: 0,
            target: TargetInfo {
                kind: "sglang".into(),
                ..TargetInfo::default()
            },
            caches: Vec::new(),
            workload: crate::load::Workload::Text,
            driver: crate::load::DriverConfig::default(),
            tracker: crate::tracker::TrackerConfig::default(),
            thresholds: Thresholds::default(),
            requests: None,
            adaptive: None,
            verdict: Some(verdict),
            idle_accounting: None,
            log_watch: None,
            timeline,
            shutdown: None,
            server_log_tail: Vec::new(),
            files: ReportFiles::default(),
            notes: Vec::new(),
            likely_causes: Vec::new(),
            diagnosis: None,
        }
    }

    fn delta<'a>(c: &'a Comparison, metric: &str) -> &'a MetricDelta {
        c.metrics
            .iter()
            .find(|m| m.metric == metric)
            .unwrap_or_else(|| panic!("no {metric} in {:?}", c.metrics))
    }

    #[test]
    fn a_leak_added_in_the_new_build_is_a_regression_matched_by_role_not_pid() {
        let base = report(&[(100, "tokenizer_manager", 0.0), (101, "scheduler", 0.0)]);
        let new = report(&[(900, "tokenizer_manager", 0.0), (901, "scheduler", MIB)]);
        let c = compare(&base, &new);
        assert!(c.regressed());
        assert!(
            c.metrics.iter().all(|m| !m.metric.contains("pid:")),
            "{:?}",
            c.metrics
        );
        assert_eq!(
            c.metrics.len(),
            3,
            "PIDs matched as different metrics: {:?}",
            c.metrics
        );
        let s = delta(&c, "host.rss@scheduler");
        assert_eq!(s.change, Change::Regressed);
        assert_eq!(
            (s.outcome_before, s.outcome_after),
            (Some(Outcome::Pass), Some(Outcome::Leak))
        );
        let d = s.difference.unwrap();
        assert!(d.ci.lo <= MIB && MIB <= d.ci.hi, "{d:?}");
        assert!((d.point - MIB).abs() < 0.02 * MIB, "{d:?}");
        assert_eq!(s.limit, Some(GIB / 1e6));
        assert_eq!(delta(&c, "host.rss@tokenizer_manager").change, Change::Same);
        assert_eq!(delta(&c, "host.rss@tree").change, Change::Regressed);
        assert_eq!(c.metrics[0].change, Change::Regressed, "regressions first");
        let table = c.to_table();
        assert!(
            table.contains("regressed: host.rss@scheduler: leaks now (pass before)"),
            "{table}"
        );
    }

    #[test]
    fn the_same_leak_in_both_is_no_regression_and_a_fix_is_an_improvement() {
        let leaking = report(&[(100, "scheduler", 512.0 * KIB)]);
        let again = report(&[(555, "scheduler", 512.0 * KIB)]);
        let c = compare(&leaking, &again);
        assert!(!c.regressed(), "{}", c.to_table());
        assert_eq!(delta(&c, "host.rss@scheduler").change, Change::Same);
        assert!(c.to_table().contains("no regression"));

        let fixed = report(&[(777, "scheduler", 0.0)]);
        let c = compare(&leaking, &fixed);
        assert!(!c.regressed());
        assert_eq!(delta(&c, "host.rss@scheduler").change, Change::Improved);
        // Backwards it is a regression.
        assert!(compare(&fixed, &leaking).regressed());
    }

    #[test]
    fn a_worse_leak_regresses_and_a_shift_below_the_limit_does_not() {
        let small = report(&[(1, "scheduler", 256.0 * KIB)]);
        let big = report(&[(2, "scheduler", 2.0 * MIB)]);
        let s = compare(&small, &big);
        let m = delta(&s, "host.rss@scheduler");
        assert_eq!(m.change, Change::Regressed, "{}", s.to_table());
        assert!(m.reason.contains("grows faster by"), "{}", m.reason);

        // Both pass, but the slope went from 0 to 2 KiB/request: past the default +1 KiB.
        let flat = report(&[(1, "scheduler", 0.0)]);
        let creeping = report(&[(2, "scheduler", 2.0 * KIB)]);
        let c = compare(&flat, &creeping);
        assert!(c.regressed(), "{}", c.to_table());
        let m = delta(&c, "host.rss@scheduler");
        assert_eq!(m.change, Change::Regressed);
        assert!(
            m.reason.contains("more than the +1.0 KiB/request"),
            "{}",
            m.reason
        );
        // A shift below the threshold is not one; nor is 2 KiB against a 4 KiB threshold, or
        // against a 300 % rise required on top.
        let shifted = report(&[(2, "scheduler", 256.0)]);
        assert!(!compare(&flat, &shifted).regressed());
        let lax = RegressionRule {
            min_increase: 4.0 * KIB,
            min_ratio: 0.0,
        };
        assert!(!compare_with(&flat, &creeping, &lax).regressed());
        let slow = report(&[(3, "scheduler", KIB)]);
        let relative = RegressionRule {
            min_increase: 512.0,
            min_ratio: 3.0,
        };
        assert!(compare_with(&flat, &creeping, &relative).regressed());
        assert!(!compare_with(&slow, &creeping, &relative).regressed());
    }

    #[test]
    fn a_new_role_that_leaks_regresses_and_a_gone_one_is_removed() {
        let base = report(&[(1, "scheduler", 0.0), (2, "detokenizer", 0.0)]);
        let new = report(&[(3, "scheduler", 0.0), (4, "EngineCore", MIB)]);
        let c = compare(&base, &new);
        assert_eq!(delta(&c, "host.rss@EngineCore").change, Change::Regressed);
        assert_eq!(delta(&c, "host.rss@detokenizer").change, Change::Removed);
        let clean = report(&[(3, "scheduler", 0.0), (4, "EngineCore", 0.0)]);
        assert_eq!(
            delta(&compare(&base, &clean), "host.rss@EngineCore").change,
            Change::Added
        );
    }
}
