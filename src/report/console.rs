//! The console summary: what a person reads at 3 a.m. first.

use std::fmt::Write;

use super::{Report, RunOutcome};
use crate::analysis::{MetricAnalysis, Outcome};
use crate::tracker::{Unit, metric};
use crate::util::human_bytes;

fn label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "pass",
        Outcome::Leak => "LEAK",
        Outcome::Inconclusive => "undecided",
    }
}

/// A metric name with the process it belongs to, when it is per-process.
pub(crate) fn metric_label(report: &Report, name: &str) -> String {
    match metric::pid_of(name).and_then(|pid| report.timeline.processes.get(&pid)) {
        Some(p) => format!("{name} ({})", p.label()),
        None => name.to_owned(),
    }
}

fn value(report: &Report, metric: &str, v: f64) -> String {
    match report.timeline.series.get(metric).map(|s| s.unit) {
        Some(Unit::Bytes) | None => human_bytes(v),
        Some(Unit::Count) => format!("{v:.0}"),
        Some(Unit::Ratio) => format!("{v:.3}"),
    }
}

fn metric_line(report: &Report, m: &MetricAnalysis) -> String {
    let mut line = format!(
        "  {:<9} {:<44}",
        label(m.outcome),
        metric_label(report, &m.metric)
    );
    match m.slope {
        Some(s) => {
            let _ = write!(
                line,
                " {}/req [{} .. {}]",
                value(report, &m.metric, s.point),
                value(report, &m.metric, s.ci.lo),
                value(report, &m.metric, s.ci.hi)
            );
        }
        None => line.push_str(" slope n/a"),
    }
    let _ = write!(line, "  growth {}", value(report, &m.metric, m.growth));
    if let (Some(day), Some(Unit::Bytes) | None) = (
        m.per_day,
        report.timeline.series.get(&m.metric).map(|s| s.unit),
    ) {
        let _ = write!(line, "  {}/day", crate::util::signed_bytes(day));
    }
    for h in &m.hourly {
        if let Some(s) = h.slope {
            let what = match h.stretch {
                crate::analysis::Stretch::Traffic => "",
                crate::analysis::Stretch::Idle => " idle",
            };
            let _ = write!(line, "  {}/hour{what}", value(report, &m.metric, s.point));
        }
    }
    // A projection only means something for growth that was not judged harmless.
    if let Some(r) = m
        .requests_to_oom
        .filter(|r| r.is_finite() && m.outcome != Outcome::Pass)
    {
        let _ = write!(line, "  OOM in ~{} requests", crate::util::human_count(r));
    }
    line
}

/// The limits in words: the budget per million requests (per request), the soak limit, and the
/// traffic the `/day` figures are projected at.
pub(crate) fn limits_line(t: &crate::analysis::Thresholds) -> String {
    let mut budgets: Vec<String> = Vec::new();
    for r in &t.rules {
        let text = crate::analysis::budget(Unit::Bytes, r.max_slope_per_request);
        let entry = format!("{text} ({}/request)", human_bytes(r.max_slope_per_request));
        if !budgets.iter().any(|b| b.starts_with(&entry)) {
            budgets.push(entry);
        }
    }
    let budgets = if budgets.len() == 1 {
        format!("{} for every memory metric", budgets[0])
    } else {
        let named: Vec<String> = t
            .rules
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r.pattern,
                    crate::analysis::budget(Unit::Bytes, r.max_slope_per_request)
                )
            })
            .collect();
        named.join(", ")
    };
    format!(
        "{budgets}; {}/hour in soaks; /day at {} requests/day",
        human_bytes(t.max_growth_per_hour),
        crate::util::human_count(t.traffic_per_day)
    )
}

