//! Synthetic memory series with a documented noise model, for calibration.
//!
//! Every shape is a pure function of its parameters and a seeded generator, so a calibration
//! table can be regenerated bit for bit. Values are bytes after each measured request.
//!
//! Host RSS (`host.rss@*`): a base of 1.5–2.5 GiB, white Gaussian jitter with σ drawn from
//! 2–12 KiB per run, and allocator steps arriving at 2 per 100 requests on average, each moving
//! the heap to one of four levels 0.3–0.6 MiB apart (arenas grow and are trimmed: the heap
//! wanders within a bound, it does not drift — drift that never stops is what a leak is).
//!
//! Every run also has a cooldown (five readings after the load and the engine's cache flush):
//! where the process stands then. Python servers rarely hand memory back, so for most shapes
//! the cooldown is the last level; a collector's sawtooth and a flushable cache give theirs back.
//! GPU (`gpu.proc@*`): readings are exact (NVML reports what the caching allocator reserved),
//! a base of 18–22 GiB, and transients: with probability 5% per request an extra 20–500 MiB
//! held for 1–3 readings (a large batch allocated and freed with `empty_cache`).

use rand::{Rng, RngCore};

use crate::util::{GIB, KIB, MIB};

/// A synthetic series shape: negatives (clean servers) and positives (planted leaks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Host: jitter only.
    HostWhite,
    /// Host: jitter and allocator steps.
    HostAllocatorSteps,
    /// Host: a cache filling at 64 KiB–1 MiB/request until 10–45% of the run, then flat.
    HostBoundedCache,
    /// Host: a cache still filling until 50–80% of the run (a stress case: too short a run
    /// to tell from a leak that stopped).
    HostLateCache,
    /// Host: a cache filling at 64 KiB–1 MiB/request until `at` of the run (±2.5 %), then
    /// exactly flat: a bounded cache, named as a plateau when the flat stretch is long enough.
    HostPlateau {
        /// Where the growth stops, as a share of the run.
        at: f64,
    },
    /// Host: garbage-collection sawtooth, 1–4 MiB high, every 8–40 requests.
    HostSawtoothGc,
    /// Host: a one-off step of 8–64 MiB within the first 8 measured requests.
    HostWarmupStep,
    /// Host: a steady leak of `per_request` bytes, on top of jitter, allocator steps and (in
    /// half the runs) a warm-up step.
    HostLeak {
        /// Leaked bytes per request.
        per_request: f64,
    },
    /// GPU: flat with alloc-and-free transients.
    GpuAllocFree,
    /// GPU: 1–3 allocator segments (20 MiB) grabbed within the first 10 requests.
    GpuWarmupStep,
    /// GPU: one 20 MiB segment grabbed once, anywhere between 20% and 90% of the run.
    GpuMidRunSegment,
    /// GPU: leaked demand grows `per_request` bytes per request (each request leaking
    /// 0.5–1.5× that), but NVML sees it only as the caching allocator reserves whole
    /// `segment`-sized blocks (2 MiB for small allocations, 20 MiB for large ones).
    GpuLeak {
        /// Mean leaked bytes per request.
        per_request: f64,
        /// Allocator segment size in bytes.
        segment: f64,
    },
    /// Host: growth that slows down as a server warms up — 1–6 MiB in all, approached as
    /// 1 − e^(−i/τ) with τ 10–60 requests (buffers sized on use, lazily built tables).
    HostDecelerating,
    /// Host: a collector's sawtooth on a busy machine: 1–8 MiB high, a period of 8–40 requests
    /// that varies ±50 % from cycle to cycle, each trough up to 1 MiB off (allocator jitter);
    /// the cooldown's flush collects it.
    HostSawtoothBusy,
    /// Host: a cache with no cap, 64 KiB–1 MiB per request, that the cooldown's flush empties.
    HostFlushableCache,
    /// Host: the `error_paths` request mix (seven kinds beside plain), clean.
    HostMixClean,
    /// Host: the `error_paths` mix where only `reject-long-prompt` requests (one in ten) keep
    /// `per_request` bytes each.
    HostKindLeak {
        /// Bytes kept per rejected request.
        per_request: f64,
    },
    /// Host: a real engine's noise — the residuals of a clean run, resampled in blocks of 10
    /// on top of that run's own slope — plus `per_request` planted bytes (0: clean).
    Recorded {
        /// Whose residuals.
        noise: RecordedNoise,
        /// Planted leak, bytes per request (0 for the clean row).
        per_request: f64,
    },
}

