//! The server's shared state and the planting of leaks for one request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::children::{ChildCommand, ChildLink};
use super::gpu::GpuMemory;
use super::images::{self, ImageError, MmCache};
use super::memory::{BoundedCache, Leaks, alloc_written, trim};
use super::metrics::MetricsSnapshot;
use super::shm::ShmLeaker;
use super::{ReferenceArgs, ReferenceError};

/// Seed of the error-rate generator: fixed, so a run's failures are reproducible.
pub(crate) const ERROR_RATE_SEED: u64 = 0;

/// Seed of the `--jitter-bytes` sizes.
const JITTER_SEED: u64 = 1;

/// Token capacity the server claims (SGLang's `max_total_num_tokens`).
pub(crate) const TOKEN_CAPACITY: u64 = 4096;

/// Why a request failed while its memory was being planted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PlantError {
    /// A bad image: the client's fault (HTTP 400).
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Anything else: the server's fault (HTTP 500).
    #[error(transparent)]
    Server(#[from] ReferenceError),
}

/// Everything the handlers share.
pub(crate) struct State {
    pub(crate) args: ReferenceArgs,
    pub(crate) children: Vec<ChildLink>,
    leaks: Mutex<Leaks>,
    cache: Mutex<BoundedCache>,
    mm_cache: Mutex<MmCache>,
    gpu: Option<Arc<Mutex<GpuMemory>>>,
    shm: ShmLeaker,
    rng: Mutex<ChaCha8Rng>,
    /// `--sawtooth-bytes-per-request`: the garbage, its trough block and the periods.
    sawtooth: Mutex<Sawtooth>,
    /// `--jitter-bytes`: the block the last request holds, and the sizes' generator.
    jitter: Mutex<(Option<Box<[u8]>>, ChaCha8Rng)>,
    warmed: AtomicBool,
    child_leaked: AtomicU64,
    child_gpu_leaked: AtomicU64,
    /// Generate requests that got past parsing (drives --crash-after and request ids).
    pub(crate) arrivals: AtomicU64,
    pub(crate) finished: AtomicU64,
    pub(crate) running: AtomicU64,
    pub(crate) used_tokens: AtomicU64,
    pub(crate) prompt_tokens: AtomicU64,
    pub(crate) generation_tokens: AtomicU64,
    images_processed: AtomicU64,
    /// KV tokens finished requests never gave back (--leak-kv-tokens-per-request).
    leaked_kv_tokens: AtomicU64,
    log_line_printed: AtomicBool,
    /// Running generations (for `/abort_request`) and the error paths' counts.
    pub(crate) paths: super::generation::Paths,
    /// Bytes kept by the error-path leaks.
    path_leaked: AtomicU64,
}

