//! # sglang-memtest
//!
//! Catch memory leaks in LLM/VLM inference servers (SGLang first) before users hit an
//! out-of-memory crash.
//!
//! The crate is a pipeline, one module per stage:
//!
//! ```text
//!  ServerSpec ──> fixture ──pids, base_url──> tracker ──Timeline──> analysis ──Verdict──> report
//!                    ^                           ^
//!                    └──────── load driver ──────┘ (marks: request i, phase)
//!  Scenario = ServerSpec + Workload + Thresholds ;  Scenario::run() -> Report
//! ```
//!
//! - [`fixture`] launches a server (an engine's, the embedded reference server, or any command),
//!   waits until it is ready and tears its whole process tree down whatever happens.
//! - [`engine`] knows each inference engine, one file per engine (SGLang, vLLM): its launch,
//!   preflight, routes, metric names, process roles, log patterns and caches, behind one trait.
//! - [`tracker`] samples the memory of that tree (host RSS/PSS/USS, GPU through NVML,
//!   `/dev/shm`, the server's own metrics) into a [`Timeline`].
//! - [`load`] drives requests at the server and marks each one on the timeline.
//! - [`analysis`] turns request-indexed series into a [`Verdict`]: pure functions, seeded.
//! - [`diagnose`] says where the memory grew (smaps by mapping kind) and dumps the guilty
//!   process's stacks on a leak.
//! - [`report`] writes the versioned JSON report, plots and the console summary.
//! - [`fleet`] judges servers someone else runs from the Prometheus that scrapes them.
//! - [`scenario`] ties it together: the presets `text_model`, `vlm_no_mm_processor`, `vlm_image`.
//! - [`config`] is the one way to configure a scenario (knobs, the environment layered once).
//! - [`campaign`] runs many scenarios from one plan: dose–response sweeps, calibration.
#![warn(missing_docs)]

pub mod analysis;
pub mod campaign;
pub mod config;
pub mod diagnose;
pub mod engine;
mod error;
pub mod fixture;
pub mod fleet;
pub mod load;
pub mod report;
pub mod scenario;
mod stats;
pub mod tracker;
pub mod util;

pub use analysis::{Outcome, Thresholds, Verdict};
pub use config::{ConfigError, ScenarioConfig};
pub use error::{Error, Result};
pub use fixture::{ServerFixture, ServerSpec, ShutdownReport, kill_all_registered};
pub use load::{Api, DriverConfig, Workload};
pub use report::{Report, RunFailure};
pub use scenario::{Scenario, Target};
/// Cancels a run, a start-up or a driver (tokio-util's): see [`Scenario::run_until`].
pub use tokio_util::sync::CancellationToken;
pub use tracker::{MemoryTracker, Timeline, TrackerConfig};

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