/// Residuals of clean runs of real engines on this project's CPU machine (`fixtures/noise/`,
/// written by `scripts/extract-noise.py` from the runs' JSON reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedNoise {
    /// SGLang 0.5.23 on CPU, tiny-llama, text: the whole tree.
    SglangCpuTextTree,
    /// The same run's scheduler process.
    SglangCpuTextScheduler,
    /// SGLang 0.5.23 on CPU, tiny Qwen2.5-VL, a unique image per request: the whole tree.
    SglangCpuVlmImageTree,
    /// vLLM 0.32.0 on CPU, tiny-llama, text: the whole tree.
    VllmCpuTextTree,
    /// vLLM 0.32.0 on CPU, tiny Qwen2-VL, a unique image per request (cache off): the tree.
    VllmCpuVlmImageTree,
    /// The same run's EngineCore process.
    VllmCpuVlmImageEngineCore,
    /// SGLang 0.5.23 on CPU, tiny-llama, text, 1200 requests (2026-12-07, a busy machine): the
    /// tree after its warm-up (the second half of the run).
    SglangCpuText1200Tree,
    /// The same run's scheduler (judged from request 600: its growth slowed down).
    SglangCpuText1200Scheduler,
    /// The same run's tokenizer manager (a steady creep of ~0.5 KiB/request).
    SglangCpuText1200TokenizerManager,
}

impl RecordedNoise {
    /// Every recording, in table order.
    pub const ALL: [RecordedNoise; 9] = [
        RecordedNoise::SglangCpuTextTree,
        RecordedNoise::SglangCpuTextScheduler,
        RecordedNoise::SglangCpuVlmImageTree,
        RecordedNoise::VllmCpuTextTree,
        RecordedNoise::VllmCpuVlmImageTree,
        RecordedNoise::VllmCpuVlmImageEngineCore,
        RecordedNoise::SglangCpuText1200Tree,
        RecordedNoise::SglangCpuText1200Scheduler,
        RecordedNoise::SglangCpuText1200TokenizerManager,
    ];

    /// Whether the recording's slope is a steady state (a long run judged after its warm-up),
    /// so the clean row grows at it; the 300-request recordings' slopes still hold part of the
    /// warm-up (their growth slowed down later), so their clean rows are the residuals alone.
    fn steady(self) -> bool {
        matches!(
            self,
            RecordedNoise::SglangCpuText1200Tree
                | RecordedNoise::SglangCpuText1200Scheduler
                | RecordedNoise::SglangCpuText1200TokenizerManager
        )
    }

    /// Short name for the table.
    pub fn name(self) -> &'static str {
        match self {
            RecordedNoise::SglangCpuTextTree => "SGLang CPU text, tree",
            RecordedNoise::SglangCpuTextScheduler => "SGLang CPU text, scheduler",
            RecordedNoise::SglangCpuVlmImageTree => "SGLang CPU unique images, tree",
            RecordedNoise::VllmCpuTextTree => "vLLM CPU text, tree",
            RecordedNoise::VllmCpuVlmImageTree => "vLLM CPU unique images, tree",
            RecordedNoise::VllmCpuVlmImageEngineCore => "vLLM CPU unique images, EngineCore",
            RecordedNoise::SglangCpuText1200Tree => "SGLang CPU text 1200, tree",
            RecordedNoise::SglangCpuText1200Scheduler => "SGLang CPU text 1200, scheduler",
            RecordedNoise::SglangCpuText1200TokenizerManager => {
                "SGLang CPU text 1200, tokenizer manager"
            }
        }
    }

    fn text(self) -> &'static str {
        match self {
            RecordedNoise::SglangCpuTextTree => {
                include_str!("../../fixtures/noise/sglang-cpu-text-tree.csv")
            }
            RecordedNoise::SglangCpuTextScheduler => {
                include_str!("../../fixtures/noise/sglang-cpu-text-scheduler.csv")
            }
            RecordedNoise::SglangCpuVlmImageTree => {
                include_str!("../../fixtures/noise/sglang-cpu-vlm-image-tree.csv")
            }
            RecordedNoise::VllmCpuTextTree => {
                include_str!("../../fixtures/noise/vllm-cpu-text-tree.csv")
            }
            RecordedNoise::VllmCpuVlmImageTree => {
                include_str!("../../fixtures/noise/vllm-cpu-vlm-image-tree.csv")
            }
            RecordedNoise::VllmCpuVlmImageEngineCore => {
                include_str!("../../fixtures/noise/vllm-cpu-vlm-image-enginecore.csv")
            }
            RecordedNoise::SglangCpuText1200Tree => {
                include_str!("../../fixtures/noise/sglang-cpu-text-1200-tree.csv")
            }
            RecordedNoise::SglangCpuText1200Scheduler => {
                include_str!("../../fixtures/noise/sglang-cpu-text-1200-scheduler.csv")
            }
            RecordedNoise::SglangCpuText1200TokenizerManager => {
                include_str!("../../fixtures/noise/sglang-cpu-text-1200-tokenizer-manager.csv")
            }
        }
    }

    /// The slope a clean row grows at (the recorded steady slope, or 0) and the residuals.
    pub fn clean(self) -> (f64, Vec<f64>) {
        let (slope, residuals) = self.data();
        (if self.steady() { slope } else { 0.0 }, residuals)
    }

    /// The run's slope (bytes per request) and its residuals.
    pub fn data(self) -> (f64, Vec<f64>) {
        let mut slope = 0.0;
        let mut residuals = Vec::new();
        for line in self.text().lines() {
            if let Some(v) = line.strip_prefix("# slope_per_request:") {
                slope = v.trim().parse().unwrap_or(0.0);
            } else if !line.starts_with('#')
                && let Ok(v) = line.trim().parse::<f64>()
            {
                residuals.push(v);
            }
        }
        (slope, residuals)
    }
}

