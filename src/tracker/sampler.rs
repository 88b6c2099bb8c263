//! The sampling thread: host procfs, GPU through NVML and `/dev/shm`, on a regular tick and
//! right after every mark.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{ProcessInfo, SourceStatus, Store, gpu, host, shm, status};
use crate::fixture::ProcessTree;

/// What the tracker and its markers tell the sampler thread.
#[derive(Debug)]
pub(super) enum Msg {
    /// Take a sample now (a request completed).
    Sample,
    /// Take one last sample and end the thread.
    Stop,
}

/// The sources and their state, owned by the sampling thread.
pub(super) struct Sampler {
    pub(super) store: Store,
    pub(super) tree: Option<ProcessTree>,
    pub(super) host: host::HostSource,
    pub(super) gpu: Option<gpu::GpuSource>,
    pub(super) shm_dir: Option<PathBuf>,
    pub(super) interval: Duration,
    pub(super) pids: Vec<u32>,
}

impl Sampler {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut next = Instant::now();
        let mut last_quick = Instant::now() - self.interval;
        let host_note = |n: usize| Some(format!("{n} processes in the server's tree"));
        match &self.tree {
            Some(_) => self.store.set_source(status("host", true, None)),
            None => self.store.set_source(status(
                "host",
                false,
                Some("no server process to watch (attached by URL)".into()),
            )),
        }
        loop {
            let now = Instant::now();
            let msg = if now >= next {
                Err(mpsc::RecvTimeoutError::Timeout)
            } else {
                rx.recv_timeout(next - now)
            };
            match msg {
                Ok(Msg::Sample) => {
                    // Marks can come in bursts (concurrency > 1): one reading per ms is plenty.
                    if last_quick.elapsed() >= Duration::from_millis(1) {
                        self.sample(false);
                        last_quick = Instant::now();
                    }
                }
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.refresh_tree();
                    self.sample(true);
                    self.note_gpu_gaps();
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.refresh_tree();
                    self.sample(true);
                    if self.tree.is_some() {
                        let note = host_note(self.pids.len());
                        self.store.set_source(status("host", true, note));
                    }
                    self.store.flush_if_due();
                    next += self.interval;
                    if next < Instant::now() {
                        next = Instant::now() + self.interval;
                    }
                }
            }
        }
    }

    /// Say in the GPU status when per-process numbers were missing.
    fn note_gpu_gaps(&self) {
        let Some(gpu) = &self.gpu else { return };
        let mut note = gpu.describe();
        if gpu.per_process_disabled() {
            note.push_str("; per-process GPU memory off: the harness runs in a PID namespace (run the container with --pid=host)");
        } else if gpu.unavailable_ticks() > 0 {
            note.push_str(&format!(
                "; per-process GPU memory unavailable from this driver in {} samples (gpu.proc@tree left out there)",
                gpu.unavailable_ticks()
            ));
        }
        let errors = self
            .store
            .snapshot()
            .sources
            .iter()
            .find(|s| s.name == "gpu")
            .map_or(0, |s| s.errors);
        self.store.set_source(SourceStatus {
            name: "gpu".into(),
            available: true,
            note: Some(note),
            errors,
        });
    }

    fn refresh_tree(&mut self) {
        let Some(tree) = &self.tree else { return };
        self.pids = tree.pids();
        // Process sightings are kept in ms (enough for a lifetime; readings use µs).
        let t = self.store.now_ms();
        for info in self.host.describe_new(&self.pids, t) {
            self.store.saw_process(t, info.pid, || info.clone());
        }
        for &pid in &self.pids {
            self.store.saw_process(t, pid, || unreachable_info(pid, t));
        }
    }

    /// One sample of every source; `full` is a regular tick (shm, PSS at its rate).
    fn sample(&mut self, full: bool) {
        let t = self.store.now_us();
        let mut out = Vec::new();
        // Fast sources first, so their readings match the timestamp; PSS/USS last.
        if self.tree.is_some() {
            self.host.sample_rss(&self.pids, &mut out);
        }
        if let Some(gpu) = &mut self.gpu {
            let errors = gpu.sample(&self.pids, &mut out);
            if errors > 0 {
                self.store.source_errors("gpu", errors);
            }
        }
        if full && self.tree.is_some() {
            self.host.sample_rollups_if_due(&self.pids, &mut out);
        }
        if full && let Some(dir) = &self.shm_dir {
            out.extend(shm::readings(&shm::scan(dir)));
        }
        self.store.push(t, out);
    }
}

/// Placeholder for a PID whose details could not be read (it exited while being listed).
fn unreachable_info(pid: u32, t: u64) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid: 0,
        name: "?".into(),
        role: None,
        cmdline: String::new(),
        first_seen_ms: t,
        last_seen_ms: t,
    }
}
