//! SGLang: everything the harness knows about it. Launched as
//! `<python> -m sglang.launch_server --model-path M --host 127.0.0.1 --port P
//! --mem-fraction-static 0.7 [extra args]`, plus what the CPU engine needs on [`Device::Cpu`];
//! its gauges, its processes' titles, the log lines of its own memory checks, and the caches the
//! presets switch off.

use super::idle::{Expect, IdleReading, IdleRoute, MetricsPage, value};
use super::{
    Cmdline, Device, Engine, EngineKnob, EngineSettings, Fold, Gauge, KnobKind, Preset, Role,
    Server, cpu_malloc_cache,
};
use crate::engine::{CacheGrowth, CacheInfo};
use crate::fixture::ServerSpec;
use crate::fixture::logwatch::{LogFinding::*, LogPattern, Needle::*, row};
use crate::util::{Invalid, Unit};

/// KV pool size (tokens) on CPU unless set: SGLang's default sizes the CPU pool from host RAM
/// (14.4 GB on a 24 GiB machine; the scheduler then holds 17.5 GiB and starts slowly).
pub const DEFAULT_CPU_MAX_TOTAL_TOKENS: u64 = 65_536;

/// `--mem-fraction-static` unless set.
const DEFAULT_MEM_FRACTION: f64 = 0.7;

/// SGLang (`python -m sglang.launch_server`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sglang;

/// SGLang's KV tokens in use (`num_used_tokens`).
pub const KV_TOKENS: &str = "server.kv_tokens@idle";
/// SGLang's running requests (`num_running_reqs`).
pub const RUNNING_REQS: &str = "server.running_reqs@idle";
/// Source name of `/v1/loads` readings.
pub const LOADS: &str = "/v1/loads";

