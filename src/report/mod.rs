//! Reports: the versioned JSON schema ([`Report`]), plots, the console summary and
//! [`compare`](compare::compare) of two reports.
//!
//! A report reads only analysis outputs and raw samples: the timeline is kept whole, so a later
//! `compare` (or a person) can recompute anything.

mod cause;
pub mod compare;
mod console;
mod diagnosis;
pub mod html;
pub mod plot;
mod py_heap;
pub mod roles;
mod writers;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use cause::{LikelyCause, likely_causes};
pub use writers::{Outputs, ReportWriter, WRITERS, WriteError, write_outputs};

use crate::analysis::{IdleAccounting, Outcome, Verdict};
pub use crate::engine::{CacheGrowth, CacheInfo};
use crate::fixture::{LogWatchReport, ShutdownReport};
use crate::load::{DriverConfig, RequestRecord, RequestSummary, Workload};
use crate::tracker::{Timeline, TrackerConfig};

/// Version of the JSON schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 2;

/// Errors reading or writing reports.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be written.
    #[error("failed to write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a report this version understands.
    #[error("{path} is not a sglang-memtest report: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A report of another schema version.
    #[error(
        "{path} has schema version {found}; this sglang-memtest reads version {SCHEMA_VERSION}"
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// Plotting failed.
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every judged metric within its threshold, the server's accounting back at idle, and no
    /// memory check of the engine in its log.
    Pass,
    /// At least one judged metric leaks, the server's accounting did not return to idle
    /// (`idle_accounting`), or the engine's own memory check fired (`log_watch`).
    Leak,
    /// Not enough evidence either way.
    Inconclusive,
    /// The run could not be judged: setup failed or requests failed.
    Error,
}

impl RunOutcome {
    /// The word, as the JSON spells it: `pass`, `leak`, `inconclusive`, `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Pass => "pass",
            RunOutcome::Leak => "leak",
            RunOutcome::Inconclusive => "inconclusive",
            RunOutcome::Error => "error",
        }
    }
}

impl From<Outcome> for RunOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Pass => RunOutcome::Pass,
            Outcome::Leak => RunOutcome::Leak,
            Outcome::Inconclusive => RunOutcome::Inconclusive,
        }
    }
}

/// Whether an error is the user's to fix (setup) or a failure of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad configuration, missing SGLang or GPU, a server that never started.
    Setup,
    /// The server died or failed requests during the run.
    Run,
}

/// What the report needs of the error that ended a run: its [`ErrorKind`]; the sentence and its
/// causes come from [`std::error::Error`]. The report owns this trait so that it need not know
/// the crate's error type, which sits above it (the crate's `Error` implements it).
pub trait RunCause: std::error::Error + Send + Sync + std::any::Any {
    /// Setup or run.
    fn kind(&self) -> ErrorKind;
}

/// Why a run ended in [`RunOutcome::Error`]: the kind and the sentence in the JSON, the typed
/// error in memory (match on it in tests:
/// `report.error.as_ref().and_then(|e| e.cause::<sglang_memtest::Error>())`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunError {
    /// Setup or run.
    pub kind: ErrorKind,
    /// The error and its causes, in one paragraph.
    pub message: String,
    /// The typed error (not serialized; `None` in a report read back from JSON).
    #[serde(skip)]
    cause: Option<std::sync::Arc<dyn RunCause>>,
}

impl RunError {
    /// The record of `error`: its kind, its message with causes, and the error itself.
    pub fn new(error: impl RunCause) -> Self {
        Self {
            kind: error.kind(),
            message: crate::util::error_chain(&error),
            cause: Some(std::sync::Arc::new(error)),
        }
    }

    /// The typed error, when this report was made by this process and the error is an `E`
    /// (the crate's runs end with `sglang_memtest::Error`).
    pub fn cause<E: RunCause>(&self) -> Option<&E> {
        let any: &dyn std::any::Any = self.cause.as_deref()?;
        any.downcast_ref()
    }
}

impl PartialEq for RunError {
    /// Kind and message: the typed cause is not part of the record.
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

/// A run that did not pass: a leak, inconclusive, or an error. Carries the whole report;
/// `Display` (and `Debug`) is its console summary, so a test that returns it reads well.
pub struct RunFailure {
    /// The report of the run.
    pub report: Box<Report>,
}

impl RunFailure {
    /// How the run ended (never [`RunOutcome::Pass`]).
    pub fn outcome(&self) -> RunOutcome {
        self.report.outcome
    }

