//! Scenarios: a server to launch ([`Target`]), a [`Workload`], pacing and [`Thresholds`];
//! [`Scenario::run`] goes through the whole pipeline and always returns (and writes) a
//! [`Report`], whatever happened.
//!
//! The presets [`Scenario::text_model`], [`Scenario::vlm_no_mm_processor`] and
//! [`Scenario::vlm_image`] are what SGLang asked for; they read `MEMTEST_*` variables.

pub mod calibrate;
mod env;
pub mod presets;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use env::parse_bytes;

use crate::analysis::Thresholds;
use crate::fixture::{ServerSpec, SglangServer};
use crate::load::{DriverConfig, Workload};
use crate::report::CacheInfo;
use crate::tracker::TrackerConfig;

/// Errors in a scenario's configuration, found before anything is launched.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// An environment variable has a value that cannot be used.
    #[error("{var}={value:?} is not valid: expected {expected}")]
    Env {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// SGLang cannot be imported by the configured interpreter.
    #[error(
        "SGLang is not importable by {python}: {detail}. Install it (`{python} -m pip install \"sglang[all]\"`) or set MEMTEST_PYTHON to the interpreter that has it"
    )]
    SglangMissing {
        /// The interpreter.
        python: String,
        /// What Python said.
        detail: String,
    },
    /// The reference server's executable could not be found.
    #[error(
        "cannot find the sglang-memtest executable for the reference server ({0}); set MEMTEST_REFERENCE_BIN or build it with `cargo build`"
    )]
    ReferenceBinary(String),
}

/// The server a scenario runs against.
#[derive(Debug, Clone)]
pub enum Target {
    /// The embedded reference server: `<exe> serve-reference --port {port} <args>`.
    Reference {
        /// The `sglang-memtest` executable.
        exe: PathBuf,
        /// Knobs, e.g. `--leak-bytes-per-request=1048576`.
        args: Vec<String>,
    },
    /// SGLang, launched by the fixture.
    Sglang(SglangServer),
    /// Any command (`{port}` in its args is replaced by the port).
    Command(ServerSpec),
    /// A server someone else runs. With `pid`, its process tree is tracked too.
    Attach {
        /// Base URL, e.g. `http://127.0.0.1:30000`.
        base_url: String,
        /// PID of the server's root process, if known.
        pid: Option<u32>,
    },
}

impl Target {
    /// The reference server, found with [`reference_exe`].
    ///
    /// # Errors
    /// [`ScenarioError::ReferenceBinary`] when the executable cannot be found.
    pub fn reference(
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, ScenarioError> {
        Ok(Target::Reference {
            exe: reference_exe()?,
            args: args.into_iter().map(Into::into).collect(),
        })
    }

    /// `reference`, `sglang`, `command` or `attach`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Reference { .. } => "reference",
            Target::Sglang(_) => "sglang",
            Target::Command(_) => "command",
            Target::Attach { .. } => "attach",
        }
    }
}

/// The `sglang-memtest` executable that serves the reference server: `MEMTEST_REFERENCE_BIN`,
/// else the running executable when it is `sglang-memtest`, else `sglang-memtest` next to the
/// running executable or one folder up (where cargo puts it for tests).
///
/// # Errors
/// [`ScenarioError::ReferenceBinary`] naming the places searched.
pub fn reference_exe() -> Result<PathBuf, ScenarioError> {
    if let Some(p) = env::path("MEMTEST_REFERENCE_BIN") {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ScenarioError::ReferenceBinary(format!(
                "MEMTEST_REFERENCE_BIN={} does not exist",
                p.display()
            )))
        };
    }
    let me = std::env::current_exe().map_err(|e| ScenarioError::ReferenceBinary(e.to_string()))?;
    if me.file_stem().is_some_and(|s| s == "sglang-memtest") {
        return Ok(me);
    }
    let candidates: Vec<PathBuf> = me
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("sglang-memtest"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            let searched: Vec<String> =
                candidates.iter().map(|p| p.display().to_string()).collect();
            ScenarioError::ReferenceBinary(format!("looked in {}", searched.join(", ")))
        })
}