/// Block length of the residual bootstrap: keeps steps and short-range correlation.
const BLOCK: usize = 10;

impl Shape {
    /// The metric name the shape stands for.
    pub fn metric(&self) -> &'static str {
        match self {
            Shape::GpuAllocFree
            | Shape::GpuWarmupStep
            | Shape::GpuMidRunSegment
            | Shape::GpuLeak { .. } => "gpu.proc@tree",
            _ => "host.rss@tree",
        }
    }

    /// A short name for tables.
    pub fn name(&self) -> String {
        match self {
            Shape::HostWhite => "host: white jitter".into(),
            Shape::HostAllocatorSteps => "host: allocator steps".into(),
            Shape::HostBoundedCache => "host: bounded cache (plateau at 10–45%)".into(),
            Shape::HostLateCache => "host: late cache (plateau at 50–80%, stress)".into(),
            Shape::HostPlateau { at } => format!("host: plateau at {:.0}%", at * 100.0),
            Shape::Recorded { noise, per_request } if *per_request > 0.0 => {
                format!("{} + leak {:.0} KiB/req", noise.name(), *per_request / KIB)
            }
            Shape::Recorded { noise, .. } if noise.steady() => format!(
                "{} (recorded residuals + its steady {:.0} B/req)",
                noise.name(),
                noise.data().0
            ),
            Shape::Recorded { noise, .. } => format!("{} (recorded residuals)", noise.name()),
            Shape::HostSawtoothGc => "host: GC sawtooth".into(),
            Shape::HostDecelerating => "host: warm-up that slows down (1–6 MiB)".into(),
            Shape::HostSawtoothBusy => "host: GC sawtooth on a busy machine".into(),
            Shape::HostFlushableCache => "host: uncapped cache the flush empties".into(),
            Shape::HostMixClean => "host: error-paths mix, clean".into(),
            Shape::HostKindLeak { per_request } => format!(
                "host: error-paths mix, reject-long-prompt keeps {:.0} KiB each",
                per_request / KIB
            ),
            Shape::HostWarmupStep => "host: warm-up step".into(),
            Shape::HostLeak { per_request } => {
                format!("host leak {:.0} KiB/req", per_request / KIB)
            }
            Shape::GpuAllocFree => "gpu: alloc-and-free transients".into(),
            Shape::GpuWarmupStep => "gpu: warm-up segments".into(),
            Shape::GpuMidRunSegment => "gpu: one 20 MiB segment mid-run".into(),
            Shape::GpuLeak {
                per_request,
                segment,
            } => {
                format!(
                    "gpu leak {:.3} MiB/req, {:.0} MiB segments",
                    per_request / MIB,
                    segment / MIB
                )
            }
        }
    }

    /// Whether the shape plants a leak.
    pub fn is_leak(&self) -> bool {
        match self {
            Shape::HostLeak { .. } | Shape::GpuLeak { .. } | Shape::HostKindLeak { .. } => true,
            Shape::Recorded { per_request, .. } => *per_request > 0.0,
            _ => false,
        }
    }

    /// `n` readings of this shape drawn with `rng`.
    pub fn generate(&self, n: usize, rng: &mut impl RngCore) -> Vec<f64> {
        self.generate_long(n, n, rng)
    }

    /// The request mix the shape is sent with (`None`: plain requests only).
    pub fn mix(&self) -> Option<crate::load::Mix> {
        matches!(self, Shape::HostMixClean | Shape::HostKindLeak { .. })
            .then(crate::load::Mix::error_paths)
    }

    /// A whole run of the shape: `len` readings of the shape planned for `n` (see
    /// [`generate_long`](Self::generate_long)) and the cooldown readings after them.
    pub fn generate_run(
        &self,
        n: usize,
        len: usize,
        rng: &mut impl RngCore,
    ) -> (Vec<f64>, Vec<f64>) {
        let values = self.generate_long(n, len, rng);
        let given_back = match self {
            Shape::HostSawtoothBusy | Shape::HostFlushableCache => {
                // What the shape added is gone; the heap keeps its own level (the first reading's
                // neighbourhood) and up to a trough's jitter.
                let start = values.iter().take(5).copied().fold(f64::INFINITY, f64::min);
                Some(start + uniform(rng, 0.0, MIB))
            }
            _ => None,
        };
        let tail = &values[values.len().saturating_sub(5)..];
        let mut last: Vec<f64> = tail.to_vec();
        last.sort_unstable_by(f64::total_cmp);
        let level = given_back.unwrap_or_else(|| last.get(last.len() / 2).copied().unwrap_or(0.0));
        let cooldown = (0..5).map(|_| level + 4.0 * KIB * gaussian(rng)).collect();
        (values, cooldown)
    }

    /// `len` readings of the shape planned for `n` (positions such as "a plateau at 30 %" are
    /// shares of `n`): what an adaptive run that goes on past its planned count sees. The first
    /// `n` readings equal [`generate`](Self::generate)'s.
    pub fn generate_long(&self, n: usize, len: usize, rng: &mut impl RngCore) -> Vec<f64> {
        match *self {
            Shape::HostWhite => host(len, rng, 0.0, |_, _| 0.0),
            Shape::HostAllocatorSteps => host(len, rng, 2.0, |_, _| 0.0),
            Shape::HostBoundedCache | Shape::HostLateCache => {
                let (lo, hi) = if *self == Shape::HostBoundedCache {
                    (0.10, 0.45)
                } else {
                    (0.50, 0.80)
                };
                let rate = uniform(rng, 64.0 * KIB, MIB);
                let stop = uniform(rng, lo, hi) * n as f64;
                host(len, rng, 2.0, move |i, _| rate * (i as f64).min(stop))
            }
            Shape::HostPlateau { at } => {
                let rate = uniform(rng, 64.0 * KIB, MIB);
                let stop = uniform(rng, at - 0.025, at + 0.025) * n as f64;
                host(len, rng, 0.0, move |i, _| rate * (i as f64).min(stop))
            }
            Shape::HostSawtoothGc => {
                let amp = uniform(rng, MIB, 4.0 * MIB);
                let period = uniform(rng, 8.0, 40.0);
                let phase = uniform(rng, 0.0, period);
                host(len, rng, 2.0, move |i, _| {
                    amp * ((i as f64 + phase) % period) / period
                })
            }
            Shape::HostDecelerating => {
                let total = uniform(rng, MIB, 6.0 * MIB);
                let tau = uniform(rng, 10.0, 60.0);
                host(len, rng, 2.0, move |i, _| {
                    total * (1.0 - (-(i as f64) / tau).exp())
                })
            }
            Shape::HostSawtoothBusy => {
                let amp = uniform(rng, MIB, 8.0 * MIB);
                let period = uniform(rng, 8.0, 40.0);
                let (mut left, mut length, mut trough) = (0.0f64, 1.0f64, 0.0);
                host(len, rng, 2.0, move |_, rng| {
                    if left <= 0.0 {
                        length = (period * uniform(rng, 0.5, 1.5)).max(2.0);
                        left = length;
                        trough = uniform(rng, 0.0, MIB);
                    }
                    left -= 1.0;
                    trough + amp * (1.0 - left / length)
                })
            }
            Shape::HostFlushableCache => {
                let rate = uniform(rng, 64.0 * KIB, MIB);
                host(len, rng, 2.0, move |i, _| rate * i as f64)
            }
            Shape::HostMixClean => host(len, rng, 2.0, |_, _| 0.0),
            Shape::HostKindLeak { per_request } => {
                let mix = crate::load::Mix::error_paths();
                let mut kept = 0.0;
                host(len, rng, 2.0, move |i, _| {
                    if mix.kind_of(i as u64) == crate::load::RequestKind::RejectLongPrompt {
                        kept += per_request;
                    }
                    kept
                })
            }
            Shape::HostWarmupStep => {
                let size = uniform(rng, 8.0 * MIB, 64.0 * MIB);
                let at = rng.random_range(1..=8);
                host(len, rng, 2.0, move |i, _| if i >= at { size } else { 0.0 })
            }
            Shape::HostLeak { per_request } => {
                let warm = if rng.random::<bool>() {
                    uniform(rng, 8.0 * MIB, 64.0 * MIB)
                } else {
                    0.0
                };
                let at = rng.random_range(1..=8);
                host(len, rng, 2.0, move |i, _| {
                    per_request * i as f64 + if i >= at { warm } else { 0.0 }
                })
            }
            Shape::GpuAllocFree => gpu(len, rng, |_, _| 0.0),
            Shape::GpuWarmupStep => {
                let at: Vec<usize> = (0..rng.random_range(1..=3))
                    .map(|_| rng.random_range(0..10))
                    .collect();
                gpu(len, rng, move |i, _| {
                    20.0 * MIB * at.iter().filter(|a| i >= **a).count() as f64
                })
            }
            Shape::GpuMidRunSegment => {
                let at = (uniform(rng, 0.2, 0.9) * n as f64) as usize;
                gpu(len, rng, move |i, _| if i >= at { 20.0 * MIB } else { 0.0 })
            }
            Shape::Recorded { noise, per_request } => {
                let (slope, residuals) = noise.clean();
                recorded(len, rng, slope + per_request, &residuals)
            }
            Shape::GpuLeak {
                per_request,
                segment,
            } => {
                let mut demand = uniform(rng, 0.0, segment);
                gpu(len, rng, move |_, rng| {
                    demand += per_request * uniform(rng, 0.5, 1.5);
                    segment * (demand / segment).ceil()
                })
            }
        }
    }
}

