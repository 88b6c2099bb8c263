//! After "leak": where in the process the memory is, and what the process was doing.
//!
//! - [`smaps`]: every process of the server's tree is read twice (after the warm-up and after
//!   the last measured request, before the cooldown's flush) and the growth is split by mapping
//!   kind — `[heap]`, anonymous memory by size class, file-backed, `/dev/shm`, GPU driver.
//! - [`snapshot`]: on a leak verdict, `py-spy dump` of the guilty process while it still runs.
//! - [`py_heap`] (`--py-heap`): the Python allocation sites of the growth, by `tracemalloc`
//!   inside every Python process of the server, snapshots at the same two moments.
//!
//! [`Capture`] is what a scenario run holds; [`Diagnosis`] is what lands in the report.

pub mod py_heap;
pub mod smaps;
pub mod snapshot;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

pub use py_heap::{PyHeap, PyHeapConfig, PyHeapProcess, PyHeapRun, PySite, PyStack};
pub use smaps::{KindGrowth, MappingKind, ProcessGrowth, ProcessMaps};
pub use snapshot::{PySpy, StackSnapshot};

use crate::analysis::{Outcome, Verdict};
use crate::fixture::ProcessTree;
use crate::tracker::{Timeline, metric};

/// Mapping growth of every process between the two readings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mappings {
    /// When the first reading was taken.
    pub from: String,
    /// When the second was taken.
    pub to: String,
    /// Measured requests between the two.
    pub requests: u64,
    /// Every process read both times, the biggest growth first.
    pub processes: Vec<ProcessGrowth>,
    /// Processes that could not be read, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// What the report holds about where the memory went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Growth by mapping kind per process (`null`: not read — attached without a PID, or the
    /// run ended before the last measured request).
    pub mappings: Option<Mappings>,
    /// The processes judged guilty of a leak (PIDs), when there was one.
    #[serde(default)]
    pub guilty: Vec<u32>,
    /// Stack snapshots of the guilty processes, taken while they ran.
    #[serde(default)]
    pub stacks: Vec<StackSnapshot>,
    /// What could not be done, and what to install or change.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The Python allocation sites of the growth (`--py-heap`; `null` without it).
    #[serde(default)]
    pub py_heap: Option<PyHeap>,
}

impl Diagnosis {
    /// One line per guilty process (else the top grower): where its memory grew.
    pub fn headlines(&self) -> Vec<String> {
        let Some(m) = &self.mappings else {
            return Vec::new();
        };
        let chosen: Vec<&ProcessGrowth> = if self.guilty.is_empty() {
            m.processes
                .iter()
                .take(1)
                .filter(|p| p.growth > 0)
                .collect()
        } else {
            m.processes
                .iter()
                .filter(|p| self.guilty.contains(&p.pid))
                .collect()
        };
        chosen.into_iter().map(headline).collect()
    }
}

/// `scheduler (pid 12): +98.0 MiB resident, anon ≤1 MiB +97.0 MiB (993.3 KiB/request), …`.
pub fn headline(p: &ProcessGrowth) -> String {
    use crate::util::signed_bytes;
    let kinds: Vec<String> = p
        .kinds
        .iter()
        .filter(|k| k.growth > 0)
        .take(3)
        .map(|k| match k.per_request {
            Some(r) => format!(
                "{} {} ({}/request)",
                k.kind,
                signed_bytes(k.growth as f64),
                signed_bytes(r)
            ),
            None => format!("{} {}", k.kind, signed_bytes(k.growth as f64)),
        })
        .collect();
    let grew = if kinds.is_empty() {
        "no mapping kind grew".to_owned()
    } else {
        format!("grew in {}", kinds.join(", "))
    };
    format!(
        "{} (pid {}): {} resident; {grew}",
        p.label,
        p.pid,
        signed_bytes(p.growth as f64)
    )
}

