//! The memory sources the sampler reads: one trait ([`MemorySource`]), one list ([`SOURCES`]).
//!
//! Each source says how it is paced: [`Pace::Fast`] sources are read on every tick and right
//! after every request (host RSS, GPU memory: cheap, and each request needs its reading);
//! [`Pace::Slow`] ones on a thread of their own, so a slow read never holds up a request's
//! reading (`/dev/shm`, PSS/USS). A source is opened from the tracker's configuration when the
//! tracker starts (or not: off, unavailable), says so in its [`SourceStatus`], and is then read
//! with the tree's live pids.
//!
//! A new source (say cgroup `memory.current`) is one type implementing [`MemorySource`] plus one
//! opener in [`SOURCES`]. What its metrics are called and how the verdict floors them is the
//! metric naming's (`metric::Source`), which is not a registry yet.

use super::{GpuMode, GpuUnavailable, Reading, SourceStatus, Store, TrackerConfig, TrackerError};
use super::{gpu, host, shm, status};
use crate::fixture::ProcessTree;

/// How often a source is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Every tick and after every request, together with the other fast sources (one
    /// timestamp for all).
    Fast,
    /// On the slow thread, every tick, at its own timestamp; a source may skip ticks itself.
    Slow,
}

/// One reader of the server's memory.
pub(crate) trait MemorySource: Send {
    /// `host`, `gpu`, `shm`: the status it reports under.
    fn name(&self) -> &'static str;

    /// How often it is read.
    fn pace(&self) -> Pace;

    /// Reads `pids` (the tree's live processes) into `out`; `last` is the run's final reading (a
    /// source that skips ticks reads then). Returns the reads that failed (counted in its
    /// status).
    fn sample(&mut self, pids: &[u32], out: &mut Vec<Reading>, last: bool) -> u64;

    /// At the end of the run: anything its status should say now.
    fn finish(&self, _store: &Store) {}
}

/// What a source is opened with.
pub(crate) struct Open<'a> {
    pub(crate) config: &'a TrackerConfig,
    pub(crate) tree: Option<&'a ProcessTree>,
    pub(crate) store: &'a Store,
}

/// Opens one source (`None`: not read in this run, its status says why).
type Opener = fn(&Open<'_>) -> Result<Option<Box<dyn MemorySource>>, TrackerError>;

/// Every source, in the order they are read. **A new source: one line here.**
pub(crate) const SOURCES: &[Opener] = &[host_rss, gpu_memory, shm_segments, host_rollups];

/// The sources of a run, opened.
pub(crate) fn open(o: &Open<'_>) -> Result<Vec<Box<dyn MemorySource>>, TrackerError> {
    let mut sources = Vec::new();
    for opener in SOURCES {
        if let Some(s) = opener(o)? {
            sources.push(s);
        }
    }
    Ok(sources)
}

// ---- host: RSS every tick, PSS/USS at their own pace ----------------------------------------

fn host_rss(o: &Open<'_>) -> Result<Option<Box<dyn MemorySource>>, TrackerError> {
    Ok(o.tree
        .map(|_| Box::new(host::HostRss::new()) as Box<dyn MemorySource>))
}

impl MemorySource for host::HostRss {
    fn name(&self) -> &'static str {
        "host"
    }

    fn pace(&self) -> Pace {
        Pace::Fast
    }

    fn sample(&mut self, pids: &[u32], out: &mut Vec<Reading>, _last: bool) -> u64 {
        self.sample_rss(pids, out);
        0
    }
}

/// PSS/USS (`smaps_rollup`, ~36 ms on SGLang's CPU tree) takes at most 1/`ROLLUP_DUTY` of the
/// slow thread's time: after a read that took `d`, the next waits at least `(ROLLUP_DUTY - 1) × d`
/// (and `pss_every` ticks). Small servers read at the `pss_every` pace; a big one is not robbed of
/// the CPU it needs.
const ROLLUP_DUTY: u32 = 50;

/// PSS and USS of every process (and the host's headroom), at their own pace.
struct Rollups {
    pss_every: u32,
    tick: u32,
    next: std::time::Instant,
}

