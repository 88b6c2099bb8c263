//! Compare two reports metric by metric: did a change make memory growth worse?

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::Report;
use crate::analysis::Outcome;
use crate::util::human_bytes;

/// One metric in both reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    /// Metric name. Per-process metrics are matched by process name, not PID.
    pub metric: String,
    /// Slope per request in the baseline report.
    pub before: Option<f64>,
    /// Slope per request in the new report.
    pub after: Option<f64>,
    /// Outcome before.
    pub outcome_before: Option<Outcome>,
    /// Outcome after.
    pub outcome_after: Option<Outcome>,
    /// The new report leaks where the baseline did not.
    pub regressed: bool,
}

/// The comparison of two reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Per judged metric.
    pub metrics: Vec<MetricDelta>,
}

impl Comparison {
    /// True when some metric leaks now and did not before.
    pub fn regressed(&self) -> bool {
        self.metrics.iter().any(|m| m.regressed)
    }

    /// A table for a person.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "{:<52} {:>16} {:>16}  {}\n",
            "metric", "before/req", "after/req", "change"
        );
        let fmt = |v: Option<f64>| v.map_or("-".to_owned(), human_bytes);
        let out_label =
            |o: Option<Outcome>| o.map_or("-".to_owned(), |o| format!("{o:?}").to_lowercase());
        for m in &self.metrics {
            let change = if m.regressed {
                "REGRESSED".to_owned()
            } else {
                format!(
                    "{} → {}",
                    out_label(m.outcome_before),
                    out_label(m.outcome_after)
                )
            };
            let _ = writeln!(
                out,
                "{:<52} {:>16} {:>16}  {change}",
                m.metric,
                fmt(m.before),
                fmt(m.after)
            );
        }
        out
    }
}

/// Stable key of a metric across runs: PIDs change, process names do not.
fn key(report: &Report, metric: &str) -> String {
    match crate::tracker::metric::pid_of(metric).and_then(|pid| report.timeline.processes.get(&pid))
    {
        Some(p) => format!(
            "{}@{}",
            metric.split('@').next().unwrap_or(metric),
            p.label()
        ),
        None => metric.to_owned(),
    }
}

/// Compare `after` against `before`.
pub fn compare(before: &Report, after: &Report) -> Comparison {
    let judged = |r: &Report| -> Vec<(String, Option<f64>, Outcome)> {
        r.verdict
            .iter()
            .flat_map(|v| v.metrics.iter().filter(|m| m.judged))
            .map(|m| (key(r, &m.metric), m.slope.map(|s| s.point), m.outcome))
            .collect()
    };
    let (a, b) = (judged(before), judged(after));
    let mut names: Vec<String> = a.iter().chain(&b).map(|x| x.0.clone()).collect();
    names.sort();
    names.dedup();
    let metrics = names
        .into_iter()
        .map(|name| {
            let x = a.iter().find(|m| m.0 == name);
            let y = b.iter().find(|m| m.0 == name);
            let regressed =
                y.is_some_and(|y| y.2 == Outcome::Leak) && x.is_none_or(|x| x.2 != Outcome::Leak);
            MetricDelta {
                metric: name,
                before: x.and_then(|x| x.1),
                after: y.and_then(|y| y.1),
                outcome_before: x.map(|x| x.2),
                outcome_after: y.map(|y| y.2),
                regressed,
            }
        })
        .collect();
    Comparison { metrics }
}
