//! The tracker's output: named series of samples, request marks and the processes seen.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::metric::Unit;

/// One reading of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Microseconds since the tracker started.
    pub t_us: u64,
    /// The value, in the series' unit. Bytes are exact up to 2^53 (8 PiB).
    pub v: f64,
}

/// All readings of one metric, in time order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Unit of every point.
    pub unit: Unit,
    /// Readings, sorted by `t_us`.
    pub points: Vec<Point>,
}

/// The phase a request (or a stretch of the run) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the first request: the idle server.
    Baseline,
    /// Requests that are sent but not measured.
    Warmup,
    /// Measured requests.
    Measure,
    /// After the last request: cache flush and settling.
    Cooldown,
}

/// A request completion (or a phase change) on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Microseconds since the tracker started.
    pub t_us: u64,
    /// Index of the request within its phase (0-based); phase changes carry 0.
    pub request: u64,
    /// Phase of the request.
    pub phase: Phase,
}

/// A process of the server's tree, as seen by the tracker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Host PID.
    pub pid: u32,
    /// Parent PID when first seen.
    pub ppid: u32,
    /// Short name: the process title (`sglang::scheduler_TP0`) when it set one, else `comm`.
    pub name: String,
    /// What the process does in an inference server, when it is recognised:
    /// `tokenizer_manager` (SGLang's launcher: HTTP server and TokenizerManager), `scheduler`,
    /// `scheduler_TP1`, `detokenizer`, `resource_tracker`, `EngineCore`, `Worker`, `api_server`.
    /// Stable across runs, unlike the PID: reports, plots and `compare` use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Full command line, space-joined (truncated to 512 characters).
    pub cmdline: String,
    /// First and last time the process was seen alive (ms since start).
    pub first_seen_ms: u64,
    /// Last time the process was seen alive (ms since start).
    pub last_seen_ms: u64,
}

impl ProcessInfo {
    /// The role when recognised, else the name: what a person should read.
    pub fn label(&self) -> &str {
        self.role.as_deref().unwrap_or(&self.name)
    }
}

/// Whether a source produced data, and why not when it did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// `host`, `gpu`, `shm` or `server`.
    pub name: String,
    /// True when the source produced at least one reading.
    pub available: bool,
    /// One line for a person: why it is unavailable, or what it saw.
    pub note: Option<String>,
    /// Read errors after a successful start (counted, not fatal).
    pub errors: u64,
}

/// Everything a tracker recorded during one run.
///
/// Metric names are `source.quantity@scope`, e.g. `host.rss@tree`, `host.rss@pid:4321`,
/// `host.pss@tree`, `gpu.used@dev:0`, `gpu.proc@tree`, `gpu.proc@pid:4321`, `shm.bytes`,
/// `server.token_usage`. See [`metric`](super::metric) for the constructors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Host sampling interval in milliseconds.
    pub interval_ms: u64,
    /// Wall-clock time the tracker started (RFC 3339).
    pub started_at: String,
    /// Series by metric name.
    pub series: BTreeMap<String, Series>,
    /// Request completions and phase changes, in time order.
    pub marks: Vec<Mark>,
    /// Processes of the tree by PID.
    pub processes: BTreeMap<u32, ProcessInfo>,
    /// One entry per source.
    pub sources: Vec<SourceStatus>,
}

impl Timeline {
    /// The marks of one phase, in completion order.
    pub fn marks_in(&self, phase: Phase) -> impl Iterator<Item = &Mark> {
        self.marks.iter().filter(move |m| m.phase == phase)
    }

    /// Time range `[start, end)` of a phase: from its first mark to the first mark of a later
    /// phase (or the last point recorded).
    pub fn phase_range(&self, phase: Phase) -> Option<(u64, u64)> {
        let start = self.marks_in(phase).map(|m| m.t_us).min()?;
        let end = self
            .marks
            .iter()
            .filter(|m| m.phase > phase)
            .map(|m| m.t_us)
            .min()
            .unwrap_or(u64::MAX);
        Some((start, end))
    }

    /// The value of `metric` after each request of `phase` completed, in completion order.
    ///
    /// For request `i` this is the latest reading taken strictly before the completion of request
    /// `i + 1` (or the end of the phase for the last one). Every mark triggers a reading a few µs
    /// later, so this is normally the reading taken just after request `i` completed, never one
    /// that already includes request `i + 1`; when none falls between the two completions, the
    /// reading before is carried forward. Times are in µs, so back-to-back requests stay apart.
    /// Returns `None` when the metric does not exist or had no reading by the end of the phase.
    pub fn per_request(&self, metric: &str, phase: Phase) -> Option<Vec<f64>> {
        let series = self.series.get(metric)?;
        let mut ends: Vec<u64> = self.marks_in(phase).map(|m| m.t_us).collect();
        if ends.is_empty() {
            return None;
        }
        ends.sort_unstable();
        let (_, phase_end) = self.phase_range(phase)?;
        let points = &series.points;
        let values: Vec<Option<f64>> = ends
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let until = ends.get(i + 1).copied().unwrap_or(phase_end);
                // Latest reading no later than `until` (points are sorted by time).
                let idx = points.partition_point(|p| p.t_us < until);
                idx.checked_sub(1).map(|k| points[k].v)
            })
            .collect();
        // Requests that completed before the first reading take that first reading.
        let first = values.iter().position(Option::is_some)?;
        let fill = values[first];
        Some(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| if i < first { fill } else { *v })
                .map(|v| v.unwrap_or(f64::NAN))
                .collect(),
        )
    }

    /// Readings of `metric` inside the time range of `phase`.
    pub fn points_in(&self, metric: &str, phase: Phase) -> Vec<Point> {
        let Some(series) = self.series.get(metric) else {
            return Vec::new();
        };
        let Some((start, end)) = self.phase_range(phase) else {
            return Vec::new();
        };
        series
            .points
            .iter()
            .copied()
            .filter(|p| p.t_us >= start && p.t_us < end)
            .collect()
    }
}