    /// The typed error of a run that ended in [`RunOutcome::Error`], when it is an `E` (the
    /// crate's runs end with `sglang_memtest::Error`).
    pub fn error<E: RunCause>(&self) -> Option<&E> {
        self.report.error.as_ref()?.cause()
    }

    /// Setup or run, for an error; `None` for a leak or an inconclusive verdict.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.report.error.as_ref().map(|e| e.kind)
    }
}

impl std::fmt::Display for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (self.report.outcome, &self.report.error) {
            (RunOutcome::Error, Some(e)) => format!("memory check could not run: {}", e.message),
            (RunOutcome::Leak, _) => "memory check found a leak".to_owned(),
            (RunOutcome::Inconclusive, _) => {
                "memory check was inconclusive (run longer: the report says how many requests would decide)".to_owned()
            }
            _ => "memory check did not pass".to_owned(),
        };
        write!(f, "{what}\n{}", self.report.summary())
    }
}

impl std::fmt::Debug for RunFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for RunFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let cause: &dyn RunCause = self.report.error.as_ref()?.cause.as_deref()?;
        Some(cause)
    }
}

/// What was launched (or attached to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// `reference`, `sglang`, `command` or `attach`.
    pub kind: String,
    /// The argv launched (empty when attached).
    pub argv: Vec<String>,
    /// Base URL of the server.
    pub base_url: String,
    /// Model path, when known.
    pub model: Option<String>,
}

/// Files written for a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportFiles {
    /// The JSON report.
    pub json: Option<PathBuf>,
    /// PNG plot.
    pub png: Option<PathBuf>,
    /// SVG plot.
    pub svg: Option<PathBuf>,
    /// The server's log.
    pub server_log: Option<PathBuf>,
    /// Every request: CSV (index, phase, start, latency, status, images, error).
    #[serde(default)]
    pub requests: Option<PathBuf>,
    /// The HTML page of the run (`<scenario>.html`).
    #[serde(default)]
    pub html: Option<PathBuf>,
    /// Copies under the seed tool's names (`--seed-names`, `run --test …`):
    /// `{test}_{model}_{unix}_memory_data.json` (this report) and `…_memory_plot.png`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seed: Vec<PathBuf>,
    /// The files of other writers ([`WRITERS`]), by the writer's name: a new format needs no
    /// field here (in the JSON they sit beside the others: `"files": {"junit": "…"}`).
    #[serde(
        flatten,
        default,
        skip_serializing_if = "std::collections::BTreeMap::is_empty"
    )]
    pub other: std::collections::BTreeMap<String, PathBuf>,
}

/// Everything about one run: configuration, raw samples, requests, verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `sglang-memtest <version>`.
    pub tool: String,
    /// Scenario name (`text_model`, …).
    pub scenario: String,
    /// `text`, `vlm-text` or `vlm-image`.
    pub test_type: String,
    /// How the run ended.
    pub outcome: RunOutcome,
    /// Why it ended in error, when it did.
    pub error: Option<RunError>,
    /// RFC 3339 start time.
    pub started_at: String,
    /// Duration of the whole run, ms.
    pub duration_ms: u64,
    /// What was launched.
    pub target: TargetInfo,
    /// Engine caches and their settings.
    pub caches: Vec<CacheInfo>,
    /// The workload.
    pub workload: Workload,
    /// Pacing and error guard.
    pub driver: DriverConfig,
    /// Sampling settings.
    pub tracker: TrackerConfig,
    /// What counts as a leak (also in the verdict; here so a report cut short can be judged).
    #[serde(default)]
    pub thresholds: crate::analysis::Thresholds,
    /// Request counts and latencies (every record is in `files.requests`).
    pub requests: Option<RequestSummary>,
    /// How the measured requests' count was decided: the looks of an adaptive run, how many
    /// requests it took and why it stopped (absent for runs of a duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<crate::analysis::adaptive::Adaptive>,
    /// The verdict, when the run got that far.
    pub verdict: Option<Verdict>,
    /// Raw samples.
    pub timeline: Timeline,
    /// How the server was stopped.
    pub shutdown: Option<ShutdownReport>,
    /// Last lines of the server log.
    pub server_log_tail: Vec<String>,
    /// The server's own accounting at idle, before the load and after it (before the cooldown's
    /// cache flush): logical leaks, KV tokens never given back, requests never finished. `None`
    /// when the run did not get that far.
    #[serde(default)]
    pub idle_accounting: Option<IdleAccounting>,
    /// The engine's own memory checks found in the server's log (leak checks, a full KV pool,
    /// out-of-memory errors), quoted. `None` when the run did not get that far.
    #[serde(default)]
    pub log_watch: Option<LogWatchReport>,
    /// Files written.
    pub files: ReportFiles,
    /// Free-form notes for a person (what was skipped and why).
    pub notes: Vec<String>,
    /// Engine caches that are on and may explain memory that leaked or is undecided
    /// ([`likely_causes`]); empty when none is.
    #[serde(default)]
    pub likely_causes: Vec<LikelyCause>,
    /// Where the memory grew, by mapping kind and process (`/proc/PID/smaps` after the warm-up
    /// and after the last measured request), and on a leak the guilty process's stacks.
    /// Absent when nothing was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<crate::diagnose::Diagnosis>,
}