/// The idle accounting and the log watch, a line each (and one per check / quoted line).
fn engine_lines(report: &Report, out: &mut String) {
    if let Some(a) = &report.idle_accounting {
        if a.available {
            for c in &a.checks {
                let show = |v: f64| match c.unit {
                    Unit::Ratio => format!("{v:.4}"),
                    _ => format!("{v:.0}"),
                };
                let mut line = format!(
                    "  {:<9} {:<44} idle {} -> {} after the load",
                    label(c.outcome),
                    c.metric,
                    show(c.before),
                    show(c.after)
                );
                if c.outcome == Outcome::Leak {
                    let _ = write!(line, " (+{})", show(c.excess));
                    if let Some(p) = c.per_request {
                        let _ = write!(line, ", {p:.2}/req over {} requests", c.requests);
                    }
                }
                let _ = writeln!(out, "{line}");
            }
            let _ = writeln!(
                out,
                "  accounting: {}, idle before vs after the load{}",
                a.source.as_deref().unwrap_or("?"),
                if a.settle_ms >= 100 {
                    format!(
                        " (read for {:.1} s to let it settle)",
                        a.settle_ms as f64 / 1000.0
                    )
                } else {
                    String::new()
                }
            );
        }
        if let Some(note) = &a.note {
            let _ = writeln!(out, "  accounting: {note}");
        }
    }
    if let Some(l) = &report.log_watch {
        if !l.available {
            let _ = writeln!(
                out,
                "  server log: {}",
                l.note.as_deref().unwrap_or("not watched")
            );
        } else if l.total_matches == 0 {
            let _ = writeln!(
                out,
                "  server log: no memory check of the engine ({} line{} read)",
                l.lines,
                if l.lines == 1 { "" } else { "s" }
            );
        } else {
            let _ = writeln!(
                out,
                "  server log: {} of {} lines matched the engine's memory checks{}:",
                l.total_matches,
                l.lines,
                if l.total_matches > l.matches.len() as u64 {
                    format!(" (the first {} quoted)", l.matches.len())
                } else {
                    String::new()
                }
            );
            for m in l.matches.iter().take(5) {
                let role = m
                    .role
                    .as_deref()
                    .map(|r| format!("{r}, "))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    line {} ({role}{:.1} s): {}",
                    m.line,
                    m.since_start_ms as f64 / 1000.0,
                    m.text.trim()
                );
            }
        }
    }
}

