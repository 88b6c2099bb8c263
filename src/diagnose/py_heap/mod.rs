//! Where, in Python terms (`--py-heap`): the allocation sites (file:line, bytes, blocks) of the
//! growth of every Python process of the server, by `tracemalloc` inside each process.
//!
//! The harness writes a `sitecustomize.py` into the run folder and puts its folder first on the
//! server's `PYTHONPATH` ([`PyHeapRun::prepare`]); every Python process the server starts then
//! answers two commands through files: start tracing after the warm-up ([`PyHeapRun::begin`])
//! and, after the last measured request ([`PyHeapRun::end`]), the allocation sites of what was
//! allocated since and is still alive, grouped inside the process. [`PyHeapRun::finish`] turns the answers into the report's [`PyHeap`],
//! with the process to look at first (the guilty one, else the one that grew most) and a
//! sentence for everything that could not be read. The tracer chains to the `sitecustomize` it
//! shadows, so a user's own (or the planted-leak fixture's) still runs.
//!
//! Nothing of this exists in a run without `--py-heap`: no file, no variable, no thread.

mod exchange;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::tracker::Timeline;
use exchange::{ANSWER_TIMEOUT, Exchange, StateFile, States, alive};

/// Frames kept per allocation unless set (`--py-heap-frames`): the allocating line only. Each
/// frame costs: on real SGLang (CPU tier) 1 frame served 0.74× the requests per second of an
/// untraced server beside it, 8 frames 0.21× (docs/diagnosis.md).
pub const DEFAULT_FRAMES: u16 = 1;
/// The most frames per allocation (`tracemalloc` slows down with every frame).
pub const MAX_FRAMES: u16 = 64;

/// The settings of `--py-heap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PyHeapConfig {
    /// Frames of the call stack kept per allocation (`tracemalloc.start(frames)`).
    pub frames: u16,
}

impl Default for PyHeapConfig {
    fn default() -> Self {
        Self {
            frames: DEFAULT_FRAMES,
        }
    }
}

/// What can go wrong on the harness's side; each becomes a sentence in the report.
#[derive(Debug, thiserror::Error)]
pub enum PyHeapError {
    /// The exchange folder or the tracer could not be written.
    #[error(
        "failed to write the Python heap tracer into {path}: {source}; check that the output folder is writable"
    )]
    Prepare {
        /// What could not be written.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The control file could not be written.
    #[error("failed to write the Python heap control file {path}: {source}")]
    Control {
        /// The control file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The report's Python heap section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PyHeap {
    /// Frames kept per allocation.
    pub frames: u16,
    /// When the first snapshot was taken.
    pub from: String,
    /// When the second was taken.
    pub to: String,
    /// Measured requests between the two.
    pub requests: u64,
    /// The process to look at first: the guilty one, else the one whose memory grew most
    /// (`null`: no process was traced to the end).
    pub focus: Option<u32>,
    /// Why that one.
    pub focus_reason: Option<String>,
    /// Every process traced to the end, `focus` first, then by growth.
    pub processes: Vec<PyHeapProcess>,
    /// What could not be read, and why, in sentences.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The exchange folder (the tracer, the control file, each process's state file).
    pub dir: Option<PathBuf>,
}

/// The Python heap growth of one process between the two snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PyHeapProcess {
    /// Host PID.
    pub pid: u32,
    /// Role or name.
    pub label: String,
    /// Net growth of the traced Python heap, bytes (frees count).
    pub growth: i64,
    /// `growth` per measured request.
    pub per_request: Option<f64>,
    /// The process's resident memory growth over the same window (`/proc/PID/smaps`, the
    /// mappings' reading), for scale: what the tracer sees is only what Python's allocators
    /// hand out (not torch's tensors, native libraries, fragmentation).
    pub resident_growth: Option<i64>,
    /// Traced bytes at the first snapshot.
    pub traced_before: u64,
    /// Traced bytes at the second.
    pub traced_after: u64,
    /// What `tracemalloc` itself held at the second snapshot (its overhead), bytes.
    pub tracemalloc_memory: u64,
    /// Allocation sites whose bytes grew.
    pub sites_grown: u64,
    /// Milliseconds the two snapshots took in the process.
    pub snapshot_ms: [Option<u64>; 2],
    /// The sites of the growth, largest first (at most ten).
    pub sites: Vec<PySite>,
}

/// One allocation site: the innermost Python line of the allocations that grew.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PySite {
    /// The source file, as the interpreter knows it.
    pub file: String,
    /// The line.
    pub line: u32,
    /// The line's source text (empty when the file cannot be read).
    pub code: String,
    /// Net bytes grown at this site.
    pub growth: i64,
    /// Net blocks grown.
    pub count: i64,
    /// `growth` per measured request.
    pub per_request: Option<f64>,
    /// The call stacks that grew most through it (innermost frame first).
    pub stacks: Vec<PyStack>,
}

impl PySite {
    /// `sglang/srt/managers/io_struct.py:123`: the file below `site-packages` (or the standard
    /// library's folder), and the line.
    pub fn place(&self) -> String {
        format!("{}:{}", short_path(&self.file), self.line)
    }
}