/// SGLang's `/v1/loads` body: `{"loads": [{"num_used_tokens": …, "num_running_reqs": …,
/// "max_total_num_tokens": …}, …]}`, one entry per data-parallel rank.
///
/// # Errors
/// A sentence saying what is missing.
pub(crate) fn parse_loads(json: &serde_json::Value) -> Result<IdleReading, Invalid> {
    let loads = json
        .get("loads")
        .and_then(serde_json::Value::as_array)
        .ok_or("/v1/loads has no `loads` list")?;
    if loads.is_empty() {
        return Err("/v1/loads lists no scheduler".into());
    }
    let sum = |key: &str| -> Option<f64> {
        loads
            .iter()
            .map(|l| l.get(key).and_then(serde_json::Value::as_f64))
            .sum::<Option<f64>>()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let used = sum("num_used_tokens").ok_or("/v1/loads has no numeric `num_used_tokens`")?;
    let running = sum("num_running_reqs").ok_or("/v1/loads has no numeric `num_running_reqs`")?;
    let capacity = sum("max_total_num_tokens");
    Ok(IdleReading {
        source: LOADS.into(),
        values: vec![
            value(KV_TOKENS, Unit::Count, used, capacity, Expect::Baseline),
            value(RUNNING_REQS, Unit::Count, running, None, Expect::Zero),
        ],
    })
}

impl Server {
    /// An SGLang server for `model_path`, run by `python3`, with `--mem-fraction-static 0.7`.
    /// [`Device::Cpu`] adds `SGLANG_USE_CPU_ENGINE=1`, `--device cpu --attention-backend
    /// torch_native --sleep-on-idle` and `--max-total-tokens` (default
    /// [`DEFAULT_CPU_MAX_TOTAL_TOKENS`]); on a GPU SGLang sizes its KV pool from the memory share.
    pub fn sglang(model_path: impl Into<String>) -> Self {
        Server::new(&Sglang, model_path)
    }
}

impl Engine for Sglang {
    fn name(&self) -> &'static str {
        "sglang"
    }

    fn display_name(&self) -> &'static str {
        "SGLang"
    }

    fn knobs(&self) -> &'static [EngineKnob] {
        KNOBS
    }

    /// As the presets launch it: the caches that grow with unique input off (the radix cache;
    /// for VLMs the multimodal embedding cache, `SGLANG_VLM_CACHE_SIZE_MB=0`), metrics on, then
    /// the user's arguments.
    fn preset(&self, settings: &EngineSettings, preset: &Preset<'_>) -> Server {
        let mut args: Vec<String> = vec!["--disable-radix-cache".into(), "--enable-metrics".into()];
        if preset.language_model_only() {
            args.push("--language-model-only".into());
        }
        if let (true, Some(b)) = (preset.vlm, settings.value("mm_attention_backend")) {
            args.extend(["--mm-attention-backend".to_owned(), b.to_owned()]);
        }
        if let Some(level) = settings.value("sglang_log_level") {
            args.extend(["--log-level".to_owned(), level.to_owned()]);
        }
        args.extend(settings.args.iter().cloned());
        let mut server = Server::sglang(settings.model(preset.vlm)).with_args(args);
        if let Some(t) = settings
            .value("max_total_tokens")
            .and_then(|t| t.parse().ok())
        {
            server = server.with_max_total_tokens(t);
        }
        if preset.vlm {
            // SGLang's multimodal embedding cache (100 MB by default) fills with every unique
            // image and would read as growth: off, and named in the report.
            server = server.with_env("SGLANG_VLM_CACHE_SIZE_MB", "0");
        }
        preset.finish(server, settings)
    }

    fn argv(&self, server: &Server) -> Vec<String> {
        let mut args: Vec<String> = [
            "-m",
            "sglang.launch_server",
            "--model-path",
            &server.model_path,
            "--host",
            "{host}",
            "--port",
            "{port}",
            "--mem-fraction-static",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        args.push(
            server
                .mem_fraction()
                .unwrap_or(DEFAULT_MEM_FRACTION)
                .to_string(),
        );
        let tokens = match server.device() {
            Device::Cpu => Some(
                server
                    .max_total_tokens()
                    .unwrap_or(DEFAULT_CPU_MAX_TOTAL_TOKENS),
            ),
            Device::Gpu => server.max_total_tokens(),
        };
        if server.device() == Device::Cpu {
            args.extend(
                [
                    "--device",
                    "cpu",
                    "--attention-backend",
                    "torch_native",
                    // Without it the idle scheduler busy-polls a whole core.
                    "--sleep-on-idle",
                ]
                .map(str::to_owned),
            );
        }
        if let Some(t) = tokens {
            args.extend(["--max-total-tokens".to_owned(), t.to_string()]);
        }
        args.extend(server.args().iter().cloned());
        args
    }

    /// Ready when `GET /health` answers 200 (SGLang answers 503 until its own warm-up request
    /// is done); on the CPU, `SGLANG_USE_CPU_ENGINE=1`.
    fn launch(&self, server: &Server, spec: ServerSpec) -> ServerSpec {
        match server.device() {
            Device::Cpu => spec.with_env("SGLANG_USE_CPU_ENGINE", "1"),
            Device::Gpu => spec,
        }
    }

    fn module(&self) -> &'static str {
        "sglang"
    }

    fn install_hint(&self, python: &str) -> String {
        format!(
            "Install it (`{python} -m pip install \"sglang[all]\"`, or scripts/setup-sglang-cpu.sh for the CPU), or set MEMTEST_PYTHON (--python) to the interpreter that has it"
        )
    }

    fn gauges(&self) -> &'static [Gauge] {
        GAUGES
    }

    /// `/v1/loads`: `loads[].num_used_tokens`, `num_running_reqs`, `max_total_num_tokens` per
    /// data-parallel rank, summed. Fresh at idle: the scheduler publishes its load snapshot
    /// whenever it goes idle.
    fn idle_route(&self) -> Option<IdleRoute> {
        Some(IdleRoute {
            path: LOADS,
            parse: parse_loads,
        })
    }

    /// `sglang:num_used_tokens` / `sglang:num_running_reqs` (updated when the scheduler logs or
    /// goes idle), with `sglang:max_total_num_tokens` as the capacity.
    fn idle_from_metrics(&self, page: &MetricsPage<'_>) -> Option<IdleReading> {
        let get = page.gauge;
        let (used, running) = (
            get("server.num_used_tokens")?,
            get("server.num_running_reqs")?,
        );
        Some(IdleReading {
            source: "/metrics (sglang)".into(),
            values: vec![
                value(
                    KV_TOKENS,
                    Unit::Count,
                    used,
                    get("server.max_total_num_tokens"),
                    Expect::Baseline,
                ),
                value(RUNNING_REQS, Unit::Count, running, None, Expect::Zero),
            ],
        })
    }

    fn idle_metrics_hint(&self) -> Option<&'static str> {
        Some("sglang:num_used_tokens")
    }

    /// The launcher (`python -m sglang.launch_server`, or `sglang serve`) runs the HTTP server
    /// and the TokenizerManager in one process, where image preprocessing happens (#9365's leak
    /// lived there); its children set titles `sglang::scheduler` (`_TP0`… with several ranks),
    /// `sglang::detokenizer`, `sglang::data_parallel_controller`.
    fn role(&self, cmd: &Cmdline<'_>) -> Option<String> {
        if let Some(role) = cmd.titled("sglang::") {
            return Some(role);
        }
        let launcher = cmd.module == Some("sglang.launch_server")
            || (cmd.program == "sglang" && cmd.sub == Some("serve"));
        launcher.then(|| "tokenizer_manager".into())
    }

    fn log_patterns(&self) -> &'static [LogPattern] {
        PATTERNS
    }

    fn caches(&self, server: &Server, vlm: bool, images: bool) -> Vec<CacheInfo> {
        let mut caches = sglang_caches(vlm, server.device());
        let overridden = server
            .env()
            .iter()
            .rfind(|(k, _)| k == "SGLANG_VLM_CACHE_SIZE_MB");
        if let (Some((_, mb)), Some(c)) = (
            overridden,
            caches.iter_mut().find(|c| c.name.starts_with("multimodal")),
        ) && mb != "0"
        {
            c.state = format!("on, {mb} MB");
            c.flag = Some(format!("SGLANG_VLM_CACHE_SIZE_MB={mb}"));
            c.growth =
                images.then(|| {
                    CacheGrowth {
                grows_with: "every unique image".into(),
                cap_bytes: mb.trim().parse::<f64>().ok().map(|m| (m * 1048576.0) as u64),
                held_by: vec!["scheduler".into()],
                off: "SGLANG_VLM_CACHE_SIZE_MB=0 (the preset's; drop the --server-env that set it)"
                    .into(),
            }
                });
        }
        caches
    }
}