impl Report {
    /// The console summary: outcome, the judged metrics, the files.
    pub fn summary(&self) -> String {
        console::summary(self)
    }

    /// The plots' title: `text_model (text) — sglang`.
    pub fn plot_title(&self) -> String {
        format!(
            "{} ({}) — {}",
            self.scenario, self.test_type, self.target.kind
        )
    }

    /// Write the JSON report atomically (temp file in the same folder, then rename).
    ///
    /// # Errors
    /// [`ReportError::Write`] naming the path.
    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ReportError::Write {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(path, &bytes)
    }

    /// Read a JSON report, checking its schema version.
    ///
    /// # Errors
    /// [`ReportError::Read`], [`ReportError::Version`] or [`ReportError::Parse`].
    pub fn read_json(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
            path: path.to_owned(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ReportError::Parse {
                path: path.to_owned(),
                source,
            })?;
        match value
            .get("schema_version")
            .and_then(serde_json::Value::as_u64)
        {
            Some(v) if v == u64::from(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(ReportError::Version {
                    path: path.to_owned(),
                    found: v as u32,
                });
            }
            None => {
                return Err(ReportError::Parse {
                    path: path.to_owned(),
                    source: serde::de::Error::custom("no schema_version field"),
                });
            }
        }
        serde_json::from_value(value).map_err(|source| ReportError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Every request of the run, read back from `files.requests`.
    ///
    /// # Errors
    /// [`ReportError::Read`] when the run wrote no records or the file cannot be read.
    pub fn request_records(&self) -> Result<Vec<RequestRecord>, ReportError> {
        let path = self.files.requests.clone().unwrap_or_default();
        crate::load::read_records(&path).map_err(|e| ReportError::Read {
            path,
            source: std::io::Error::other(e),
        })
    }

    /// `Ok(self)` when the run passed, else [`RunFailure`] with the whole report: the
    /// result every scenario test returns (`report.into_result()?`).
    ///
    /// # Errors
    /// [`RunFailure`] unless the outcome is [`RunOutcome::Pass`].
    pub fn into_result(self) -> Result<Report, RunFailure> {
        if self.outcome == RunOutcome::Pass {
            Ok(self)
        } else {
            Err(RunFailure {
                report: Box::new(self),
            })
        }
    }

    /// The verdict on one metric (`host.rss@tree`, `server.kv_tokens@idle`, …), for assertions:
    /// `None` when the run has no verdict or did not measure it.
    pub fn metric(&self, name: &str) -> Option<&crate::analysis::MetricAnalysis> {
        self.verdict.as_ref()?.metric(name)
    }

    /// Panic with the console summary unless the run passed.
    #[track_caller]
    pub fn assert_pass(&self) {
        if self.outcome != RunOutcome::Pass {
            panic!(
                "{}",
                RunFailure {
                    report: Box::new(self.clone())
                }
            );
        }
    }

    /// Panic with the console summary unless the run found a leak.
    #[track_caller]
    pub fn assert_leak(&self) {
        if self.outcome != RunOutcome::Leak {
            panic!("expected a leak verdict\n{}", self.summary());
        }
    }
}

/// [`util::write_atomic`](crate::util::write_atomic), with the path in the error.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    crate::util::write_atomic(path, bytes).map_err(|source| ReportError::Write {
        path: path.to_owned(),
        source,
    })
}
