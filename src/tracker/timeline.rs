//! The tracker's output: a bounded summary of the run (the plot envelope of every series, the
//! per-request and per-hour batch means the verdict needs, the phases, the processes seen) and
//! the names of the raw files every reading was streamed to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::metric::Unit;
use crate::stats::Batched;

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
    /// No requests, on purpose: memory that grows now grows with time, not traffic.
    Idle,
    /// After the last request: cache flush and settling.
    Cooldown,
}

impl Phase {
    /// `baseline`, `warmup`, `measure`, `idle`, `cooldown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Warmup => "warmup",
            Phase::Measure => "measure",
            Phase::Idle => "idle",
            Phase::Cooldown => "cooldown",
        }
    }
}

impl std::str::FromStr for Phase {
    type Err = crate::util::Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "baseline" => Phase::Baseline,
            "warmup" => Phase::Warmup,
            "measure" => Phase::Measure,
            "idle" => Phase::Idle,
            "cooldown" => Phase::Cooldown,
            _ => return Err(crate::util::Invalid(format!("unknown phase {s:?}"))),
        })
    }
}

/// One phase of a run on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseSpan {
    /// Which phase.
    pub phase: Phase,
    /// Its first mark (µs since the tracker started).
    pub from_us: u64,
    /// The first mark of the next phase, or its last mark while it is the last one.
    pub to_us: u64,
    /// Requests completed in it.
    pub requests: u64,
}

/// The raw files a run streamed to, beside its report (names relative to the report's folder).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawFiles {
    /// Every reading: CSV `t_us,metric,unit,value`.
    pub samples: String,
    /// Every request completion and phase change: CSV `t_us,phase,request`.
    pub marks: String,
    /// Every process seen: JSON lines of [`ProcessInfo`].
    pub processes: String,
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

/// Everything a tracker recorded during one run, bounded whatever the run's length.
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
    /// Series by metric name, for plots: every reading while they are few, then a min/max
    /// envelope of at most a few thousand points (`envelope_bucket` readings per pair).
    pub series: BTreeMap<String, Series>,
    /// Readings per envelope bucket (1: every reading is in `series`).
    #[serde(default = "one")]
    pub envelope_bucket: u64,
    /// The phases, in order.
    pub phases: Vec<PhaseSpan>,
    /// Per analysed metric: its value after each measured request, as batch means.
    pub per_request: BTreeMap<String, Batched>,
    /// Per analysed metric: its readings during the measured phase against hours since the
    /// phase started, as batch means.
    pub by_time: BTreeMap<String, Batched>,
    /// Per analysed metric: its readings during the idle phase against hours since it started.
    #[serde(default)]
    pub idle: BTreeMap<String, Batched>,
    /// Readings during the cooldown, per metric (bounded).
    #[serde(default)]
    pub cooldown: BTreeMap<String, Vec<Point>>,
    /// Processes of the tree by PID.
    pub processes: BTreeMap<u32, ProcessInfo>,
    /// One entry per source.
    pub sources: Vec<SourceStatus>,
    /// The raw files, when the run streamed to disk.
    #[serde(default)]
    pub raw: Option<RawFiles>,
}

fn one() -> u64 {
    1
}

impl Timeline {
    /// The span of `phase`, if it happened.
    pub fn phase(&self, phase: Phase) -> Option<&PhaseSpan> {
        self.phases.iter().find(|p| p.phase == phase)
    }

    /// Time range `[start, end)` of a phase: from its first mark to the first mark of a later
    /// phase (`u64::MAX` while it is the last).
    pub fn phase_range(&self, phase: Phase) -> Option<(u64, u64)> {
        let i = self.phases.iter().position(|p| p.phase == phase)?;
        let from = self.phases[i].from_us;
        let to = self.phases.get(i + 1).map_or(u64::MAX, |n| n.from_us);
        Some((from, to))
    }

    /// Requests completed in `phase`.
    pub fn requests_in(&self, phase: Phase) -> u64 {
        self.phase(phase).map_or(0, |p| p.requests)
    }
}
