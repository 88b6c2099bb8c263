//! The diagnosis in the console summary and the HTML page: where the memory grew (by mapping
//! kind), the stack snapshots and what could not be taken; the Python heap's sites in
//! [`py_heap`](super::py_heap).

use std::fmt::Write;

use serde::Serialize;

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

/// What the HTML page shows of the diagnosis (`<h2>Where the memory grew</h2>` in
/// `run.html`): formatted text, escaped by the template.
#[derive(Serialize)]
pub(crate) struct DiagnosisView {
    mappings: Option<MappingsView>,
    stacks: Vec<StackView>,
    notes: Vec<String>,
    py_heap: Option<super::py_heap::PyHeapView>,
}

#[derive(Serialize)]
struct MappingsView {
    from: String,
    to: String,
    requests: u64,
    headlines: Vec<String>,
    rows: Vec<MappingRow>,
    unreadable: Vec<String>,
}

#[derive(Serialize)]
struct MappingRow {
    process: String,
    kind: String,
    before: String,
    after: String,
    growth: String,
    per_request: String,
    mappings: String,
    meaning: String,
}

#[derive(Serialize)]
struct StackView {
    label: String,
    pid: u32,
    command: String,
    file: Option<String>,
    message: Option<String>,
}

/// The diagnosis section's content, `None` without a diagnosis.
pub(crate) fn view(report: &Report) -> Option<DiagnosisView> {
    let d = report.diagnosis.as_ref()?;
    let mappings = d.mappings.as_ref().map(|m| MappingsView {
        from: m.from.clone(),
        to: m.to.clone(),
        requests: m.requests,
        headlines: d.headlines(),
        rows: m
            .processes
            .iter()
            .flat_map(|p| {
                let guilty = if d.guilty.contains(&p.pid) {
                    " (guilty)"
                } else {
                    ""
                };
                p.kinds
                    .iter()
                    .filter(|k| k.growth != 0)
                    .take(4)
                    .map(move |k| MappingRow {
                        process: format!("{} (pid {}){guilty}", p.label, p.pid),
                        kind: k.kind.clone(),
                        before: human_bytes(k.before as f64),
                        after: human_bytes(k.after as f64),
                        growth: signed_bytes(k.growth as f64),
                        per_request: k.per_request.map(signed_bytes).unwrap_or_default(),
                        mappings: format!("{} → {}", k.mappings[0], k.mappings[1]),
                        meaning: k.meaning.clone(),
                    })
            })
            .collect(),
        unreadable: m.unreadable.clone(),
    });
    Some(DiagnosisView {
        mappings,
        stacks: d
            .stacks
            .iter()
            .map(|s| StackView {
                label: s.label.clone(),
                pid: s.pid,
                command: s.command.clone(),
                file: s
                    .file
                    .as_ref()
                    .and_then(|f| f.file_name())
                    .map(|n| n.to_string_lossy().into_owned()),
                message: s.message.clone(),
            })
            .collect(),
        notes: d.notes.clone(),
        py_heap: d.py_heap.as_ref().map(super::py_heap::view),
    })
}
