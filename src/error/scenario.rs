//! [`ScenarioError`]: what stops a run that the stages themselves do not report.

use std::path::PathBuf;

use crate::fixture::ExitInfo;
use crate::tracker::GpuUnavailable;

/// What can stop a run, besides the stages' own errors (fixture, tracker, load, report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The output folder cannot take the report (checked before anything is launched).
    #[error(
        "cannot write reports into {}; choose another --out-dir / MEMTEST_OUT_DIR",
        path.display()
    )]
    OutDirNotWritable {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// GPU metrics are required and NVML cannot give them.
    #[error(
        "this scenario needs GPU metrics and none are available; run it on a GPU machine, or set MEMTEST_GPU=auto (--gpu auto) to measure host memory only"
    )]
    GpuRequired(#[source] GpuUnavailable),
    /// The engine (SGLang, vLLM) cannot be imported by the configured interpreter.
    #[error("{engine} is not importable by {python}: {detail}. {fix}")]
    EngineMissing {
        /// The engine, as people write it (`SGLang`).
        engine: &'static str,
        /// The interpreter.
        python: String,
        /// What Python said.
        detail: String,
        /// What to install, or which setting names the interpreter that has it.
        fix: String,
    },
    /// Nothing answers at the URL of a server to attach to.
    #[error(
        "nothing answers at {url} ({detail}): start the server first, or fix --base-url / MEMTEST_BASE_URL"
    )]
    AttachUnreachable {
        /// The base URL.
        url: String,
        /// What the connection attempt said.
        detail: String,
    },
    /// The server's root process exited while it was being measured (noticed the moment the
    /// launcher reaped it): a dead server, not a leak and not a timeout.
    #[error(
        "the server died during the run ({status}){}; the report holds the data until then and the log tail below",
        oom.as_ref().map(|o| format!("; the kernel's OOM killer was involved: {o}")).unwrap_or_default()
    )]
    ServerExited {
        /// How it ended.
        status: ExitInfo,
        /// The kernel log's OOM-killer lines about the server's processes, when readable.
        oom: Option<String>,
        /// What the run was doing when it noticed (a failed request, usually).
        #[source]
        during: Option<Box<super::Error>>,
    },
    /// The engine's own memory check fired in its log and the server then died (SGLang raises
    /// its idle leak check by default, which kills the scheduler).
    #[error("{finding}; the server then exited ({status}); see the log tail below")]
    EngineCheckFailed {
        /// The first matching line, in one sentence (line number, process, quote).
        finding: String,
        /// How the server ended.
        status: ExitInfo,
        /// What the run was doing when it noticed (a failed request, usually).
        #[source]
        during: Option<Box<super::Error>>,
    },
    /// The run was cancelled (Ctrl-C, SIGTERM, the watchdog) outside the requests themselves.
    #[error(
        "interrupted during the {stage}: the server was stopped and the report holds what was measured until then"
    )]
    Interrupted {
        /// The stage: `preflight`, `baseline`, `cooldown`.
        stage: &'static str,
    },
    /// The harness could not start one of its own threads or runtimes.
    #[error("the harness could not {what}")]
    Harness {
        /// What it was doing.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// What a report written at the start says until the run replaces it: if it is still
    /// there, the harness was killed.
    #[error(
        "the run did not finish: the harness stopped before it wrote this report; `sglang-memtest analyze {}` rebuilds the verdict from the raw files",
        dir.display()
    )]
    Unfinished {
        /// The report's folder.
        dir: PathBuf,
    },
    /// A report without raw files to rebuild it from (written before schema 2, or by hand).
    #[error("{} names no raw files to rebuild it from", report.display())]
    NoRawFiles {
        /// The report.
        report: PathBuf,
    },
    /// No reading was recorded for the measured requests.
    #[error(
        "no memory readings were recorded for the measured requests (is the server's process tree visible to this user?)"
    )]
    NoReadings,
    /// Nothing of the server's memory could be judged.
    #[error(
        "no host or GPU memory of the server was measured, so nothing could be judged: give the server's PID (--server-pid / MEMTEST_SERVER_PID) when attaching, or run where NVML works"
    )]
    NothingJudged,
}