/// A recorded run's noise: a base of 2.5–3.5 GiB, `slope` per request, and the residuals
/// resampled in blocks of [`BLOCK`] (a moving-block bootstrap).
fn recorded(len: usize, rng: &mut impl RngCore, slope: f64, residuals: &[f64]) -> Vec<f64> {
    let base = uniform(rng, 2.5 * GIB, 3.5 * GIB);
    let starts = residuals.len().saturating_sub(BLOCK).max(1);
    let mut noise = Vec::with_capacity(len);
    while noise.len() < len {
        let at = rng.random_range(0..starts);
        noise.extend(residuals.iter().skip(at).take(BLOCK));
        if residuals.is_empty() {
            noise.resize(len, 0.0);
        }
    }
    noise.truncate(len);
    noise
        .into_iter()
        .enumerate()
        .map(|(i, r)| base + slope * i as f64 + r)
        .collect()
}

/// Host RSS: base + jitter + allocator steps (`steps_per_100` on average) + `shape(i)`.
fn host<R: RngCore>(
    n: usize,
    rng: &mut R,
    steps_per_100: f64,
    mut shape: impl FnMut(usize, &mut R) -> f64,
) -> Vec<f64> {
    let base = uniform(rng, 1.5 * GIB, 2.5 * GIB);
    let sigma = uniform(rng, 2.0 * KIB, 12.0 * KIB);
    let spacing = uniform(rng, 0.3 * MIB, 0.6 * MIB);
    let mut level = 0.0;
    (0..n)
        .map(|i| {
            if rng.random::<f64>() < steps_per_100 / 100.0 {
                // To another of four levels: the heap grows and is trimmed within a bound.
                let to = rng.random_range(0..3u32);
                let current = (level / spacing).round() as u32;
                level = spacing * f64::from(if to >= current { to + 1 } else { to });
            }
            base + level + shape(i, rng) + sigma * gaussian(rng)
        })
        .collect()
}

/// GPU reserved memory: base + `shape(i)` + alloc-and-free transients, exact values.
fn gpu<R: RngCore>(n: usize, rng: &mut R, mut shape: impl FnMut(usize, &mut R) -> f64) -> Vec<f64> {
    let base = 2.0 * MIB * (uniform(rng, 18.0 * GIB, 22.0 * GIB) / (2.0 * MIB)).round();
    let mut transient = (0usize, 0.0);
    (0..n)
        .map(|i| {
            if transient.0 == 0 && rng.random::<f64>() < 0.05 {
                transient = (
                    rng.random_range(1..=3),
                    2.0 * MIB * (uniform(rng, 20.0, 500.0) / 2.0).round(),
                );
            }
            let extra = if transient.0 > 0 {
                transient.0 -= 1;
                transient.1
            } else {
                0.0
            };
            base + shape(i, rng) + extra
        })
        .collect()
}

fn uniform(rng: &mut impl RngCore, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Standard normal draw (Box–Muller; `rand_distr` is not a dependency).
fn gaussian(rng: &mut impl RngCore) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