fn host_rollups(o: &Open<'_>) -> Result<Option<Box<dyn MemorySource>>, TrackerError> {
    Ok(o.tree.map(|_| {
        Box::new(Rollups {
            pss_every: o.config.pss_every.max(1),
            tick: 0,
            next: std::time::Instant::now(),
        }) as Box<dyn MemorySource>
    }))
}

impl MemorySource for Rollups {
    fn name(&self) -> &'static str {
        "host"
    }

    fn pace(&self) -> Pace {
        Pace::Slow
    }

    fn sample(&mut self, pids: &[u32], out: &mut Vec<Reading>, last: bool) -> u64 {
        let due =
            self.tick.is_multiple_of(self.pss_every) && std::time::Instant::now() >= self.next;
        self.tick = self.tick.wrapping_add(1);
        if due || last {
            let started = std::time::Instant::now();
            host::sample_rollups(pids, out);
            self.next = std::time::Instant::now() + started.elapsed() * (ROLLUP_DUTY - 1);
        }
        0
    }
}

// ---- GPU: NVML, per device and per process ----------------------------------------------------

fn gpu_memory(o: &Open<'_>) -> Result<Option<Box<dyn MemorySource>>, TrackerError> {
    let store = o.store;
    match o.config.gpu {
        GpuMode::Off => {
            store.set_source(status(
                "gpu",
                false,
                Some("GPU metrics off (not requested)".into()),
            ));
            Ok(None)
        }
        GpuMode::Auto | GpuMode::Required => {
            match gpu::GpuSource::open(o.config.visible_devices.as_deref()) {
                Ok(source) => {
                    store.set_source(status("gpu", true, Some(source.describe())));
                    Ok(Some(Box::new(source)))
                }
                Err(reason) if o.config.gpu == GpuMode::Required => {
                    Err(TrackerError::GpuUnavailable(GpuUnavailable { reason }))
                }
                Err(reason) => {
                    store.set_source(status("gpu", false, Some(reason)));
                    Ok(None)
                }
            }
        }
    }
}

impl MemorySource for gpu::GpuSource {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn pace(&self) -> Pace {
        Pace::Fast
    }

    fn sample(&mut self, pids: &[u32], out: &mut Vec<Reading>, _last: bool) -> u64 {
        gpu::GpuSource::sample(self, pids, out)
    }

    /// Say in the GPU status when per-process numbers were missing.
    fn finish(&self, store: &Store) {
        let mut note = self.describe();
        if self.per_process_disabled() {
            note.push_str("; per-process GPU memory off: the harness runs in a PID namespace (run the container with --pid=host)");
        } else if self.unavailable_ticks() > 0 {
            note.push_str(&format!(
                "; per-process GPU memory unavailable from this driver in {} samples (gpu.proc@tree left out there)",
                self.unavailable_ticks()
            ));
        }
        let errors = store
            .snapshot()
            .sources
            .iter()
            .find(|s| s.name == "gpu")
            .map_or(0, |s| s.errors);
        store.set_source(SourceStatus {
            name: "gpu".into(),
            available: true,
            note: Some(note),
            errors,
        });
    }
}

// ---- /dev/shm: the server's segments ---------------------------------------------------------

fn shm_segments(o: &Open<'_>) -> Result<Option<Box<dyn MemorySource>>, TrackerError> {
    let store = o.store;
    match &o.config.shm_dir {
        Some(dir) if dir.is_dir() => store.set_source(status(
            "shm",
            true,
            Some(format!(
                "{}: the server's segments (held by its processes or made during the run) are judged; the whole folder is shm.*@host, context only",
                dir.display()
            )),
        )),
        Some(dir) => store.set_source(status(
            "shm",
            false,
            Some(format!("{} does not exist", dir.display())),
        )),
        None => store.set_source(status("shm", false, Some("shm metrics off".into()))),
    }
    Ok(o.config.shm_dir.clone().map(|dir| {
        Box::new(shm::ShmSource::new(
            dir,
            o.tree.and_then(|t| t.ledger.as_ref()),
        )) as Box<dyn MemorySource>
    }))
}

impl MemorySource for shm::ShmSource {
    fn name(&self) -> &'static str {
        "shm"
    }

    fn pace(&self) -> Pace {
        Pace::Slow
    }

    fn sample(&mut self, pids: &[u32], out: &mut Vec<Reading>, _last: bool) -> u64 {
        shm::ShmSource::sample(self, pids, out);
        0
    }
}
