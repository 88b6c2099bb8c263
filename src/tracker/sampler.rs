//! The sampling threads. The fast one reads host RSS (procfs `statm`) and GPU memory (NVML) on a
//! regular tick and right after every mark, so every request has a reading taken just after it
//! completed. The slow one reads PSS/USS (`smaps_rollup`: ≈ 15 ms per GiB resident) and
//! `/dev/shm` (a folder scan and the tree's `maps`) at their own pace, so a slow read never holds
//! up a request's reading. Every reading is stamped when it is complete: it is credited to the
//! last request that completed before it was taken in full, never to an earlier one whose
//! window it does not belong to.

use std::sync::{Arc, Mutex, PoisonError, mpsc};
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
    pub(super) interval: Duration,
    pub(super) pids: Vec<u32>,
    /// The slow thread's work, handed over when the fast thread starts.
    pub(super) slow: Option<Slow>,
    /// The tree's live pids, shared with the slow thread.
    pub(super) shared_pids: Arc<Mutex<Vec<u32>>>,
}

/// The slow readings: PSS/USS every `pss_every` ticks, `/dev/shm` every tick.
pub(super) struct Slow {
    pub(super) store: Store,
    pub(super) shm: Option<shm::ShmSource>,
    pub(super) rollups: bool,
    pub(super) pss_every: u32,
    pub(super) interval: Duration,
    pub(super) pids: Arc<Mutex<Vec<u32>>>,
}

/// PSS/USS (`smaps_rollup`, ~36 ms on SGLang's CPU tree) takes at most 1/`ROLLUP_DUTY` of the
/// slow thread's time: after a read that took `d`, the next waits at least `(ROLLUP_DUTY - 1) × d`
/// (and `pss_every` ticks). Small servers read at the `pss_every` pace; a big one is not robbed of
/// the CPU it needs. `/dev/shm` (judged per request) is read every tick.
const ROLLUP_DUTY: u32 = 50;

impl Slow {
    fn run(mut self, rx: mpsc::Receiver<()>) {
        let mut tick: u32 = 0;
        let mut next_rollup = std::time::Instant::now();
        loop {
            let last = match rx.recv_timeout(self.interval) {
                Err(mpsc::RecvTimeoutError::Timeout) => false,
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            };
            let pids = self
                .pids
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let mut out = Vec::new();
            if let Some(shm) = &mut self.shm {
                shm.sample(&pids, &mut out);
            }
            if !out.is_empty() {
                self.store
                    .push(self.store.now_us(), std::mem::take(&mut out));
            }
            let due = tick.is_multiple_of(self.pss_every.max(1))
                && std::time::Instant::now() >= next_rollup;
            if self.rollups && (due || last) {
                let started = std::time::Instant::now();
                host::sample_rollups(&pids, &mut out);
                self.store.push(self.store.now_us(), out);
                next_rollup = std::time::Instant::now() + started.elapsed() * (ROLLUP_DUTY - 1);
            }
            tick = tick.wrapping_add(1);
            if last {
                break;
            }
        }
    }
}

impl Sampler {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let (slow_tx, slow_rx) = mpsc::channel();
        let slow = self.slow.take().and_then(|slow| {
            std::thread::Builder::new()
                .name("memtest-sampler-slow".into())
                .spawn(move || slow.run(slow_rx))
                .map_err(|e| {
                    self.store.set_source(status(
                        "host",
                        self.tree.is_some(),
                        Some(format!(
                            "PSS/USS and /dev/shm not read: no thread for them ({e})"
                        )),
                    ));
                })
                .ok()
        });
        self.fast_loop(&rx);
        let _ = slow_tx.send(());
        if let Some(slow) = slow {
            let _ = slow.join();
        }
        self.note_gpu_gaps();
    }

    fn fast_loop(&mut self, rx: &mpsc::Receiver<Msg>) {
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
                        self.sample();
                        last_quick = Instant::now();
                    }
                }
                Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.refresh_tree();
                    self.sample();
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.refresh_tree();
                    self.sample();
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
        self.shared_pids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone_from(&self.pids);
        // Process sightings are kept in ms (enough for a lifetime; readings use µs).
        let t = self.store.now_ms();
        for info in self.host.describe_new(&self.pids, t) {
            self.store.saw_process(t, info.pid, || info.clone());
        }
        for &pid in &self.pids {
            self.store.saw_process(t, pid, || unreachable_info(pid, t));
        }
    }

    /// One sample of the fast sources, stamped once it is complete.
    fn sample(&mut self) {
        let mut out = Vec::new();
        if self.tree.is_some() {
            self.host.sample_rss(&self.pids, &mut out);
        }
        if let Some(gpu) = &mut self.gpu {
            let errors = gpu.sample(&self.pids, &mut out);
            if errors > 0 {
                self.store.source_errors("gpu", errors);
            }
        }
        self.store.push(self.store.now_us(), out);
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