/// Locks a mutex, carrying on if a panicking thread poisoned it: the data (byte blocks and
/// counters) stays consistent because every update is a single push or add.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl State {
    /// State for `args` with its children already spawned and, when the parent holds GPU
    /// leaks, its CUDA context.
    pub(crate) fn new(
        args: ReferenceArgs,
        children: Vec<ChildLink>,
        gpu: Option<GpuMemory>,
    ) -> Self {
        Self {
            cache: Mutex::new(BoundedCache::new(args.cache_cap_bytes)),
            mm_cache: Mutex::new(MmCache::new(args.mm_cache_cap_bytes)),
            args,
            children,
            leaks: Mutex::new(Leaks::default()),
            gpu: gpu.map(|g| Arc::new(Mutex::new(g))),
            shm: ShmLeaker::default(),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(ERROR_RATE_SEED)),
            jitter: Mutex::new((None, ChaCha8Rng::seed_from_u64(JITTER_SEED))),
            sawtooth: Mutex::new(Sawtooth::default()),
            warmed: AtomicBool::new(false),
            child_leaked: AtomicU64::new(0),
            child_gpu_leaked: AtomicU64::new(0),
            arrivals: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            running: AtomicU64::new(0),
            used_tokens: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            images_processed: AtomicU64::new(0),
            leaked_kv_tokens: AtomicU64::new(0),
            log_line_printed: AtomicBool::new(false),
            paths: super::generation::Paths::default(),
            path_leaked: AtomicU64::new(0),
        }
    }

    /// Whether this request should fail with HTTP 500 (--error-rate, seeded ChaCha8: draw a
    /// uniform number in [0, 1) per request and fail when it is below the rate).
    pub(crate) fn should_fail(&self) -> bool {
        let rate = self.args.error_rate;
        rate > 0.0 && lock(&self.rng).random::<f64>() < rate
    }

    /// One slice of `--leak-bytes-per-second`: kept in the parent, whatever the traffic.
    pub(crate) fn leak_time_slice(&self, bytes: u64) -> Result<(), ReferenceError> {
        let block = alloc_written(bytes)?;
        lock(&self.leaks).keep(block);
        Ok(())
    }

    /// Keeps `bytes` for one request that took an error path (a rejection, an abort, a
    /// disconnect, a finished stream): in the leak child if there is one, else here.
    pub(crate) async fn keep_for_path(&self, bytes: u64) -> Result<(), ReferenceError> {
        if bytes == 0 {
            return Ok(());
        }
        match self.leak_child() {
            Some(child) => {
                child.send(ChildCommand::Leak(bytes)).await?;
                self.child_leaked.fetch_add(bytes, Ordering::Relaxed);
            }
            None => {
                let block = alloc_written(bytes)?;
                lock(&self.leaks).keep(block);
            }
        }
        self.path_leaked.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    fn leak_child(&self) -> Option<&ChildLink> {
        self.args.leak_in_child.and_then(|i| self.children.get(i))
    }

    /// Plants this request's memory: decodes its images (leaking per processed image), the
    /// warm-up step, the per-request leak, the bounded cache, `/dev/shm` and the GPU.
    pub(crate) async fn plant(self: &Arc<Self>, images: Vec<String>) -> Result<(), PlantError> {
        let (processed, pixels) = if images.is_empty() {
            (0, 0)
        } else {
            // Decoding is CPU work: keep it off the async workers.
            let state = Arc::clone(self);
            tokio::task::spawn_blocking(move || state.process_images(&images))
                .await
                .map_err(|e| ReferenceError::Task {
                    message: e.to_string(),
                })??
        };
        if self.args.warmup_step_bytes > 0 && !self.warmed.swap(true, Ordering::SeqCst) {
            lock(&self.leaks).leak(self.args.warmup_step_bytes)?;
        }
        let host_leak = self.args.leak_bytes_per_request
            + processed * self.args.leak_bytes_per_image
            + pixels * self.args.leak_bytes_per_pixel;
        if host_leak > 0 {
            match self.leak_child() {
                Some(child) => {
                    child.send(ChildCommand::Leak(host_leak)).await?;
                    self.child_leaked.fetch_add(host_leak, Ordering::Relaxed);
                }
                None => {
                    // Allocate and write outside the lock; only the push is serialized.
                    let block = alloc_written(host_leak)?;
                    lock(&self.leaks).keep(block);
                }
            }
        }
        if self.args.cache_bytes_per_request > 0 {
            let block = alloc_written(self.args.cache_bytes_per_request)?;
            let evicted = lock(&self.cache).insert(block);
            if evicted > 0 {
                trim();
            }
        }
        if self.args.jitter_bytes > 0 {
            let size = lock(&self.jitter)
                .1
                .random_range(0..=self.args.jitter_bytes);
            let block = alloc_written(size)?;
            // The previous block is freed outside the lock (a large one is unmapped at once).
            let previous = lock(&self.jitter).0.replace(block);
            drop(previous);
            trim();
        }
        if self.args.sawtooth_bytes_per_request > 0 {
            let block = alloc_written(self.args.sawtooth_bytes_per_request)?;
            let collected = lock(&self.sawtooth).add(
                block,
                self.args.sawtooth_bytes_per_request,
                self.args.sawtooth_period,
            )?;
            if collected {
                trim();
            }
        }
        self.shm.leak(self.args.shm_leak_bytes_per_request)?;
        self.plant_gpu().await?;
        Ok(())
    }

    /// Decodes the images that miss the cache: how many were processed, and their pixels.
    fn process_images(&self, images: &[String]) -> Result<(u64, u64), ImageError> {
        let (mut processed, mut pixels) = (0, 0);
        for (index, source) in images.iter().enumerate() {
            let encoded = images::read_source(index, source)?;
            let key = images::key(&encoded);
            if lock(&self.mm_cache).lookup(key) {
                // A hit skips processing: no per-image leak, as in real engines.
                continue;
            }
            let rgb = images::decode(index, &encoded)?;
            processed += 1;
            pixels += rgb.len() as u64 / 3;
            if self.args.mm_cache_cap_bytes > 0 && lock(&self.mm_cache).insert(key, rgb) > 0 {
                trim();
            }
        }
        self.images_processed
            .fetch_add(processed, Ordering::Relaxed);
        Ok((processed, pixels))
    }

    async fn plant_gpu(&self) -> Result<(), ReferenceError> {
        let (leak, alloc) = (
            self.args.gpu_leak_bytes_per_request,
            self.args.gpu_alloc_bytes_per_request,
        );
        if leak == 0 && alloc == 0 {
            return Ok(());
        }
        if let Some(child) = self.leak_child() {
            if leak > 0 {
                child.send(ChildCommand::GpuLeak(leak)).await?;
                self.child_gpu_leaked.fetch_add(leak, Ordering::Relaxed);
            }
            if alloc > 0 {
                child.send(ChildCommand::GpuAlloc(alloc)).await?;
            }
            return Ok(());
        }
        let Some(gpu) = self.gpu.clone() else {
            return Err(ReferenceError::NoGpuSupport);
        };
        tokio::task::spawn_blocking(move || {
            let mut gpu = lock(&gpu);
            gpu.leak(leak)?;
            gpu.alloc_and_free(alloc)
        })
        .await
        .map_err(|e| ReferenceError::Task {
            message: e.to_string(),
        })?
    }

    /// Clears the bounded and image caches, returns freed memory to the OS, tells children.
    /// Leaked KV tokens come back too: SGLang's `/flush_cache` resets its KV allocator.
    pub(crate) async fn flush(&self) -> Result<(), ReferenceError> {
        self.leaked_kv_tokens.store(0, Ordering::Relaxed);
        lock(&self.cache).clear();
        lock(&self.mm_cache).clear();
        lock(&self.sawtooth).collect();
        trim();
        for child in &self.children {
            child.send(ChildCommand::Flush).await?;
        }
        Ok(())
    }

    /// Live byte counts for `/get_server_info` (handy for tests and for the tracker).
    pub(crate) fn live(&self) -> serde_json::Value {
        let gpu_leaked = self.gpu.as_ref().map_or(0, |g| lock(g).leaked_bytes())
            + self.child_gpu_leaked.load(Ordering::Relaxed);
        let mm = lock(&self.mm_cache);
        serde_json::json!({
            "pid": std::process::id(),
            "leaked_bytes": lock(&self.leaks).bytes(),
            "child_leaked_bytes": self.child_leaked.load(Ordering::Relaxed),
            "cache_bytes": lock(&self.cache).bytes(),
            "cache_entries": lock(&self.cache).len(),
            "mm_cache_bytes": mm.bytes(),
            "mm_cache_hits": mm.hits(),
            "images_processed": self.images_processed.load(Ordering::Relaxed),
            "shm_leaked_bytes": self.shm.bytes(),
            "shm_leaked_files": self.shm.files(),
            "gpu_leaked_bytes": gpu_leaked,
            "requests": self.finished.load(Ordering::Relaxed),
            "path_leaked_bytes": self.path_leaked.load(Ordering::Relaxed),
            "rejected": self.paths.rejected.load(Ordering::Relaxed),
            "aborted": self.paths.aborted.load(Ordering::Relaxed),
            "disconnected": self.paths.disconnected.load(Ordering::Relaxed),
            "streamed": self.paths.streamed.load(Ordering::Relaxed),
            "children": self.children.iter().map(|c| serde_json::json!({
                "pid": c.pid(), "title": c.title(),
            })).collect::<Vec<_>>(),
        })
    }

    /// Book-keeping of a finished generate request (`finished` is its 1-based count): the
    /// planted KV-token leak and the log line.
    pub(crate) fn request_finished(&self, finished: u64) {
        let kv = self.args.leak_kv_tokens_per_request;
        if kv > 0 {
            self.leaked_kv_tokens.fetch_add(kv, Ordering::Relaxed);
        }
        if self.args.log_line_after == Some(finished)
            || (self.args.log_line_after.is_none() && self.args.log_line.is_some() && finished == 1)
        {
            self.print_log_line();
        }
    }

    /// Prints --log-line on stderr, once.
    pub(crate) fn print_log_line(&self) {
        if let Some(line) = &self.args.log_line
            && !self.log_line_printed.swap(true, Ordering::SeqCst)
        {
            eprintln!("{line}");
        }
    }

    /// KV tokens in use: those of running requests and those leaked.
    fn kv_tokens_used(&self) -> u64 {
        self.used_tokens.load(Ordering::Relaxed) + self.leaked_kv_tokens.load(Ordering::Relaxed)
    }

    /// `/v1/loads` in SGLang's shape (one data-parallel rank).
    pub(crate) fn loads(&self) -> serde_json::Value {
        let m = self.metrics();
        serde_json::json!({
            "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            "version": format!("reference-{}", env!("CARGO_PKG_VERSION")),
            "accelerator": null,
            "num_accelerators": 1,
            "loads": [{
                "dp_rank": 0,
                "num_running_reqs": m.running_reqs,
                "num_waiting_reqs": m.queue_reqs,
                "num_used_tokens": m.used_tokens,
                "num_total_tokens": m.used_tokens,
                "max_total_num_tokens": m.max_total_num_tokens,
                "max_running_requests": 4096,
                "token_usage": m.token_usage,
                "cache_hit_rate": m.cache_hit_rate,
                "memory": {"weight_gb": 0.0, "kv_cache_gb": 0.0, "graph_gb": 0.0, "token_capacity": m.max_total_num_tokens},
            }],
        })
    }

    /// The values `/metrics` shows.
    pub(crate) fn metrics(&self) -> MetricsSnapshot {
        let used = self.kv_tokens_used();
        MetricsSnapshot {
            running_reqs: self.running.load(Ordering::Relaxed),
            used_tokens: used,
            token_usage: used as f64 / TOKEN_CAPACITY as f64,
            cache_hit_rate: lock(&self.mm_cache).hit_rate(),
            queue_reqs: 0,
            max_total_num_tokens: TOKEN_CAPACITY,
            prompt_tokens_total: self.prompt_tokens.load(Ordering::Relaxed),
            generation_tokens_total: self.generation_tokens.load(Ordering::Relaxed),
            requests_total: self.finished.load(Ordering::Relaxed),
            processes: std::iter::once((std::process::id(), "tokenizer_manager".to_owned()))
                .chain(
                    self.children
                        .iter()
                        .map(|c| (c.pid(), super::metrics::role_of(c.title()))),
                )
                .filter_map(|(pid, role)| Some((pid, role, super::metrics::resident_bytes(pid)?)))
                .collect(),
        }
    }
}

