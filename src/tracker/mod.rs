//! Memory tracking: a background sampler over the server's process tree.
//!
//! The [`MemoryTracker`] owns two sampling threads (a fast one for host RSS and GPU memory
//! through NVML, a slow one for PSS/USS and `/dev/shm`) and, inside a tokio runtime, one task
//! polling the server's own metrics. Every source writes
//! into one shared store; [`MemoryTracker::finish`] hands back the [`Timeline`].
//!
//! Sampling never blocks the request path: [`MemoryTracker::mark`] records a timestamp and
//! nudges the sampler thread, which then takes an extra sample right away, so each request has a
//! reading taken just after it completed, whatever the interval.

mod gpu;
mod host;
mod host_probe;
pub mod metric;
mod replay;
mod sampler;
mod server;
pub(crate) mod shm;
mod source;
mod store;
mod timeline;

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fixture::ProcessTree;
pub use crate::stats::{BatchMeans, Batched, MAX_POINTS};
pub use gpu::GpuProbe;
pub use host_probe::HostProbe;
pub use replay::{ReplayError, Replayed, replay};
use sampler::{Msg, Sampler};
pub use server::idle;
pub(crate) use store::{Reading, Store};
pub use timeline::{
    Mark, Phase, PhaseSpan, Point, ProcessInfo, RawFiles, Series, SourceStatus, Timeline, Unit,
};

/// Errors starting the tracker.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// GPU metrics were required and NVML could not provide them.
    #[error("GPU metrics are required but unavailable")]
    GpuUnavailable(#[source] GpuUnavailable),
    /// The raw files could not be created.
    #[error("failed to create the raw sample files in {}", dir.display())]
    RawFiles {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sampler thread could not be started.
    #[error("failed to start the sampler thread")]
    Thread(#[source] std::io::Error),
}

/// GPU metrics cannot be read here: no NVML library (no NVIDIA driver), the driver not loaded,
/// no permission, or no visible device.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct GpuUnavailable {
    /// Why, in one line for a person.
    pub reason: String,
}

/// Whether GPU metrics can be read here: the devices seen, in one line.
///
/// # Errors
/// [`GpuUnavailable`] saying why not.
pub fn check_gpu(visible_devices: Option<&str>) -> Result<String, GpuUnavailable> {
    gpu::GpuSource::open(visible_devices)
        .map(|g| g.describe())
        .map_err(|reason| GpuUnavailable { reason })
}

/// Whether to read GPU memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuMode {
    /// Read it when NVML works; note why not otherwise.
    Auto,
    /// Never read it.
    Off,
    /// Fail to start when NVML does not work (real GPU scenarios).
    Required,
}

/// Tracker settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackerConfig {
    /// Interval between regular samples (default 100 ms).
    #[serde(with = "crate::util::serde_ms")]
    pub interval: Duration,
    /// Read PSS/USS every this many regular samples (default 10: once a second).
    pub pss_every: u32,
    /// GPU reading mode.
    pub gpu: GpuMode,
    /// Directory scanned as `/dev/shm` (`None`: don't scan).
    pub shm_dir: Option<PathBuf>,
    /// Poll the server's `/metrics` and `/get_server_info` at this interval (`None`: don't).
    #[serde(with = "crate::util::serde_opt_ms")]
    pub server_interval: Option<Duration>,
    /// The GPUs to read, in `CUDA_VISIBLE_DEVICES` syntax (`None`: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_devices: Option<String>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(100),
            pss_every: 10,
            gpu: GpuMode::Auto,
            shm_dir: Some(PathBuf::from("/dev/shm")),
            server_interval: Some(Duration::from_secs(1)),
            visible_devices: None,
        }
    }
}

/// Where a run stands, for a live console line.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Phase of the latest mark.
    pub phase: Option<Phase>,
    /// Marks (completed requests) in that phase.
    pub done: u64,
    /// `(metric, first value, latest value)` for the metrics asked for that have readings.
    pub values: Vec<(String, f64, f64)>,
    /// The processes seen so far: PID → role (else title), to name per-process metrics.
    pub labels: std::collections::BTreeMap<u32, String>,
}

/// Marks requests on a [`MemoryTracker`] from any task or thread.
#[derive(Debug, Clone)]
pub struct Marker {
    store: Store,
    tx: mpsc::Sender<Msg>,
}

impl Marker {
    /// Same as [`MemoryTracker::progress`].
    pub fn progress(&self, metrics: &[&str]) -> Progress {
        self.store.progress(metrics)
    }

    /// Same as [`MemoryTracker::mark`].
    pub fn mark(&self, request: u64, phase: Phase) {
        self.store.mark(self.store.now_us(), request, phase);
        let _ = self.tx.send(Msg::Sample);
    }
}
/// The background sampler. Dropping it stops sampling; [`finish`](Self::finish) also returns
/// what was recorded.
#[derive(Debug)]
pub struct MemoryTracker {
    store: Store,
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
    server_stop: Option<tokio::sync::watch::Sender<bool>>,
    server_task: Option<tokio::task::JoinHandle<()>>,
}

