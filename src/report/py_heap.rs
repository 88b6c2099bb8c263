//! The Python heap section (`--py-heap`) in the console summary and the HTML page: the top
//! allocation sites of the growth of the process to look at first, the other processes in one
//! line, and a sentence for everything that could not be read.

use std::fmt::Write;

use serde::Serialize;

use crate::diagnose::py_heap::{PyHeap, PyHeapProcess, PySite, short_path};
use crate::util::{human_bytes, signed_bytes};

/// Sites shown on the console (the JSON and the HTML page hold up to ten per process).
const CONSOLE_SITES: usize = 5;

fn per_request(v: Option<f64>) -> String {
    v.map(|r| format!(" ({}/request)", signed_bytes(r)))
        .unwrap_or_default()
}

/// The first caller outside the site's own file (and outside `<frozen …>`, `<string>`), when
/// the stack has one: a helper of the standard library is named with the line that called it.
fn caller(site: &PySite) -> Option<String> {
    let frames = &site.stacks.first()?.frames;
    let own = format!("{}:", site.file);
    frames
        .iter()
        .skip(1)
        .find(|f| !f.starts_with(&own) && !f.starts_with('<'))
        .map(|f| short_frame(f))
}

fn blocks(n: i64) -> String {
    if n.abs() == 1 {
        format!("{n} block")
    } else {
        format!("{n} blocks")
    }
}

fn short_frame(frame: &str) -> String {
    match frame.rsplit_once(':') {
        Some((file, line)) => format!("{}:{line}", short_path(file)),
        None => frame.to_owned(),
    }
}

fn headline(p: &PyHeapProcess, requests: u64, reason: Option<&str>) -> String {
    let why = reason.map(|r| format!(", {r}")).unwrap_or_default();
    let resident = p
        .resident_growth
        .map(|r| format!(" (resident {})", signed_bytes(r as f64)))
        .unwrap_or_default();
    format!(
        "{} (pid {}){why}: Python heap {}{resident} over {requests} measured requests{}, {} sites grew; tracemalloc itself holds {}",
        p.label,
        p.pid,
        signed_bytes(p.growth as f64),
        per_request(p.per_request),
        p.sites_grown,
        human_bytes(p.tracemalloc_memory as f64)
    )
}

/// Console lines.
pub(crate) fn console(out: &mut String, h: &PyHeap) {
    let focus = h.processes.iter().find(|p| Some(p.pid) == h.focus);
    if let Some(p) = focus {
        let _ = writeln!(
            out,
            "  py-heap: {}",
            headline(p, h.requests, h.focus_reason.as_deref())
        );
        if p.sites.is_empty() {
            let _ = writeln!(out, "    no allocation site grew");
        }
        for s in p.sites.iter().take(CONSOLE_SITES) {
            let via = caller(s).map(|c| format!("  ← {c}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "    {:>11} {:>14}  {}  {}{via}",
                signed_bytes(s.growth as f64),
                blocks(s.count),
                s.place(),
                s.code
            );
        }
    }
    let others: Vec<String> = h
        .processes
        .iter()
        .filter(|p| Some(p.pid) != h.focus)
        .map(|p| {
            let top = p
                .sites
                .first()
                .map(|s| format!(", most at {}", s.place()))
                .unwrap_or_default();
            format!("{} {}{top}", p.label, signed_bytes(p.growth as f64))
        })
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "  py-heap: others: {}", others.join("; "));
    }
    for n in &h.notes {
        let _ = writeln!(out, "  py-heap: {n}");
    }
}

/// What the HTML page shows of the Python heap (`<h3>Where, in Python terms</h3>` in
/// `run.html`): formatted text, escaped by the template.
#[derive(Serialize)]
pub(crate) struct PyHeapView {
    frames: u32,
    from: String,
    to: String,
    requests: u64,
    processes: Vec<PyProcessView>,
    notes: Vec<String>,
}

#[derive(Serialize)]
struct PyProcessView {
    headline: String,
    sites: Vec<PySiteView>,
}

#[derive(Serialize)]
struct PySiteView {
    growth: String,
    per_request: String,
    count: i64,
    file: String,
    place: String,
    code: String,
    /// Each call stack, innermost frame first: `+1.0 MiB in 40 blocks: a ← b ← c`.
    stacks: Vec<String>,
}

pub(crate) fn view(h: &PyHeap) -> PyHeapView {
    PyHeapView {
        frames: h.frames as u32,
        from: h.from.clone(),
        to: h.to.clone(),
        requests: h.requests,
        processes: h
            .processes
            .iter()
            .map(|p| {
                let reason = (Some(p.pid) == h.focus)
                    .then_some(h.focus_reason.as_deref())
                    .flatten();
                PyProcessView {
                    headline: headline(p, h.requests, reason),
                    sites: p
                        .sites
                        .iter()
                        .map(|s| PySiteView {
                            growth: signed_bytes(s.growth as f64),
                            per_request: s.per_request.map(signed_bytes).unwrap_or_default(),
                            count: s.count,
                            file: s.file.clone(),
                            place: s.place(),
                            code: s.code.clone(),
                            stacks: s
                                .stacks
                                .iter()
                                .map(|st| {
                                    let frames: Vec<String> =
                                        st.frames.iter().map(|f| short_frame(f)).collect();
                                    format!(
                                        "{} in {}: {}",
                                        signed_bytes(st.growth as f64),
                                        blocks(st.count),
                                        frames.join(" ← ")
                                    )
                                })
                                .collect(),
                        })
                        .collect(),
                }
            })
            .collect(),
        notes: h.notes.clone(),
    }
}
