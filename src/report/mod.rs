//! Reports: the versioned JSON schema ([`Report`]), plots, the console summary and
//! [`compare`](compare::compare) of two reports.
//!
//! A report reads only analysis outputs and raw samples: the timeline is kept whole, so a later
//! `compare` (or a person) can recompute anything.

pub mod compare;
mod console;
pub mod plot;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analysis::{Outcome, Verdict};
use crate::fixture::ShutdownReport;
use crate::load::{DriverConfig, RequestRecord, RequestSummary, Workload};
use crate::tracker::{Timeline, TrackerConfig};

/// Version of the JSON schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

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
    /// Every judged metric within its threshold.
    Pass,
    /// At least one judged metric leaks.
    Leak,
    /// Not enough evidence either way.
    Inconclusive,
    /// The run could not be judged: setup failed or requests failed.
    Error,
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

/// Why a run ended in [`RunOutcome::Error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// Setup or run.
    pub kind: ErrorKind,
    /// The error and its causes, in one paragraph.
    pub message: String,
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

/// An engine cache that grows with unique inputs, and how the scenario set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// The cache (e.g. `radix cache`).
    pub name: String,
    /// `off`, `capped at …` or `on (default)`.
    pub state: String,
    /// The flag that set it, if any.
    pub flag: Option<String>,
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
    /// Request counts and latencies.
    pub requests: Option<RequestSummary>,
    /// Per-request records.
    pub request_records: Vec<RequestRecord>,
    /// The verdict, when the run got that far.
    pub verdict: Option<Verdict>,
    /// Raw samples.
    pub timeline: Timeline,
    /// How the server was stopped.
    pub shutdown: Option<ShutdownReport>,
    /// Last lines of the server log.
    pub server_log_tail: Vec<String>,
    /// Files written.
    pub files: ReportFiles,
    /// Free-form notes for a person (what was skipped and why).
    pub notes: Vec<String>,
}

impl Report {
    /// The console summary: outcome, the judged metrics, the files.
    pub fn summary(&self) -> String {
        console::summary(self)
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

    /// Panic with the console summary unless the run passed: the assertion every scenario test
    /// (real or control) uses.
    #[track_caller]
    pub fn assert_pass(&self) {
        match (&self.outcome, &self.error) {
            (RunOutcome::Pass, _) => {}
            (RunOutcome::Error, Some(e)) => panic!(
                "memory check could not run: {}\n{}",
                e.message,
                self.summary()
            ),
            _ => panic!("memory check did not pass\n{}", self.summary()),
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

/// Write `bytes` to `path` atomically: a reader sees the old file or the new one, never half.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    use std::io::Write;
    let err = |source| ReportError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}