impl MemoryTracker {
    /// Start sampling `tree` (none: only device-wide GPU and shm readings) and, when
    /// `base_url` is given and a tokio runtime is running, the server's own metrics. With
    /// `raw = Some((dir, stem))` every reading, mark and process is also streamed to
    /// `dir/<stem>.samples.csv`, `.marks.csv` and `.processes.jsonl`, flushed at least once a
    /// second.
    ///
    /// # Errors
    /// [`TrackerError::GpuUnavailable`] when `config.gpu` is `Required` and NVML does not work;
    /// [`TrackerError::RawFiles`] when the raw files cannot be created;
    /// [`TrackerError::Thread`] when the sampler thread cannot be spawned.
    pub fn start(
        tree: Option<ProcessTree>,
        base_url: Option<&str>,
        config: &TrackerConfig,
        raw: Option<(&std::path::Path, &str)>,
    ) -> Result<Self, TrackerError> {
        let store = Store::new(config.interval.as_millis() as u64);
        if let Some((dir, stem)) = raw {
            store
                .stream_to(dir, stem)
                .map_err(|source| TrackerError::RawFiles {
                    dir: dir.to_owned(),
                    source,
                })?;
        }
        let sources = source::open(&source::Open {
            config,
            tree: tree.as_ref(),
            store: &store,
        })?;
        let (fast, slow): (Vec<_>, Vec<_>) = sources
            .into_iter()
            .partition(|s| s.pace() == source::Pace::Fast);
        let (tx, rx) = mpsc::channel();
        let shared_pids = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let interval = config.interval.max(Duration::from_millis(1));
        let slow = sampler::Slow {
            store: store.clone(),
            sources: slow,
            interval,
            pids: std::sync::Arc::clone(&shared_pids),
        };
        let sampler = Sampler {
            store: store.clone(),
            tree,
            host: host::HostSource::new(),
            fast,
            interval,
            pids: Vec::new(),
            slow: Some(slow),
            shared_pids,
        };
        let thread = std::thread::Builder::new()
            .name("memtest-sampler".into())
            .spawn(move || sampler.run(rx))
            .map_err(TrackerError::Thread)?;
        let (mut server_stop, mut server_task) = (None, None);
        match (
            base_url,
            config.server_interval,
            tokio::runtime::Handle::try_current(),
        ) {
            (Some(url), Some(every), Ok(rt)) => {
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let client = reqwest::Client::new();
                server_task = Some(rt.spawn(server::poll(
                    url.to_owned(),
                    client,
                    store.clone(),
                    every,
                    stop_rx,
                )));
                server_stop = Some(stop_tx);
            }
            (Some(_), Some(_), Err(_)) => store.set_source(status(
                "server",
                false,
                Some(
                    "server metrics not read: the tracker was started outside a tokio runtime"
                        .into(),
                ),
            )),
            _ => store.set_source(status("server", false, Some("server metrics off".into()))),
        }
        Ok(Self {
            store,
            tx,
            thread: Some(thread),
            server_stop,
            server_task,
        })
    }

    /// Record that request `request` of `phase` completed, and take a sample right away on the
    /// sampler thread. Cheap and non-blocking.
    pub fn mark(&self, request: u64, phase: Phase) {
        self.store.mark(self.store.now_us(), request, phase);
        // The sampler may have stopped already; a lost nudge only costs one extra reading.
        let _ = self.tx.send(Msg::Sample);
    }

    /// A handle that marks requests from other tasks (cheap to clone, `Send`).
    pub fn marker(&self) -> Marker {
        Marker {
            store: self.store.clone(),
            tx: self.tx.clone(),
        }
    }

    /// Where the run stands: the phase, requests done in it, first and latest values of
    /// `metrics`. Cheap: nothing is copied but those values.
    pub fn progress(&self, metrics: &[&str]) -> Progress {
        self.store.progress(metrics)
    }

    /// Milliseconds since the tracker started (the timeline's clock).
    pub fn now_ms(&self) -> u64 {
        self.store.now_ms()
    }

    /// A copy of what was recorded so far.
    pub fn snapshot(&self) -> Timeline {
        self.store.snapshot()
    }

    /// Stop every source (after one last sample) and return the timeline.
    pub async fn finish(mut self) -> Timeline {
        self.stop_thread();
        if let Some(stop) = self.server_stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.server_task.take() {
            // The poller checks its stop signal between requests of at most ~1 s.
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        if let Some(error) = self.store.flush() {
            self.store
                .set_source(status("raw files", false, Some(error)));
        }
        self.store.snapshot()
    }

    fn stop_thread(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MemoryTracker {
    fn drop(&mut self) {
        self.stop_thread();
        if let Some(stop) = self.server_stop.take() {
            let _ = stop.send(true);
        }
    }
}

fn status(name: &str, available: bool, note: Option<String>) -> SourceStatus {
    SourceStatus {
        name: name.into(),
        available,
        note,
        errors: 0,
    }
}
