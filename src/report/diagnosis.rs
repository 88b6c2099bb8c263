//! The diagnosis in the console summary and the HTML page: where the memory grew (by mapping
//! kind), the stack snapshots and what could not be taken; the Python heap's sites in
//! [`py_heap`](super::py_heap).

use std::fmt::Write;

use super::Report;
use crate::util::{human_bytes, signed_bytes};

/// Console lines (indented like the rest of the summary).
pub(crate) fn console(report: &Report) -> String {
    let mut out = String::new();
    let Some(d) = &report.diagnosis else {
        return out;
    };
    // A pass needs no "where": the HTML page and the JSON still hold the table.
    let judged_growth = matches!(
        report.outcome,
        super::RunOutcome::Leak | super::RunOutcome::Inconclusive
    );
    // Device memory is not a host mapping: smaps cannot place a GPU-only leak.
    let leaking = |prefix: &str| {
        report.verdict.as_ref().is_some_and(|v| {
            v.metrics.iter().any(|m| {
                m.judged
                    && m.outcome == crate::analysis::Outcome::Leak
                    && m.metric.starts_with(prefix)
            })
        })
    };
    let gpu_only = leaking("gpu.") && !leaking("host.") && !leaking("shm.");
    if let Some(m) = d.mappings.as_ref().filter(|_| judged_growth) {
        if gpu_only {
            let _ = writeln!(
                out,
                "  where: in GPU memory: device allocations are not host mappings, so /proc/PID/smaps cannot place them (a CUDA allocator snapshot can: docs/diagnosis.md)"
            );
        }
        for h in d.headlines() {
            let h = if gpu_only {
                format!("host side only, within its limits: {h}")
            } else {
                h
            };
            let _ = writeln!(out, "  where: {h}");
        }
        if d.headlines().is_empty() && !m.processes.is_empty() {
            let _ = writeln!(
                out,
                "  where: no process's mappings grew over {} measured requests",
                m.requests
            );
        }
    }
    for s in &d.stacks {
        match (&s.file, s.ok) {
            (Some(f), true) => {
                let _ = writeln!(
                    out,
                    "  stacks: {} (pid {}): {}",
                    s.label,
                    s.pid,
                    f.display()
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  stacks: {} (pid {}): {}",
                    s.label,
                    s.pid,
                    s.message.as_deref().unwrap_or("not taken")
                );
            }
        }
    }
    for n in &d.notes {
        let _ = writeln!(out, "  diagnosis: {n}");
    }
    // Asked for (--py-heap): shown whatever the outcome.
    if let Some(h) = &d.py_heap {
        super::py_heap::console(&mut out, h);
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML section (`<h2>Where the memory grew</h2>`), empty without a diagnosis.
pub(crate) fn html(b: &mut String, report: &Report) {
    let Some(d) = &report.diagnosis else {
        return;
    };
    b.push_str("<h2 id=\"diagnosis\">Where the memory grew</h2>");
    if let Some(m) = &d.mappings {
        let _ = write!(
            b,
            "<p>Resident memory by mapping kind (<code>/proc/PID/smaps</code>), {} and {}: {} measured requests apart.</p>",
            esc(&m.from),
            esc(&m.to),
            m.requests
        );
        for h in d.headlines() {
            let _ = write!(b, "<p><b>{}</b></p>", esc(&h));
        }
        b.push_str("<table><tr><th>process</th><th>kind</th><th>before</th><th>after</th><th>growth</th><th>per request</th><th>mappings</th><th>usually</th></tr>");
        for p in &m.processes {
            let guilty = if d.guilty.contains(&p.pid) {
                " (guilty)"
            } else {
                ""
            };
            for k in p.kinds.iter().filter(|k| k.growth != 0).take(4) {
                let _ = write!(
                    b,
                    "<tr><td>{} (pid {}){guilty}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>{}</td></tr>",
                    esc(&p.label),
                    p.pid,
                    esc(&k.kind),
                    human_bytes(k.before as f64),
                    human_bytes(k.after as f64),
                    signed_bytes(k.growth as f64),
                    k.per_request.map(signed_bytes).unwrap_or_default(),
                    k.mappings[0],
                    k.mappings[1],
                    esc(&k.meaning)
                );
            }
        }
        b.push_str("</table>");
        for u in &m.unreadable {
            let _ = write!(b, "<p>not read: {}</p>", esc(u));
        }
    }
    for s in &d.stacks {
        let _ = write!(
            b,
            "<p>Stacks of {} (pid {}), <code>{}</code>: ",
            esc(&s.label),
            s.pid,
            esc(&s.command)
        );
        if let Some(name) = s.file.as_ref().and_then(|f| f.file_name()) {
            let n = name.to_string_lossy();
            let _ = write!(b, "<a href=\"{}\">{}</a> ", esc(&n), esc(&n));
        }
        if let Some(m) = &s.message {
            let _ = write!(b, "— {}", esc(m));
        }
        b.push_str("</p>");
    }
    for n in &d.notes {
        let _ = write!(b, "<p>{}</p>", esc(n));
    }
    if let Some(h) = &d.py_heap {
        super::py_heap::html(b, h);
    }
}