/// The engine caches the presets switch off for SGLang (named in the report), and on the CPU
/// the allocator setting of [`CPU_MALLOC_ENV`](super::CPU_MALLOC_ENV).
pub fn sglang_caches(vlm: bool, device: Device) -> Vec<CacheInfo> {
    let mut caches = vec![CacheInfo {
        name: "radix (prefix) cache".into(),
        state: "off".into(),
        flag: Some("--disable-radix-cache".into()),
        growth: None,
    }];
    if vlm {
        caches.push(CacheInfo {
            name: "multimodal embedding cache".into(),
            state: "off".into(),
            flag: Some("SGLANG_VLM_CACHE_SIZE_MB=0".into()),
            growth: None,
        });
    }
    if device == Device::Cpu {
        caches.push(cpu_malloc_cache());
    }
    caches
}

/// SGLang's gauges, from `python/sglang/srt/metrics/collector.py` (sgl-project/sglang,
/// SchedulerMetricsCollector).
const GAUGES: &[Gauge] = &[
    gauge(
        "sglang_num_running_reqs",
        "server.num_running_reqs",
        Fold::Sum,
    ),
    gauge("sglang_num_queue_reqs", "server.num_queue_reqs", Fold::Sum),
    gauge(
        "sglang_num_used_tokens",
        "server.num_used_tokens",
        Fold::Sum,
    ),
    gauge(
        "sglang_max_total_num_tokens",
        "server.max_total_num_tokens",
        Fold::Sum,
    ),
    gauge("sglang_token_usage", "server.token_usage", Fold::Mean),
    gauge("sglang_cache_hit_rate", "server.cache_hit_rate", Fold::Mean),
];

const fn gauge(prometheus: &'static str, metric: &'static str, fold: Fold) -> Gauge {
    Gauge {
        prometheus,
        metric,
        fold,
    }
}