/// The summary text.
pub(crate) fn summary(report: &Report) -> String {
    let mut out = String::new();
    let outcome = match report.outcome {
        RunOutcome::Pass => "PASS",
        RunOutcome::Leak => "LEAK",
        RunOutcome::Inconclusive => "INCONCLUSIVE",
        RunOutcome::Error => "ERROR",
    };
    let _ = writeln!(
        out,
        "{outcome} · {} ({}) against {} {} · {:.1} s",
        report.scenario,
        report.test_type,
        report.target.kind,
        report.target.model.as_deref().unwrap_or(""),
        report.duration_ms as f64 / 1000.0
    );
    if let Some(e) = &report.error {
        let _ = writeln!(out, "  error: {}", e.message);
    }
    let engine = crate::analysis::logical::engine_findings(
        report.idle_accounting.as_ref(),
        report.log_watch.as_ref(),
    );
    for reason in engine.iter().flat_map(|(_, r)| r) {
        let _ = writeln!(out, "  why: {reason}");
    }
    if let Some(v) = &report.verdict {
        let memory_matters = engine.is_none() || v.outcome != Outcome::Pass;
        for reason in v.reasons.iter().filter(|_| memory_matters).take(6) {
            let _ = writeln!(out, "  why: {reason}");
        }
        for c in &report.likely_causes {
            let _ = writeln!(out, "  {}", c.message);
        }
        let _ = writeln!(out, "  limits: {}", limits_line(&v.thresholds));
        for m in v.metrics.iter().filter(|m| m.judged) {
            let _ = writeln!(out, "{}", metric_line(report, m));
            for k in m.by_kind.iter().flat_map(|a| &a.kinds) {
                if k.outcome == Outcome::Leak {
                    let _ = writeln!(
                        out,
                        "  {:<9} {:<44} {}/req of that kind [{} .. {}] over {} {} requests",
                        label(k.outcome),
                        format!("{} [{}]", metric_label(report, &m.metric), k.kind),
                        value(report, &m.metric, k.slope.point),
                        value(report, &m.metric, k.slope.ci.lo),
                        value(report, &m.metric, k.slope.ci.hi),
                        k.requests,
                        k.kind
                    );
                }
            }
        }
        // The per-kind split, once per distinct split (the tree and its guilty process agree).
        let mut shown: Vec<&str> = Vec::new();
        for m in v.metrics.iter().filter(|m| m.judged) {
            if let Some(a) = &m.by_kind
                && !shown.contains(&a.finding.as_str())
            {
                shown.push(&a.finding);
                let _ = writeln!(out, "  {} — {}", m.metric, a.finding);
            }
        }
    }
    engine_lines(report, &mut out);
    if let Some(r) = &report.requests {
        let ms = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1} ms"));
        let mut planned = String::new();
        for (n, what) in [
            (r.rejected, "rejected as expected"),
            (r.aborted, "aborted"),
            (r.disconnected, "dropped mid-stream"),
        ] {
            if n > 0 {
                let _ = write!(planned, ", {n} {what}");
            }
        }
        let _ = writeln!(
            out,
            "  requests: {} sent, {} ok{planned}, {} failed; latency p50 {}, p95 {}",
            r.sent,
            r.ok,
            r.failed,
            ms(r.latency_p50_ms),
            ms(r.latency_p95_ms)
        );
        if !r.by_kind.is_empty() {
            let kinds: Vec<String> = r
                .by_kind
                .iter()
                .map(|(k, c)| {
                    let failed = if c.failed > 0 {
                        format!(" ({} failed)", c.failed)
                    } else {
                        String::new()
                    };
                    format!("{k} {}{failed}", c.sent)
                })
                .collect();
            let _ = writeln!(out, "  kinds: {}", kinds.join(", "));
        }
    }
    if let Some(a) = &report.adaptive {
        let _ = writeln!(out, "  length: {}", a.summary());
    }
    for s in report
        .timeline
        .sources
        .iter()
        .filter(|s| !s.available || s.errors > 0)
    {
        let note = s.note.as_deref().unwrap_or("unavailable");
        let _ = writeln!(
            out,
            "  {}: {note}{}",
            s.name,
            if s.errors > 0 {
                format!(" ({} read errors)", s.errors)
            } else {
                String::new()
            }
        );
    }
    if let Some(sd) = &report.shutdown {
        if !sd.leftovers.is_empty() {
            let procs: Vec<String> = sd
                .leftovers
                .iter()
                .map(|p| format!("{} ({})", p.name, p.pid))
                .collect();
            let _ = writeln!(
                out,
                "  WARNING: still alive after teardown: {}",
                procs.join(", ")
            );
        }
        if !sd.shm_removed.is_empty() {
            let _ = writeln!(
                out,
                "  /dev/shm: removed {} segment(s) the server left behind",
                sd.shm_removed.len()
            );
        }
        if !sd.shm_left.is_empty() {
            let _ = writeln!(
                out,
                "  /dev/shm: {} new segment(s) not matching SGLang's names were left alone: {}",
                sd.shm_left.len(),
                sd.shm_left.join(", ")
            );
        }
    }
    out.push_str(&super::diagnosis::console(report));
    for c in &report.caches {
        let _ = writeln!(out, "  cache: {} {}", c.name, c.state);
    }
    for n in &report.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    if report.outcome == RunOutcome::Error && !report.server_log_tail.is_empty() {
        let _ = writeln!(out, "  server log (last lines):");
        for l in report.server_log_tail.iter().rev().take(20).rev() {
            let _ = writeln!(out, "    | {l}");
        }
    }
    let files = &report.files;
    for (what, path) in [
        ("report", &files.json),
        ("plot", &files.png),
        ("svg", &files.svg),
        ("html", &files.html),
        ("server log", &files.server_log),
    ] {
        if let Some(p) = path {
            let _ = writeln!(out, "  {what}: {}", p.display());
        }
    }
    out
}
