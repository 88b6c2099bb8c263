//! Every knob of a scenario, once: its name, environment variable, flag, default, range and
//! what it does. The environment layer ([`ScenarioConfig::env_overrides`]), the CLI (its
//! flags are generated from [`KNOBS`]) and the builder's setters all go through
//! [`Knob::apply`], so a value is parsed and bounded in exactly one place.
//!
//! [`ScenarioConfig::env_overrides`]: super::ScenarioConfig::env_overrides

use std::path::PathBuf;
use std::time::Duration;

use super::{ScenarioConfig, TargetKind};
use crate::fixture::Device;
use crate::load::{Api, ImageFormat, ImageMode, ImageSource, images};
use crate::tracker::GpuMode;
use crate::tracker::metric::MetricPattern;
use crate::util::Secret;

/// How a knob takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnobKind {
    /// One value (`--num-requests 300`, `MEMTEST_NUM_REQUESTS=300`).
    Value,
    /// A switch: `--reference` on the command line, `1`/`0` in the environment.
    Switch,
    /// Repeatable on the command line (`--server-arg A --server-arg B`); in the environment one
    /// variable split like a shell would (`MEMTEST_SERVER_ARGS="A 'B C'"`), nothing expanded.
    ShellList,
    /// Repeatable on the command line; in the environment comma-separated.
    CommaList,
}

/// Which part of the configuration a knob belongs to (the CLI's help headings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Which server, and how it is launched.
    Server,
    /// What is sent.
    Requests,
    /// The images of `vlm-image`.
    Images,
    /// Sampling, thresholds, outputs.
    Verdict,
}

impl Group {
    /// The heading shown in `--help`.
    pub fn heading(self) -> &'static str {
        match self {
            Group::Server => "Server",
            Group::Requests => "Requests",
            Group::Images => "Images (vlm-image)",
            Group::Verdict => "Measurement, verdict and outputs",
        }
    }
}

/// One setting of a scenario.
pub struct Knob {
    /// The name (`num_requests`), as in errors and the builder's [`set`](ScenarioConfig::set).
    pub name: &'static str,
    /// The environment variable (`MEMTEST_NUM_REQUESTS`).
    pub env: &'static str,
    /// The command-line flag without dashes (`num-requests`); `None`: environment only.
    pub flag: Option<&'static str>,
    /// The value's placeholder in help (`N`, `SECONDS`).
    pub value_name: &'static str,
    /// The default, for a person.
    pub default: &'static str,
    /// What it does, in one sentence.
    pub help: &'static str,
    /// How it takes its value.
    pub kind: KnobKind,
    /// The help heading.
    pub group: Group,
    pub(crate) apply: fn(&mut ScenarioConfig, &str) -> Result<(), String>,
}

impl std::fmt::Debug for Knob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knob")
            .field("name", &self.name)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// The knob named `name`.
pub fn knob(name: &str) -> Option<&'static Knob> {
    KNOBS.iter().find(|k| k.name == name)
}

// ---- value parsers: each returns what would be accepted when the value is not ----------------

fn whole(v: &str, min: u64, max: u64, what: &str) -> Result<u64, String> {
    let expected = || format!("{what}, a whole number from {min} to {max}");
    let n: u64 = v.trim().replace('_', "").parse().map_err(|_| expected())?;
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(expected())
    }
}

fn seconds(v: &str, min: f64, max: f64) -> Result<Duration, String> {
    let expected = || {
        format!(
            "a number of seconds from {min} to {max} (e.g. 0.1), or a duration such as 500ms or 2m"
        )
    };
    let t = v.trim();
    let d = match t.parse::<f64>() {
        Ok(s) if s.is_finite() => Duration::try_from_secs_f64(s).map_err(|_| expected())?,
        _ => humantime::parse_duration(t).map_err(|_| expected())?,
    };
    let s = d.as_secs_f64();
    if (min..=max).contains(&s) {
        Ok(d)
    } else {
        Err(expected())
    }
}