/// Seed of the sawtooth's periods and trough blocks.
const SAWTOOTH_SEED: u64 = 0x5A_u64;

/// A collector's sawtooth (`--sawtooth-bytes-per-request`): garbage that piles up and is freed
/// all at once, and the block a trough keeps (allocator jitter).
struct Sawtooth {
    garbage: Vec<Box<[u8]>>,
    trough: Option<Box<[u8]>>,
    /// Requests until the next collection.
    left: u64,
    rng: ChaCha8Rng,
}

impl Default for Sawtooth {
    fn default() -> Self {
        Self {
            garbage: Vec::new(),
            trough: None,
            left: 0,
            rng: ChaCha8Rng::seed_from_u64(SAWTOOTH_SEED),
        }
    }
}

impl Sawtooth {
    /// Adds one request's garbage; collects when the period is over. Whether it collected.
    fn add(
        &mut self,
        block: Box<[u8]>,
        per_request: u64,
        period: u64,
    ) -> Result<bool, ReferenceError> {
        self.garbage.push(block);
        if self.left == 0 {
            self.left = self.next_period(period);
        }
        self.left -= 1;
        if self.left > 0 {
            return Ok(false);
        }
        self.collect();
        let size = self.rng.random_range(0..=per_request * period / 4);
        self.trough = Some(alloc_written(size)?);
        Ok(true)
    }

    /// A period of `period` ± 25 %, at least 2.
    fn next_period(&mut self, period: u64) -> u64 {
        let spread = period / 4;
        self.rng
            .random_range(period - spread..=period + spread)
            .max(2)
    }

    /// Frees the garbage (the trough block stays: it is what the heap kept).
    fn collect(&mut self) {
        self.garbage = Vec::new();
    }
}