/// The PIDs a leak verdict blames, worst first (the one that leaked the most bytes leads: it is
/// the one the Python heap section and the stacks look at first): those of per-process metrics
/// that leak; else, when only a tree-wide metric leaks, the process whose resident memory grew
/// most.
pub fn guilty(verdict: &Verdict, mappings: Option<&Mappings>) -> Vec<u32> {
    if verdict.outcome != Outcome::Leak {
        return Vec::new();
    }
    let mut leaking: Vec<_> = verdict
        .metrics
        .iter()
        .filter(|m| m.judged && m.outcome == Outcome::Leak)
        .collect();
    leaking.sort_by(|a, b| b.growth.total_cmp(&a.growth));
    let mut pids: Vec<u32> = Vec::new();
    for pid in leaking.iter().filter_map(|m| metric::pid_of(&m.metric)) {
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    if pids.is_empty() && !leaking.is_empty() {
        let by_rss = verdict
            .metrics
            .iter()
            .filter(|m| m.metric.starts_with("host.rss@pid:"))
            .max_by(|a, b| a.growth.total_cmp(&b.growth))
            .and_then(|m| metric::pid_of(&m.metric));
        let by_maps = mappings.and_then(|m| m.processes.first().map(|p| p.pid));
        pids.extend(by_maps.or(by_rss));
    }
    pids
}

type Reading = BTreeMap<u32, Result<ProcessMaps, String>>;

/// Reads every process of `tree` now.
fn read_tree(tree: &ProcessTree) -> Reading {
    tree.pids()
        .into_iter()
        .map(|pid| (pid, ProcessMaps::read(pid).map_err(|e| e.to_string())))
        .collect()
}

/// The diagnosis of one run in progress: the two readings, then the stacks.
#[derive(Debug)]
pub struct Capture {
    tree: Option<ProcessTree>,
    py_spy: PySpy,
    py_heap: Option<PyHeapRun>,
    dir: PathBuf,
    stem: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    before: Option<Reading>,
    after: Option<(Reading, u64)>,
    diagnosis: Diagnosis,
}

impl Capture {
    /// A capture of `tree` (none: nothing to read) whose files go to `dir/<stem>.*`.
    pub fn new(tree: Option<ProcessTree>, py_spy: PySpy, dir: PathBuf, stem: String) -> Self {
        Self {
            tree,
            py_spy,
            py_heap: None,
            dir,
            stem,
            state: Mutex::default(),
        }
    }

    /// Also the Python heap's snapshots (`--py-heap`), through the tracer `run` prepared.
    pub fn with_py_heap(mut self, run: Option<PyHeapRun>) -> Self {
        self.py_heap = run;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn read(&self) -> Option<Reading> {
        let tree = self.tree.clone()?;
        tokio::task::spawn_blocking(move || read_tree(&tree))
            .await
            .ok()
    }

    /// The first reading (after the warm-up). The Python heap's snapshot goes first: what it
    /// allocates for a moment is then in both mapping readings, not in their difference.
    pub async fn begin(&self) {
        if let Some(h) = &self.py_heap {
            h.begin().await;
        }
        let r = self.read().await;
        self.state().before = r;
    }

    /// The second reading (after the last measured request), `requests` after the first; the
    /// Python heap's snapshot after the mappings, for the same reason.
    pub async fn end(&self, requests: u64) {
        if self.state().before.is_some()
            && let Some(r) = self.read().await
        {
            self.state().after = Some((r, requests));
        }
        if let Some(h) = &self.py_heap {
            h.end(requests).await;
        }
    }

    /// The mapping growth, labelled from the timeline's processes.
    fn mappings(&self, timeline: &Timeline) -> Option<Mappings> {
        let st = self.state();
        let (before, (after, requests)) = (st.before.as_ref()?, st.after.as_ref()?);
        let mut unreadable = Vec::new();
        let mut processes = Vec::new();
        for (pid, a) in after {
            let label = timeline
                .processes
                .get(pid)
                .map_or_else(|| format!("pid {pid}"), |p| p.label().to_owned());
            match (before.get(pid), a) {
                (Some(Ok(b)), Ok(a)) => {
                    processes.push(smaps::diff(*pid, label, b, a, *requests));
                }
                (Some(Err(e)), _) | (_, Err(e)) => {
                    unreadable.push(format!("{label} (pid {pid}): {e}"));
                }
                (None, Ok(_)) => {}
            }
        }
        processes.sort_by_key(|p| std::cmp::Reverse(p.growth));
        Some(Mappings {
            from: "after the warm-up".into(),
            to: "after the last measured request, before the cooldown".into(),
            requests: *requests,
            processes,
            unreadable,
        })
    }

    /// On a leak `verdict`, names the guilty processes and dumps their stacks (the server must
    /// still run). Nothing happens for a pass or an inconclusive verdict.
    pub async fn on_verdict(&self, verdict: &Verdict, timeline: &Timeline) {
        let mappings = self.mappings(timeline);
        let guilty = guilty(verdict, mappings.as_ref());
        if guilty.is_empty() {
            return;
        }
        self.state().diagnosis.guilty.clone_from(&guilty);
        let py_spy = match self.py_spy.locate() {
            Ok(Some(p)) => p,
            Ok(None) => return,
            Err(line) => {
                self.state().diagnosis.notes.push(line.0);
                return;
            }
        };
        for pid in guilty {
            let label = timeline
                .processes
                .get(&pid)
                .map_or_else(|| format!("pid{pid}"), |p| p.label().to_owned());
            let s = snapshot::py_spy_dump(&py_spy, pid, &label, &self.dir, &self.stem).await;
            self.state().diagnosis.stacks.push(s);
        }
    }

    /// What lands in the report (`None`: nothing was read and `--py-heap` is off).
    pub fn finish(&self, timeline: &Timeline) -> Option<Diagnosis> {
        let mappings = self.mappings(timeline);
        let mut d = std::mem::take(&mut self.state().diagnosis);
        if let Some(h) = &self.py_heap {
            d.py_heap = Some(h.finish(timeline, &d.guilty, mappings.as_ref()));
        }
        if mappings.is_none() && d.stacks.is_empty() && d.notes.is_empty() && d.py_heap.is_none() {
            return None;
        }
        d.mappings = mappings;
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{RequestSeries, Thresholds, analyze};
    use crate::tracker::Unit;

    fn series(metric: &str, per_request: f64) -> RequestSeries {
        let values: Vec<f64> = (0..200)
            .map(|i| 300e6 + per_request * i as f64 + (i % 7) as f64 * 512.0)
            .collect();
        RequestSeries::raw(metric, Unit::Bytes, &values)
    }

    /// Two processes leak: the one that leaked more leads, whatever the PIDs' order (the Python
    /// heap section and the stacks look at the first).
    #[test]
    fn the_worst_leak_is_guilty_first() {
        let v = analyze(
            &[
                series("host.rss@pid:10", 16.0 * 1024.0),
                series("host.rss@pid:20", 256.0 * 1024.0),
                series("host.rss@pid:30", 0.0),
            ],
            &Thresholds::default(),
        );
        assert_eq!(v.outcome, Outcome::Leak);
        assert_eq!(guilty(&v, None), vec![20, 10]);
    }
}