/// The log lines of SGLang's own memory checks, from SGLang 0.5.23
/// (`scheduler_components/invariant_checker.py`, `scheduler.py`, `mem_cache/allocation.py`,
/// `model_executor/pool_configurator.py`).
const PATTERNS: &[LogPattern] = &[
    row(
        "sglang",
        Contains("memory leak detected"),
        Leak,
        Some("scheduler"),
        "idle self-check of the KV and request pools: `pool memory leak detected!`, `req_to_token_pool memory leak detected!` (older: `token_to_kv_pool_allocator memory leak detected!`); raised unless SGLANG_ENABLE_STRICT_MEM_CHECK_DURING_IDLE=0",
    ),
    row(
        "sglang",
        Contains("mem leak detected"),
        Leak,
        Some("scheduler"),
        "busy self-check (SGLANG_ENABLE_STRICT_MEM_CHECK_DURING_BUSY): `Full Pool Mem Leak Detected!`, `SWA Pool Mem Leak Detected!`",
    ),
    row(
        "sglang",
        Contains("kv double free"),
        Leak,
        Some("scheduler"),
        "KV page invariants (SGLANG_CHECK_KV_PAGE_INVARIANTS): `KV double free`",
    ),
    row(
        "sglang",
        Contains("kv page use-after-free"),
        Leak,
        Some("scheduler"),
        "KV page invariants: `KV page use-after-free`",
    ),
    row(
        "sglang",
        Contains("kv cache pool is full"),
        KvPoolFull,
        Some("scheduler"),
        "decode retraction: `KV cache pool is full. Retract requests.` (and beam search aborts)",
    ),
    row(
        "sglang",
        Contains("out of memory. try to lower your batch size"),
        OutOfMemory,
        Some("scheduler"),
        "KV allocation failed: `Prefill out of memory.` / `Decode out of memory.` / `Out of memory. Try to lower your batch size.`",
    ),
    row(
        "sglang",
        Contains("out of memory even after retracting"),
        OutOfMemory,
        Some("scheduler"),
        "retraction could not free enough KV cache",
    ),
    row(
        "sglang",
        Contains("alloc_req_slots runs out of memory"),
        OutOfMemory,
        Some("scheduler"),
        "no request slot left (`--max-running-requests`)",
    ),
    row(
        "sglang",
        Contains("not enough memory. please try to increase --mem-fraction-static"),
        OutOfMemory,
        Some("scheduler"),
        "the KV pool does not fit at startup",
    ),
];