fn fraction(v: &str, min: f64, max: f64) -> Result<f64, String> {
    let expected = || format!("a fraction from {min} to {max}");
    match v.trim().parse::<f64>() {
        Ok(f) if (min..=max).contains(&f) => Ok(f),
        _ => Err(expected()),
    }
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off` (empty: on, as a bare switch).
pub(crate) fn switch(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("1 or 0".into()),
    }
}

fn nonempty(v: &str, what: &str) -> Result<String, String> {
    let t = v.trim();
    if t.is_empty() {
        Err(format!("{what}, not empty"))
    } else {
        Ok(t.to_owned())
    }
}

/// A byte size: `65536`, `64KiB`, `64K`, `1.5MiB`, `2GB` (K/M/G are binary, as in the report).
pub fn parse_bytes(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.trim().parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then_some(n * mult)
}

fn image_size(v: &str) -> Result<(u32, u32), String> {
    let (min, max) = (images::MIN_SIDE, images::MAX_SIDE);
    let expected =
        || format!("WIDTHxHEIGHT with each side from {min} to {max} pixels, e.g. 448x448");
    let (w, h) = v.trim().split_once(['x', 'X']).ok_or_else(expected)?;
    let side = |s: &str| s.parse::<u32>().ok().filter(|n| (min..=max).contains(n));
    match (side(w), side(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(expected()),
    }
}

fn choose_target(c: &mut ScenarioConfig, kind: TargetKind) {
    c.choose(kind);
}

fn set_generated(c: &mut ScenarioConfig, f: impl FnOnce(&mut u32, &mut u32, &mut ImageFormat)) {
    if let ImageSource::Generated {
        width,
        height,
        format,
    } = &mut c.images.source
    {
        f(width, height, format);
    }
}

const SECS_DAY: f64 = 86_400.0;

/// Every knob, in the order they are applied and shown.
pub static KNOBS: &[Knob] = &[
    // ---- which server ----
    Knob {
        name: "reference",
        env: "MEMTEST_REFERENCE",
        flag: Some("reference"),
        value_name: "",
        default: "the CLI's target when no other is chosen",
        help: "Run against a freshly launched reference server (planted leaks on demand, no GPU, no Python).",
        kind: KnobKind::Switch,
        group: Group::Server,
        apply: |c, v| {
            if switch(v)? {
                choose_target(c, TargetKind::Reference);
            }
            Ok(())
        },
    },
    Knob {
        name: "reference_arg",
        env: "MEMTEST_REFERENCE_ARGS",
        flag: Some("reference-arg"),
        value_name: "ARG",
        default: "none",
        help: "A reference-server knob, e.g. --reference-arg=--leak-bytes-per-request=1048576 (repeatable; implies --reference).",
        kind: KnobKind::ShellList,
        group: Group::Server,
        apply: |c, v| {
            c.reference_args.push(v.to_owned());
            choose_target(c, TargetKind::Reference);
            Ok(())
        },
    },
    Knob {
        name: "reference_bin",
        env: "MEMTEST_REFERENCE_BIN",
        flag: Some("reference-bin"),
        value_name: "PATH",
        default: "found next to the running executable (cargo puts it there)",
        help: "The sglang-memtest executable that serves the reference server.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            let p = PathBuf::from(nonempty(v, "a path to the sglang-memtest executable")?);
            if !p.is_file() {
                return Err("the path of an existing sglang-memtest executable".into());
            }
            c.reference_bin = Some(p);
            Ok(())
        },
    },
    Knob {
        name: "model",
        env: "MEMTEST_MODEL",
        flag: Some("model"),
        value_name: "MODEL",
        default: "the scenario's own (text_model / vlm_model)",
        help: "Launch SGLang with this model path or Hugging Face id, for every scenario (text_model and vlm_model win for theirs).",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.sglang.model = Some(nonempty(v, "a model path or id")?);
            choose_target(c, TargetKind::Sglang);
            Ok(())
        },
    },
    Knob {
        name: "text_model",
        env: "MEMTEST_TEXT_MODEL",
        flag: Some("text-model"),
        value_name: "MODEL",
        default: "meta-llama/Llama-3.2-1B-Instruct",
        help: "The model of text scenarios (text_model).",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.sglang.text_model = Some(nonempty(v, "a model path or id")?);
            if c.workload.is_text() {
                choose_target(c, TargetKind::Sglang);
            }
            Ok(())
        },
    },
    Knob {
        name: "vlm_model",
        env: "MEMTEST_VLM_MODEL",
        flag: Some("vlm-model"),
        value_name: "MODEL",
        default: "Qwen/Qwen2.5-VL-3B-Instruct",
        help: "The model of VLM scenarios (vlm_no_mm_processor, vlm_image).",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.sglang.vlm_model = Some(nonempty(v, "a model path or id")?);
            if !c.workload.is_text() {
                choose_target(c, TargetKind::Sglang);
            }
            Ok(())
        },
    },
    Knob {
        name: "python",
        env: "MEMTEST_PYTHON",
        flag: Some("python"),
        value_name: "PATH",
        default: "python3",
        help: "The Python interpreter that has SGLang.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.sglang.python = PathBuf::from(nonempty(v, "an interpreter path or name")?);
            Ok(())
        },
    },
    Knob {
        name: "device",
        env: "MEMTEST_DEVICE",
        flag: Some("device"),
        value_name: "gpu|cpu",
        default: "gpu",
        help: "Where SGLang runs the model: gpu, or cpu (its CPU engine: torch-native attention, a bounded KV pool; GPU metrics off).",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.sglang.device = v
                .trim()
                .parse::<Device>()
                .map_err(|_| "gpu or cpu".to_owned())?;
            Ok(())
        },
    },
    Knob {
        name: "mem_fraction",
        env: "MEMTEST_MEM_FRACTION",
        flag: Some("mem-fraction"),
        value_name: "F",
        default: "0.7",
        help: "SGLang's --mem-fraction-static.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.sglang.mem_fraction = fraction(v, 0.05, 0.99)?;
            Ok(())
        },
    },
    Knob {
        name: "max_total_tokens",
        env: "MEMTEST_MAX_TOTAL_TOKENS",
        flag: Some("max-total-tokens"),
        value_name: "N",
        default: "65536 on CPU, SGLang's choice on GPU",
        help: "SGLang's --max-total-tokens: the KV pool's size in tokens.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.sglang.max_total_tokens = Some(whole(v, 1, 1 << 40, "a KV pool size in tokens")?);
            Ok(())
        },
    },
    Knob {
        name: "server_arg",
        env: "MEMTEST_SERVER_ARGS",
        flag: Some("server-arg"),
        value_name: "ARG",
        default: "none",
        help: "An extra SGLang argument, e.g. --server-arg=--tp-size=2 (repeatable; in the environment quotes group words, nothing is run through a shell).",
        kind: KnobKind::ShellList,
        group: Group::Server,
        apply: |c, v| {
            c.sglang.args.push(v.to_owned());
            Ok(())
        },
    },
    Knob {
        name: "server_env",
        env: "MEMTEST_SERVER_ENV",
        flag: Some("server-env"),
        value_name: "KEY=VALUE",
        default: "none",
        help: "An environment variable for the launched server, e.g. SGLANG_VLM_CACHE_SIZE_MB=100 (repeatable).",
        kind: KnobKind::ShellList,
        group: Group::Server,
        apply: |c, v| match v.split_once('=') {
            Some((k, val)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
                c.server_env.push((k.to_owned(), val.to_owned()));
                Ok(())
            }
            _ => Err("KEY=VALUE, e.g. SGLANG_VLM_CACHE_SIZE_MB=100".into()),
        },
    },
    Knob {
        name: "language_model_only",
        env: "MEMTEST_LANGUAGE_MODEL_ONLY",
        flag: Some("language-model-only"),
        value_name: "",
        default: "off",
        help: "vlm_no_mm_processor adds SGLang's --language-model-only (few architectures accept it).",
        kind: KnobKind::Switch,
        group: Group::Server,
        apply: |c, v| {
            c.sglang.language_model_only = switch(v)?;
            Ok(())
        },
    },
    Knob {
        name: "server_cmd",
        env: "MEMTEST_SERVER_CMD",
        flag: Some("server-cmd"),
        value_name: "COMMAND",
        default: "none",
        help: "Launch any command instead; {port} is replaced by a free port. Quotes group words; no shell.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            let argv = shlex::split(v).filter(|a| !a.is_empty()).ok_or_else(|| {
                "a command line with balanced quotes, e.g. 'python3 server.py --port {port}'"
                    .to_owned()
            })?;
            c.command = Some(argv);
            choose_target(c, TargetKind::Command);
            Ok(())
        },
    },
    Knob {
        name: "health_path",
        env: "MEMTEST_HEALTH_PATH",
        flag: Some("health-path"),
        value_name: "PATH",
        default: "/health",
        help: "The path polled until a --server-cmd server answers 200.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            if !v.starts_with('/') {
                return Err("a URL path starting with /, e.g. /health".into());
            }
            c.health_path = v.to_owned();
            Ok(())
        },
    },
    Knob {
        name: "base_url",
        env: "MEMTEST_BASE_URL",
        flag: Some("base-url"),
        value_name: "URL",
        default: "none",
        help: "Attach to a running server instead of launching one.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            let url = v.trim().trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return Err("an http:// or https:// URL, e.g. http://127.0.0.1:30000".into());
            }
            c.attach_url = Some(url.to_owned());
            choose_target(c, TargetKind::Attach);
            Ok(())
        },
    },
    Knob {
        name: "server_pid",
        env: "MEMTEST_SERVER_PID",
        flag: Some("server-pid"),
        value_name: "PID",
        default: "none",
        help: "With --base-url: the server's root PID, so its process tree is measured too.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            let pid = whole(v, 1, u64::from(u32::MAX), "a process id")?;
            c.attach_pid = u32::try_from(pid).ok();
            Ok(())
        },
    },
    Knob {
        name: "startup_timeout",
        env: "MEMTEST_STARTUP_TIMEOUT",
        flag: Some("startup-timeout"),
        value_name: "SECONDS",
        default: "600",
        help: "How long to wait for the server to become ready.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.startup_timeout = seconds(v, 1.0, SECS_DAY)?;
            Ok(())
        },
    },
    Knob {
        name: "keep_server",
        env: "MEMTEST_KEEP_SERVER",
        flag: Some("keep-server"),
        value_name: "",
        default: "off",
        help: "Leave the server running after the run (its PID and URL are printed), for debugging.",
        kind: KnobKind::Switch,
        group: Group::Server,
        apply: |c, v| {
            c.keep_server = switch(v)?;
            Ok(())
        },
    },
    // ---- what is sent ----
    Knob {
        name: "num_requests",
        env: "MEMTEST_NUM_REQUESTS",
        flag: Some("num-requests"),
        value_name: "N",
        default: "100 (50 for vlm_image)",
        help: "Measured requests.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.num_requests = whole(
                v,
                3,
                100_000_000,
                "a request count (3 at least for a trend; 100 is usual)",
            )?;
            Ok(())
        },
    },
    Knob {
        name: "warmup_requests",
        env: "MEMTEST_WARMUP_REQUESTS",
        flag: Some("warmup-requests"),
        value_name: "N",
        default: "5",
        help: "Requests sent first and not measured.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.warmup_requests = whole(v, 0, 1_000_000, "a request count")?;
            Ok(())
        },
    },
    Knob {
        name: "request_interval",
        env: "MEMTEST_REQUEST_INTERVAL",
        flag: Some("request-interval"),
        value_name: "SECONDS",
        default: "0.1 (0.2 for vlm_image)",
        help: "Time between request starts.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.interval = seconds(v, 0.0, 3600.0)?;
            Ok(())
        },
    },
    Knob {
        name: "concurrency",
        env: "MEMTEST_CONCURRENCY",
        flag: Some("concurrency"),
        value_name: "N",
        default: "1",
        help: "Requests in flight at most.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.concurrency = whole(v, 1, 4096, "a number of requests in flight")? as usize;
            Ok(())
        },
    },
    Knob {
        name: "max_new_tokens",
        env: "MEMTEST_MAX_NEW_TOKENS",
        flag: Some("max-new-tokens"),
        value_name: "N",
        default: "32",
        help: "Tokens generated per request.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.max_new_tokens = whole(v, 1, 1_000_000, "a token count")? as u32;
            Ok(())
        },
    },
    Knob {
        name: "api",
        env: "MEMTEST_API",
        flag: Some("api"),
        value_name: "openai|native",
        default: "openai",
        help: "openai (/v1/chat/completions) or native (SGLang's /generate).",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.api = match v.trim() {
                "openai" => Api::OpenAi,
                "native" => Api::Native,
                _ => return Err("openai or native".into()),
            };
            Ok(())
        },
    },
    Knob {
        name: "api_key",
        env: "MEMTEST_API_KEY",
        flag: Some("api-key"),
        value_name: "KEY",
        default: "none",
        help: "Sent as a bearer token; never logged or written into a report.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.api_key = Some(Secret::new(nonempty(v, "a key")?));
            Ok(())
        },
    },
    Knob {
        name: "max_error_rate",
        env: "MEMTEST_MAX_ERROR_RATE",
        flag: Some("max-error-rate"),
        value_name: "F",
        default: "0.01",
        help: "Share of failed requests above which the run is an error, never a pass.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.max_error_rate = fraction(v, 0.0, 1.0)?;
            Ok(())
        },
    },
    Knob {
        name: "request_timeout",
        env: "MEMTEST_REQUEST_TIMEOUT",
        flag: Some("request-timeout"),
        value_name: "SECONDS",
        default: "120",
        help: "Per-request timeout; a request that times out counts as failed.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.request_timeout = seconds(v, 0.1, SECS_DAY)?;
            Ok(())
        },
    },
    Knob {
        name: "image_token",
        env: "MEMTEST_IMAGE_TOKEN",
        flag: Some("image-token"),
        value_name: "TEXT",
        default: "<|vision_start|><|image_pad|><|vision_end|>",
        help: "Image placeholder for --api native image requests (the native route does not apply the chat template).",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.image_token = nonempty(v, "the model's image placeholder")?;
            Ok(())
        },
    },
    // ---- images ----
    Knob {
        name: "image_size",
        env: "MEMTEST_IMAGE_SIZE",
        flag: Some("image-size"),
        value_name: "WxH",
        default: "448x448",
        help: "Size of the generated images.",
        kind: KnobKind::Value,
        group: Group::Images,
        apply: |c, v| {
            let (w, h) = image_size(v)?;
            set_generated(c, |width, height, _| (*width, *height) = (w, h));
            Ok(())
        },
    },
    Knob {
        name: "image_format",
        env: "MEMTEST_IMAGE_FORMAT",
        flag: Some("image-format"),
        value_name: "png|jpeg",
        default: "png",
        help: "Encoding of the generated images.",
        kind: KnobKind::Value,
        group: Group::Images,
        apply: |c, v| {
            let f = match v.trim().to_ascii_lowercase().as_str() {
                "png" => ImageFormat::Png,
                "jpeg" | "jpg" => ImageFormat::Jpeg,
                _ => return Err("png or jpeg".into()),
            };
            set_generated(c, |_, _, format| *format = f);
            Ok(())
        },
    },
    Knob {
        name: "images_per_request",
        env: "MEMTEST_IMAGES_PER_REQUEST",
        flag: Some("images-per-request"),
        value_name: "N",
        default: "1",
        help: "Images in each request.",
        kind: KnobKind::Value,
        group: Group::Images,
        apply: |c, v| {
            c.images.per_request = whole(v, 1, 64, "a number of images")? as u32;
            Ok(())
        },
    },
    Knob {
        name: "image_mode",
        env: "MEMTEST_IMAGE_MODE",
        flag: Some("image-mode"),
        value_name: "unique|repeated",
        default: "unique",
        help: "unique (repeated images hit caches and hide leaks) or repeated (to compare against cache hits).",
        kind: KnobKind::Value,
        group: Group::Images,
        apply: |c, v| {
            c.images.mode = match v.trim() {
                "unique" => ImageMode::Unique,
                "repeated" => ImageMode::Repeated,
                _ => return Err("unique or repeated".into()),
            };
            Ok(())
        },
    },
    Knob {
        name: "image_dir",
        env: "MEMTEST_IMAGE_DIR",
        flag: Some("image-dir"),
        value_name: "DIR",
        default: "none: generated images",
        help: "Send the PNG/JPEG files of this folder instead (made unique per request unless repeated).",
        kind: KnobKind::Value,
        group: Group::Images,
        apply: |c, v| {
            c.images.source =
                ImageSource::Files(vec![PathBuf::from(nonempty(v, "a folder of images")?)]);
            Ok(())
        },
    },
    // ---- measurement, verdict, outputs ----
    Knob {
        name: "gpu",
        env: "MEMTEST_GPU",
        flag: Some("gpu"),
        value_name: "required|auto|off",
        default: "required for SGLang on a GPU, off on the CPU, auto otherwise",
        help: "GPU metrics: required (fail without NVML), auto (when present) or off.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.gpu = Some(match v.trim() {
                "required" => GpuMode::Required,
                "auto" => GpuMode::Auto,
                "off" => GpuMode::Off,
                _ => return Err("required, auto or off".into()),
            });
            Ok(())
        },
    },
    Knob {
        name: "sample_interval",
        env: "MEMTEST_SAMPLE_INTERVAL",
        flag: Some("sample-interval"),
        value_name: "SECONDS",
        default: "0.1 (and one reading after every request)",
        help: "Interval between regular memory samples.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.tracker.interval = seconds(v, 0.001, 60.0)?;
            Ok(())
        },
    },
    Knob {
        name: "max_slope",
        env: "MEMTEST_MAX_SLOPE",
        flag: Some("max-slope"),
        value_name: "PATTERN=SIZE",
        default: "host and /dev/shm 32KiB, GPU 128KiB per request",
        help: "Leak limit for metrics matching a pattern, e.g. host.rss@tree=64KiB or gpu.*=1MiB (repeatable; comma-separated in the environment).",
        kind: KnobKind::CommaList,
        group: Group::Verdict,
        apply: |c, v| {
            let expected =
                || "PATTERN=SIZE, e.g. host.rss@tree=64KiB or gpu.proc@pid:*=1MiB".to_owned();
            let (pattern, size) = v.split_once('=').ok_or_else(expected)?;
            let pattern: MetricPattern = pattern
                .parse()
                .map_err(|e| format!("{} ({e})", expected()))?;
            let bytes = parse_bytes(size)
                .ok_or_else(|| format!("{}: sizes look like 64KiB or 1MiB", expected()))?;
            c.thresholds.set_max_slope(&pattern, bytes);
            Ok(())
        },
    },
    Knob {
        name: "seed",
        env: "MEMTEST_SEED",
        flag: Some("seed"),
        value_name: "N",
        default: "fixed",
        help: "Seed of every random draw (images, schedule), recorded in the report.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.thresholds.seed = whole(v, 0, u64::MAX, "a seed")?;
            Ok(())
        },
    },
    Knob {
        name: "out_dir",
        env: "MEMTEST_OUT_DIR",
        flag: Some("out-dir"),
        value_name: "DIR",
        default: "target/memtest",
        help: "Where reports, plots and server logs go.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.out_dir = PathBuf::from(nonempty(v, "a folder")?);
            Ok(())
        },
    },
    Knob {
        name: "no_plot",
        env: "MEMTEST_NO_PLOT",
        flag: Some("no-plot"),
        value_name: "",
        default: "off: plots are written",
        help: "Skip the PNG/SVG plots.",
        kind: KnobKind::Switch,
        group: Group::Verdict,
        apply: |c, v| {
            c.plots = !switch(v)?;
            Ok(())
        },
    },
    Knob {
        name: "cuda_visible_devices",
        env: "CUDA_VISIBLE_DEVICES",
        flag: None,
        value_name: "LIST",
        default: "all devices",
        help: "The GPUs the server sees (CUDA's own variable): GPU metrics cover these devices.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.tracker.visible_devices = Some(v.to_owned());
            Ok(())
        },
    },
];

/// The README's table of knobs, from [`KNOBS`] (`sglang-memtest knobs` prints it).
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | flag | default | meaning |\n|---|---|---|---|\n");
    for k in KNOBS {
        let flag = k.flag.map(|f| format!("`--{f}`")).unwrap_or_default();
        out.push_str(&format!(
            "| `{}` | {flag} | {} | {} |\n",
            k.env,
            k.default.replace('|', "\\|"),
            k.help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_envs_and_flags_are_unique() {
        let (mut names, mut envs, mut flags) = (
            std::collections::HashSet::new(),
            std::collections::HashSet::new(),
            std::collections::HashSet::new(),
        );
        for k in KNOBS {
            assert!(names.insert(k.name), "{}", k.name);
            assert!(envs.insert(k.env), "{}", k.env);
            if let Some(f) = k.flag {
                assert!(flags.insert(f), "{f}");
                assert_eq!(f.replace('-', "_"), k.name, "flag and name agree");
            }
        }
    }

    #[test]
    fn parsers_say_what_they_accept() {
        assert_eq!(
            whole("300", 3, 10, "n"),
            Err("n, a whole number from 3 to 10".into())
        );
        assert_eq!(whole("1_000", 3, 10_000, "n"), Ok(1000));
        assert_eq!(seconds("0.5", 0.0, 1.0), Ok(Duration::from_millis(500)));
        assert_eq!(seconds("2m", 0.0, 3600.0), Ok(Duration::from_secs(120)));
        assert!(seconds("-1", 0.0, 1.0).is_err());
        assert!(seconds("NaN", 0.0, 1.0).is_err());
        assert_eq!(image_size("64x48"), Ok((64, 48)));
        assert!(image_size("8x8").unwrap_err().contains("from 16"));
        assert_eq!(switch("yes"), Ok(true));
        assert!(switch("maybe").is_err());
        assert_eq!(parse_bytes("64KiB"), Some(65536.0));
        assert_eq!(parse_bytes("1.5 MiB"), Some(1.5 * 1048576.0));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1"), None);
    }
}
