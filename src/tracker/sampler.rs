//! The sampling threads. The fast one reads host RSS (procfs `statm`) and GPU memory (NVML) on a
//! regular tick and right after every mark, so every request has a reading taken just after it
//! completed. The slow one reads PSS/USS (`smaps_rollup`: ≈ 15 ms per GiB resident) and
//! `/dev/shm` (a folder scan and the tree's `maps`) at their own pace, so a slow read never holds
//! up a request's reading. Every reading is stamped when it is complete: it is credited to the
//! last request that completed before it was taken in full, never to an earlier one whose
//! window it does not belong to.

use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use super::source::MemorySource;
use super::{ProcessInfo, Store, host, status};
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
    /// Process descriptions (names, roles) of the tree.
    pub(super) host: host::HostSource,
    /// The fast sources ([`Pace::Fast`](super::source::Pace::Fast)), read together.
    pub(super) fast: Vec<Box<dyn MemorySource>>,
    pub(super) interval: Duration,
    pub(super) pids: Vec<u32>,
    /// The slow thread's work, handed over when the fast thread starts.
    pub(super) slow: Option<Slow>,
    /// The tree's live pids, shared with the slow thread.
    pub(super) shared_pids: Arc<Mutex<Vec<u32>>>,
}

/// The slow readings (`/dev/shm` every tick, PSS/USS at their own pace), each at its own
/// timestamp.
pub(super) struct Slow {
    pub(super) store: Store,
    pub(super) sources: Vec<Box<dyn MemorySource>>,
    pub(super) interval: Duration,
    pub(super) pids: Arc<Mutex<Vec<u32>>>,
}

impl Slow {
    fn run(mut self, rx: mpsc::Receiver<()>) {
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
            for source in &mut self.sources {
                let mut out = Vec::new();
                let errors = source.sample(&pids, &mut out, last);
                if errors > 0 {
                    self.store.source_errors(source.name(), errors);
                }
                if !out.is_empty() {
                    self.store.push(self.store.now_us(), out);
                }
            }
            if last {
                break;
            }
        }
        for source in &self.sources {
            source.finish(&self.store);
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
        for source in &self.fast {
            source.finish(&self.store);
        }
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
        for source in &mut self.fast {
            let errors = source.sample(&self.pids, &mut out, false);
            if errors > 0 {
                self.store.source_errors(source.name(), errors);
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