/// SGLang's knobs: the unprefixed names, SGLang being the default engine.
const KNOBS: &[EngineKnob] = &[
    EngineKnob {
        name: "model",
        env: "MEMTEST_MODEL",
        flag: Some("model"),
        value_name: "MODEL",
        default: "the scenario's own (text_model / vlm_model)",
        help: "Launch SGLang with this model path or Hugging Face id, for every scenario (text_model and vlm_model win for theirs).",
        kind: KnobKind::Value,
        role: Role::Model,
        elsewhere: None,
    },
    EngineKnob {
        name: "text_model",
        env: "MEMTEST_TEXT_MODEL",
        flag: Some("text-model"),
        value_name: "MODEL",
        default: "meta-llama/Llama-3.2-1B-Instruct",
        help: "The model of text scenarios (text_model).",
        kind: KnobKind::Value,
        role: Role::TextModel,
        elsewhere: None,
    },
    EngineKnob {
        name: "vlm_model",
        env: "MEMTEST_VLM_MODEL",
        flag: Some("vlm-model"),
        value_name: "MODEL",
        default: "Qwen/Qwen2.5-VL-3B-Instruct",
        help: "The model of VLM scenarios (vlm_no_mm_processor, vlm_image).",
        kind: KnobKind::Value,
        role: Role::VlmModel,
        elsewhere: None,
    },
    EngineKnob {
        name: "python",
        env: "MEMTEST_PYTHON",
        flag: Some("python"),
        value_name: "PATH",
        default: "python3",
        help: "The Python interpreter that has SGLang.",
        kind: KnobKind::Value,
        role: Role::Python,
        elsewhere: None,
    },
    EngineKnob {
        name: "max_total_tokens",
        env: "MEMTEST_MAX_TOTAL_TOKENS",
        flag: Some("max-total-tokens"),
        value_name: "N",
        default: "65536 on CPU, SGLang's choice on GPU",
        help: "SGLang's --max-total-tokens: the KV pool's size in tokens.",
        kind: KnobKind::Value,
        role: Role::Value(|v| {
            crate::util::whole(v, 1, 1 << 40, "a KV pool size in tokens")
                .map(|n| n.to_string())
                .map_err(Invalid)
        }),
        elsewhere: None,
    },
    EngineKnob {
        name: "mm_attention_backend",
        env: "MEMTEST_MM_ATTENTION_BACKEND",
        flag: Some("mm-attention-backend"),
        value_name: "BACKEND",
        default: "SGLang's choice",
        help: "SGLang's --mm-attention-backend for VLM scenarios (the vision tower's attention: sdpa, fa3, triton_attn, …), as the seed tool's flag.",
        kind: KnobKind::Value,
        role: Role::Value(|v| {
            let v = v.trim();
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(Invalid::from(
                    "a backend name such as sdpa, fa3 or triton_attn",
                ));
            }
            Ok(v.to_owned())
        }),
        elsewhere: Some("an SGLang server: vLLM's own flags go in --vllm-arg / MEMTEST_VLLM_ARGS"),
    },
    EngineKnob {
        name: "sglang_log_level",
        env: "SGLANG_LOG_LEVEL",
        flag: Some("sglang-log-level"),
        value_name: "LEVEL",
        default: "SGLang's (info)",
        help: "SGLang's --log-level (debug, info, warning, error, critical); the seed tool's variable, read from the environment as it was.",
        kind: KnobKind::Value,
        role: Role::Value(|v| {
            let level = v.trim().to_ascii_lowercase();
            if !["debug", "info", "warning", "error", "critical"].contains(&level.as_str()) {
                return Err(Invalid::from("debug, info, warning, error or critical"));
            }
            Ok(level)
        }),
        elsewhere: None,
    },
    EngineKnob {
        name: "server_arg",
        env: "MEMTEST_SERVER_ARGS",
        flag: Some("server-arg"),
        value_name: "ARG",
        default: "none",
        help: "An extra SGLang argument, e.g. --server-arg=--tp-size=2 (repeatable; in the environment quotes group words, nothing is run through a shell).",
        kind: KnobKind::ShellList,
        role: Role::Arg,
        elsewhere: Some("an SGLang server: vLLM's arguments go in --vllm-arg / MEMTEST_VLLM_ARGS"),
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{StopOrder, WaitFor};

    #[test]
    fn argv_matches_the_launch_command() {
        let spec = Server::sglang("Qwen/Qwen2.5-0.5B")
            .with_python("/venv/bin/python")
            .with_args(["--disable-radix-cache"])
            .with_port(30000)
            .into_spec();
        assert_eq!(
            spec.argv().join(" "),
            "/venv/bin/python -m sglang.launch_server --model-path Qwen/Qwen2.5-0.5B --host \
             127.0.0.1 --port 30000 --mem-fraction-static 0.7 --disable-radix-cache"
        );
        assert_eq!(spec.name(), "sglang");
        assert_eq!(spec.waits, [WaitFor::http_ok("/health")]);
        assert!(
            spec.spawn_hint
                .as_deref()
                .is_some_and(|h| h.contains("import sglang"))
        );
        assert_eq!(spec.stop_order, StopOrder::RootFirst);
        assert!(!spec.env.iter().any(|(k, _)| k == "SGLANG_USE_CPU_ENGINE"));
    }

    #[test]
    fn cpu_device_adds_the_cpu_engine() {
        let spec = Server::sglang("/m")
            .with_device(Device::Cpu)
            .with_args(["--enable-metrics"])
            .with_port(1)
            .into_spec();
        assert_eq!(
            spec.argv().join(" "),
            "python3 -m sglang.launch_server --model-path /m --host 127.0.0.1 --port 1 \
             --mem-fraction-static 0.7 --device cpu --attention-backend torch_native \
             --sleep-on-idle --max-total-tokens 65536 --enable-metrics"
        );
        assert!(
            spec.env
                .contains(&("SGLANG_USE_CPU_ENGINE".to_owned(), "1".to_owned()))
        );
        assert!(
            spec.env
                .contains(&("MALLOC_MMAP_THRESHOLD_".to_owned(), "131072".to_owned()))
        );
        let spec = Server::sglang("/m")
            .with_device(Device::Cpu)
            .with_max_total_tokens(4096)
            .into_spec();
        assert!(spec.argv().join(" ").contains("--max-total-tokens 4096"));
        assert_eq!("CPU".parse::<Device>(), Ok(Device::Cpu));
        assert!("tpu".parse::<Device>().is_err());
    }
}