/// One call stack through a site.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PyStack {
    /// Net bytes grown through this stack.
    pub growth: i64,
    /// Net blocks.
    pub count: i64,
    /// `file:line`, innermost first.
    pub frames: Vec<String>,
}

/// `…/site-packages/sglang/x.py` → `sglang/x.py`; `…/lib/python3.11/json/x.py` →
/// `python3.11/json/x.py`; anything else as it is.
pub fn short_path(file: &str) -> &str {
    for marker in ["/site-packages/", "/dist-packages/"] {
        if let Some(i) = file.rfind(marker) {
            return &file[i + marker.len()..];
        }
    }
    if let Some(i) = file.find("/lib/python3") {
        return &file[i + "/lib/".len()..];
    }
    file
}

/// The tracer of one run in progress.
#[derive(Debug)]
pub struct PyHeapRun {
    exchange: Result<Exchange, String>,
    frames: u16,
    state: Mutex<RunState>,
}

#[derive(Debug, Default)]
struct RunState {
    /// The PIDs that took the first snapshot.
    begun: Vec<u32>,
    /// The states after the second snapshot, and the measured requests in between.
    ended: Option<(States, u64)>,
    notes: Vec<String>,
}

impl PyHeapRun {
    /// Writes the tracer into `<out_dir>/<stem>.py-heap/site/`. A failure is kept and said in
    /// the report (the run goes on without a Python heap section's numbers).
    pub fn prepare(out_dir: &Path, stem: &str, config: PyHeapConfig) -> Self {
        Self {
            exchange: Exchange::prepare(out_dir, stem, config).map_err(|e| e.to_string()),
            frames: config.frames,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The folder to put first on the server's `PYTHONPATH`, and the variables the server
    /// needs (`None`: the tracer could not be written).
    pub fn server_env(&self) -> Option<(&Path, [(&'static str, String); 2])> {
        let x = self.exchange.as_ref().ok()?;
        Some((x.site(), x.env()))
    }

    /// The first snapshot, in every live Python process of the server (after the warm-up).
    pub async fn begin(&self) {
        let Ok(x) = &self.exchange else { return };
        let answered = match x.command("begin", None, ANSWER_TIMEOUT).await {
            Ok(a) => a,
            Err(e) => {
                self.state().notes.push(e.to_string());
                return;
            }
        };
        let (states, late) = answered;
        let mut st = self.state();
        for pid in late {
            st.notes.push(format!(
                "pid {pid} did not take the first Python heap snapshot within {} s (a thread holding the GIL in a long C call?): no Python heap growth for it",
                ANSWER_TIMEOUT.as_secs()
            ));
        }
        st.begun = states
            .iter()
            .filter_map(|(pid, s)| s.as_ref().ok().filter(|s| s.state == "begun").map(|_| *pid))
            .collect();
        let failed: Vec<String> = states
            .iter()
            .filter_map(|(pid, s)| match s {
                Ok(s) if s.state == "error" && alive(*pid) => Some(format!(
                    "pid {pid}: the Python heap tracer failed: {}",
                    s.error.as_deref().unwrap_or("no reason given")
                )),
                _ => None,
            })
            .collect();
        st.notes.extend(failed);
    }

    /// The second snapshot (after the last measured request), `requests` after the first.
    pub async fn end(&self, requests: u64) {
        let Ok(x) = &self.exchange else { return };
        let begun = self.state().begun.clone();
        if begun.is_empty() {
            return;
        }
        match x.command("end", Some(&begun), ANSWER_TIMEOUT).await {
            Ok((states, late)) => {
                let mut st = self.state();
                for pid in late {
                    st.notes.push(format!(
                        "pid {pid} did not take the second Python heap snapshot within {} s (a thread holding the GIL in a long C call?): no Python heap growth for it",
                        ANSWER_TIMEOUT.as_secs()
                    ));
                }
                st.ended = Some((states, requests));
            }
            Err(e) => self.state().notes.push(e.to_string()),
        }
    }

    /// The report's section: labelled from the timeline, the focus chosen from `guilty` (the
    /// PIDs a leak verdict blames), else the process whose resident memory grew most in
    /// `mappings`, whose growth is also set beside each process's Python heap growth.
    pub fn finish(
        &self,
        timeline: &Timeline,
        guilty: &[u32],
        mappings: Option<&super::Mappings>,
    ) -> PyHeap {
        let grew_most = mappings
            .and_then(|m| m.processes.first())
            .filter(|p| p.growth > 0)
            .map(|p| p.pid);
        let resident = |pid: u32| {
            mappings
                .and_then(|m| m.processes.iter().find(|p| p.pid == pid))
                .map(|p| p.growth)
        };
        let label = |pid: u32| {
            timeline
                .processes
                .get(&pid)
                .map_or_else(|| format!("pid {pid}"), |p| p.label().to_owned())
        };
        let mut st = std::mem::take(&mut *self.state());
        let mut out = PyHeap {
            frames: self.frames,
            from: "after the warm-up".into(),
            to: "after the last measured request, before the cooldown".into(),
            dir: self.exchange.as_ref().ok().map(|x| x.dir().to_owned()),
            ..PyHeap::default()
        };
        let x = match &self.exchange {
            Ok(x) => x,
            Err(e) => {
                out.notes.push(format!("no Python heap attribution: {e}"));
                return out;
            }
        };
        // Name the PIDs of the notes.
        let mut notes: Vec<String> = st.notes.drain(..).map(|n| relabel(&n, &label)).collect();
        if st.begun.is_empty() {
            let states = x.states();
            let traced: Vec<u32> = states.keys().copied().collect();
            notes.insert(
                0,
                if traced.is_empty() {
                    "no Python heap attribution: no process of the server started the tracer — the server is not Python, or its interpreter ignored PYTHONPATH (python -I or -E, or a launcher that replaces the environment)".to_owned()
                } else {
                    "no Python heap attribution: no Python process of the server took the first snapshot (the run ended before its measured requests, or every process exited or failed)".to_owned()
                },
            );
            out.notes = notes;
            return out;
        }
        let Some((states, requests)) = st.ended.take() else {
            notes.insert(
                0,
                "no Python heap attribution: the run ended before its last measured request, so the second snapshot was not taken".to_owned(),
            );
            out.notes = notes;
            return out;
        };
        out.requests = requests;
        let per = |b: i64| (requests > 0).then(|| b as f64 / requests as f64);
        for pid in &st.begun {
            let what = format!("{} (pid {pid})", label(*pid));
            match states.get(pid) {
                None => notes.push(format!(
                    "{what}: its Python heap state file is gone: no Python heap growth for it"
                )),
                Some(Err(e)) => notes.push(format!("{what}: {e}: no Python heap growth for it")),
                Some(Ok(s)) if s.state == "ended" => {
                    let mut p = process(*pid, label(*pid), s, &per);
                    p.resident_growth = resident(*pid);
                    out.processes.push(p);
                }
                Some(Ok(s)) if s.state == "error" => notes.push(format!(
                    "{what}: the Python heap tracer failed at the second snapshot: {}",
                    s.error.as_deref().unwrap_or("no reason given")
                )),
                Some(Ok(_)) if !alive(*pid) => notes.push(format!(
                    "{what} exited before the second Python heap snapshot: its growth is lost"
                )),
                Some(Ok(_)) => {} // late: said when it timed out
            }
        }
        // Processes of the tree that never ran the tracer (a native root, a `python -I`).
        let untraced: Vec<String> = timeline
            .processes
            .keys()
            .filter(|pid| !states.contains_key(pid))
            .map(|pid| format!("{} (pid {pid})", label(*pid)))
            .collect();
        if !untraced.is_empty() {
            notes.push(format!(
                "not traced: {} — not Python processes, or ones that ignore PYTHONPATH",
                untraced.join(", ")
            ));
        }
        let traced_pids: Vec<u32> = out.processes.iter().map(|p| p.pid).collect();
        let traced = |pid: &u32| traced_pids.contains(pid);
        let (focus, reason) = if let Some(pid) = guilty.iter().find(|p| traced(p)) {
            (Some(*pid), "its memory leaked")
        } else if let Some(pid) = grew_most.filter(traced) {
            (Some(pid), "its resident memory grew most")
        } else {
            let top = out.processes.iter().max_by_key(|p| p.growth).map(|p| p.pid);
            (top, "its Python heap grew most")
        };
        out.processes
            .sort_by_key(|p| (Some(p.pid) != focus, std::cmp::Reverse(p.growth)));
        out.focus = focus;
        out.focus_reason = focus.map(|_| reason.to_owned());
        if !guilty.is_empty() && !guilty.iter().any(traced) {
            notes.push(format!(
                "the guilty process ({}) has no Python heap reading: it is not traced to the end",
                guilty
                    .iter()
                    .map(|p| format!("{} (pid {p})", label(*p)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        out.notes = notes;
        out
    }
}

/// `pid N` at the start of a note → `role (pid N)`.
fn relabel(note: &str, label: &dyn Fn(u32) -> String) -> String {
    let Some(rest) = note.strip_prefix("pid ") else {
        return note.to_owned();
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<u32>() {
        Ok(pid) if !label(pid).starts_with("pid ") => {
            format!("{} (pid {pid}){}", label(pid), &rest[digits.len()..])
        }
        _ => note.to_owned(),
    }
}

fn process(
    pid: u32,
    label: String,
    s: &StateFile,
    per: &dyn Fn(i64) -> Option<f64>,
) -> PyHeapProcess {
    PyHeapProcess {
        pid,
        label,
        growth: s.growth,
        per_request: per(s.growth),
        resident_growth: None,
        traced_before: s.traced_before,
        traced_after: s.traced_after,
        tracemalloc_memory: s.tracemalloc_memory,
        sites_grown: s.sites_grown,
        snapshot_ms: [s.begin_ms, s.end_ms],
        sites: s
            .top
            .iter()
            .map(|t| PySite {
                file: t.file.clone(),
                line: t.line,
                code: t.code.clone(),
                growth: t.growth,
                count: t.count,
                per_request: per(t.growth),
                stacks: t.stacks.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