/// What happens after the last request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CooldownConfig {
    /// Call `/flush_cache` (retried while it answers 400).
    pub flush: bool,
    /// How long to keep retrying the flush.
    #[serde(with = "crate::util::serde_ms")]
    pub flush_timeout: Duration,
    /// Time to let memory settle after the flush; readings in this window form the residual.
    #[serde(with = "crate::util::serde_ms")]
    pub settle: Duration,
}

impl Default for CooldownConfig {
    fn default() -> Self {
        Self {
            flush: true,
            flush_timeout: Duration::from_secs(30),
            settle: Duration::from_secs(2),
        }
    }
}

/// A whole memory test: what to launch, what to send, and what counts as a leak.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Name, used for file names (`text_model`).
    pub name: String,
    /// The server.
    pub target: Target,
    /// What each request carries.
    pub workload: Workload,
    /// Pacing and error guard.
    pub driver: DriverConfig,
    /// What counts as a leak.
    pub thresholds: Thresholds,
    /// Sampling.
    pub tracker: TrackerConfig,
    /// After the last request.
    pub cooldown: CooldownConfig,
    /// Idle sampling before the first request.
    pub baseline: Duration,
    /// Where the report, plots and logs go (default `target/memtest`).
    pub out_dir: PathBuf,
    /// Server startup deadline (default 600 s, as SGLang's CI).
    pub startup_timeout: Duration,
    /// Engine caches and how this scenario set them (named in the report).
    pub caches: Vec<CacheInfo>,
    /// Write PNG/SVG plots.
    pub plots: bool,
    /// Print a live progress line to stderr every this often (`None`: quiet; the CLI sets it).
    pub progress: Option<Duration>,
}

impl Scenario {
    /// A scenario with defaults: 100 measured requests 0.1 s apart, default thresholds,
    /// output under `target/memtest` (or `MEMTEST_OUT_DIR`).
    pub fn new(name: impl Into<String>, target: Target, workload: Workload) -> Self {
        Self {
            name: name.into(),
            target,
            workload,
            driver: DriverConfig::default(),
            thresholds: Thresholds::default(),
            tracker: TrackerConfig::default(),
            cooldown: CooldownConfig::default(),
            baseline: Duration::from_millis(500),
            out_dir: env::path("MEMTEST_OUT_DIR")
                .unwrap_or_else(|| PathBuf::from("target/memtest")),
            startup_timeout: Duration::from_secs(600),
            caches: Vec::new(),
            plots: true,
            progress: None,
        }
    }

    /// Set the driver settings.
    pub fn with_driver(mut self, driver: DriverConfig) -> Self {
        self.driver = driver;
        self
    }

    /// Set the thresholds.
    pub fn with_thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// Set the tracker settings.
    pub fn with_tracker(mut self, tracker: TrackerConfig) -> Self {
        self.tracker = tracker;
        self
    }

    /// Set the cooldown.
    pub fn with_cooldown(mut self, cooldown: CooldownConfig) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Set the output folder.
    pub fn with_out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = dir.into();
        self
    }

    /// Set the idle baseline before the first request.
    pub fn with_baseline(mut self, d: Duration) -> Self {
        self.baseline = d;
        self
    }

    /// Turn plots on or off.
    pub fn with_plots(mut self, on: bool) -> Self {
        self.plots = on;
        self
    }

    /// Check the settings before anything is launched.
    ///
    /// # Errors
    /// [`ScenarioError::Invalid`] saying which setting and what would work.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let d = &self.driver;
        let invalid = |m: String| Err(ScenarioError::Invalid(m));
        if d.num_requests < 3 {
            return invalid(format!(
                "num_requests is {}; at least 3 measured requests are needed for a trend (100 is usual)",
                d.num_requests
            ));
        }
        if d.concurrency == 0 {
            return invalid("concurrency is 0; use 1 or more".into());
        }
        if !(0.0..=1.0).contains(&d.max_error_rate) {
            return invalid(format!(
                "max_error_rate is {}; use a fraction between 0 and 1",
                d.max_error_rate
            ));
        }
        if !(0.5..1.0).contains(&self.thresholds.confidence) {
            return invalid(format!(
                "confidence is {}; use a level such as 0.95",
                self.thresholds.confidence
            ));
        }
        if self.tracker.interval.is_zero() {
            return invalid("the sampling interval is 0; use e.g. 100 ms".into());
        }
        if d.request_timeout.is_zero() {
            return invalid("the request timeout is 0".into());
        }
        Ok(())
    }
}
