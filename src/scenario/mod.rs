//! Scenarios: a server to launch ([`Target`]), a [`Workload`], pacing and [`Thresholds`],
//! built by [`ScenarioConfig`](crate::config::ScenarioConfig). [`Scenario::run`] goes through the whole
//! pipeline and always returns (and writes) a [`Report`](crate::report::Report), whatever happened;
//! [`Scenario::run_blocking`] does the same for a plain `#[test]`.

mod accounting;
mod progress;
mod rebuild;
mod run;
mod series;
mod stages;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::error::ScenarioError;
pub use rebuild::reanalyze;

use crate::analysis::Thresholds;
use crate::engine::CacheInfo;
use crate::engine::Server;
use crate::fixture::ServerSpec;
use crate::load::{DriverConfig, Workload};
use crate::tracker::TrackerConfig;

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
    /// An engine of [`ENGINES`](crate::engine::ENGINES) (SGLang, vLLM), launched by the fixture.
    Engine(Server),
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
    /// The engine's server, when the target is an engine.
    pub fn engine(&self) -> Option<&Server> {
        match self {
            Target::Engine(server) => Some(server),
            _ => None,
        }
    }

    /// `reference`, the engine's name (`sglang`, `vllm`), `command` or `attach`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Reference { .. } => "reference",
            Target::Engine(server) => server.engine().name(),
            Target::Command(_) => "command",
            Target::Attach { .. } => "attach",
        }
    }
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

/// A whole memory test, checked and ready to run: what to launch, what to send, and what
/// counts as a leak. Made by [`ScenarioConfig::build`](crate::ScenarioConfig::build).
#[derive(Debug, Clone)]
pub struct Scenario {
    pub(crate) name: String,
    pub(crate) target: Target,
    pub(crate) workload: Workload,
    pub(crate) driver: DriverConfig,
    pub(crate) thresholds: Thresholds,
    pub(crate) tracker: TrackerConfig,
    pub(crate) cooldown: CooldownConfig,
    pub(crate) baseline: Duration,
    pub(crate) out_dir: PathBuf,
    pub(crate) startup_timeout: Duration,
    pub(crate) keep_server: bool,
    /// Start this process's reaper at the first fixture start (`MEMTEST_REAPER`).
    pub(crate) reaper: bool,
    /// Install the watchdog (`MEMTEST_WATCHDOG`).
    pub(crate) watchdog: bool,
    pub(crate) caches: Vec<CacheInfo>,
    pub(crate) plots: bool,
    /// Copies of the report and plot under the seed tool's names.
    pub(crate) seed_names: bool,
    /// The py-spy that dumps a leaking process's stacks (`diagnose`).
    pub(crate) py_spy: crate::diagnose::PySpy,
    /// Python heap attribution (`--py-heap`; `None`: off).
    pub(crate) py_heap: Option<crate::diagnose::PyHeapConfig>,
    /// The port to launch the server on (`None`: a free one).
    pub(crate) port: Option<u16>,
    pub(crate) progress: Option<Duration>,
}

impl Scenario {
    /// The name (file names: `<name>.json`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// What each request carries.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// Pacing and error guard.
    pub fn driver(&self) -> &DriverConfig {
        &self.driver
    }

    /// Sampling.
    pub fn tracker(&self) -> &TrackerConfig {
        &self.tracker
    }

    /// What counts as a leak.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// Engine caches and how the scenario set them.
    pub fn caches(&self) -> &[CacheInfo] {
        &self.caches
    }

    /// Where the report, plots and logs go.
    pub fn out_dir(&self) -> &std::path::Path {
        &self.out_dir
    }

    /// Whether PNG/SVG plots are written.
    pub fn plots(&self) -> bool {
        self.plots
    }
}
