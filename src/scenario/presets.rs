//! The three scenarios SGLang asked for, configured by `MEMTEST_*` variables.

use std::path::PathBuf;

use super::env::{self, flag, parse, seconds, split_args, var};
use super::{Scenario, ScenarioError, Target};
use crate::fixture::{Device, SglangServer};
use crate::load::{Api, ImageConfig, ImageFormat, ImageMode, ImageSource, Workload};
use crate::report::CacheInfo;
use crate::tracker::GpuMode;

/// Default text model (the seed tool's).
pub const DEFAULT_TEXT_MODEL: &str = "meta-llama/Llama-3.2-1B-Instruct";
/// Default VLM (the seed tool's).
pub const DEFAULT_VLM_MODEL: &str = "Qwen/Qwen2.5-VL-3B-Instruct";

fn radix_off() -> CacheInfo {
    CacheInfo {
        name: "radix (prefix) cache".into(),
        state: "off".into(),
        flag: Some("--disable-radix-cache".into()),
    }
}

fn mm_cache_off() -> CacheInfo {
    CacheInfo {
        name: "multimodal embedding cache".into(),
        state: "off".into(),
        flag: Some("SGLANG_VLM_CACHE_SIZE_MB=0".into()),
    }
}

/// The engine caches the presets switch off for SGLang (named in the report), and on the CPU
/// the allocator setting of [`CPU_MALLOC_ENV`](crate::fixture::CPU_MALLOC_ENV).
pub fn sglang_caches(vlm: bool, device: Device) -> Vec<CacheInfo> {
    let mut caches = vec![radix_off()];
    if vlm {
        caches.push(mm_cache_off());
    }
    if device == Device::Cpu {
        caches.push(CacheInfo {
            name: "glibc heap (freed memory malloc keeps)".into(),
            state: "mmap threshold fixed at 128 KiB: freed tensors go back to the OS".into(),
            flag: Some("MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072".into()),
        });
    }
    caches
}

/// Split a command line into argv: whitespace separates, quotes group, nothing is expanded.
///
/// # Errors
/// [`ScenarioError::Env`] for unbalanced quotes.
pub fn split_command(text: &str) -> Result<Vec<String>, ScenarioError> {
    split_args("--server-cmd", text)
}

/// The SGLang (or attached) target from the environment.
fn sglang_target(
    model_var: &str,
    default_model: &str,
    vlm: bool,
    extra: &[&str],
) -> Result<(Target, Vec<CacheInfo>), ScenarioError> {
    if let Some(base_url) = var("MEMTEST_BASE_URL") {
        let mut caches = sglang_caches(vlm, Device::Gpu);
        let pid = parse::<u32>("MEMTEST_SERVER_PID", "a process id")?;
        for c in &mut caches {
            c.state = "as the attached server was started".into();
        }
        return Ok((
            Target::Attach {
                base_url: base_url.trim_end_matches('/').to_owned(),
                pid,
            },
            caches,
        ));
    }
    let model = var(model_var).unwrap_or_else(|| default_model.to_owned());
    let python = env::path("MEMTEST_PYTHON").unwrap_or_else(|| PathBuf::from("python3"));
    let mem_fraction =
        parse::<f64>("MEMTEST_MEM_FRACTION", "a fraction such as 0.7")?.unwrap_or(0.7);
    if !(0.05..=0.99).contains(&mem_fraction) {
        return Err(ScenarioError::Invalid(format!(
            "MEMTEST_MEM_FRACTION={mem_fraction}: use a fraction between 0.05 and 0.99"
        )));
    }
    let mut args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    if let Some(text) = var("MEMTEST_SERVER_ARGS") {
        args.extend(split_args("MEMTEST_SERVER_ARGS", &text)?);
    }
    let device = match var("MEMTEST_DEVICE") {
        None => Device::Gpu,
        Some(v) => v.parse().map_err(|_| ScenarioError::Env {
            var: "MEMTEST_DEVICE".into(),
            value: v,
            expected: "gpu or cpu".into(),
        })?,
    };
    let mut server = sglang_server(&model, &python, mem_fraction, args, vlm).with_device(device);
    if let Some(tokens) = parse::<u64>("MEMTEST_MAX_TOTAL_TOKENS", "a whole number of tokens")? {
        if tokens == 0 {
            return Err(ScenarioError::Invalid(
                "MEMTEST_MAX_TOTAL_TOKENS=0: the KV pool needs at least one token (65536 is the CPU default)".into(),
            ));
        }
        server = server.with_max_total_tokens(tokens);
    }
    Ok((Target::Sglang(server), sglang_caches(vlm, device)))
}

/// SGLang as the presets launch it: the caches of [`sglang_caches`] switched off, metrics on,
/// then `extra_args`.
pub fn sglang_server(
    model: &str,
    python: &std::path::Path,
    mem_fraction: f64,
    extra_args: Vec<String>,
    vlm: bool,
) -> SglangServer {
    let mut args: Vec<String> = vec!["--disable-radix-cache".into(), "--enable-metrics".into()];
    args.extend(extra_args);
    let server = SglangServer::new(model)
        .with_python(python)
        .with_mem_fraction_static(mem_fraction)
        .with_args(args);
    if vlm {
        // SGLang's multimodal embedding cache (100 MB by default) fills with every unique image
        // and would read as growth for the first ~100 requests: off, and named in the report.
        server.with_env("SGLANG_VLM_CACHE_SIZE_MB", "0")
    } else {
        server
    }
}

/// Driver, tracker and threshold settings shared by the presets.
fn apply_common(
    mut s: Scenario,
    default_requests: u64,
    default_interval_s: f64,
) -> Result<Scenario, ScenarioError> {
    s.driver.num_requests =
        parse("MEMTEST_NUM_REQUESTS", "a whole number of requests")?.unwrap_or(default_requests);
    s.driver.interval = seconds("MEMTEST_REQUEST_INTERVAL")?
        .unwrap_or(std::time::Duration::from_secs_f64(default_interval_s));
    if let Some(n) = parse("MEMTEST_WARMUP_REQUESTS", "a whole number of requests")? {
        s.driver.warmup_requests = n;
    }
    if let Some(n) = parse("MEMTEST_CONCURRENCY", "a whole number, 1 or more")? {
        s.driver.concurrency = n;
    }
    if let Some(n) = parse("MEMTEST_MAX_NEW_TOKENS", "a whole number of tokens")? {
        s.driver.max_new_tokens = n;
    }
    if let Some(r) = parse("MEMTEST_MAX_ERROR_RATE", "a fraction such as 0.01")? {
        s.driver.max_error_rate = r;
    }
    if let Some(api) = var("MEMTEST_API") {
        s.driver.api = match api.as_str() {
            "openai" => Api::OpenAi,
            "native" => Api::Native,
            _ => {
                return Err(ScenarioError::Env {
                    var: "MEMTEST_API".into(),
                    value: api,
                    expected: "openai or native".into(),
                });
            }
        };
    }
    s.driver.api_key = var("MEMTEST_API_KEY");
    if let Some(token) = var("MEMTEST_IMAGE_TOKEN") {
        s.driver.image_token = token;
    }
    if let Some(t) = seconds("MEMTEST_STARTUP_TIMEOUT")? {
        s.startup_timeout = t;
    }
    s.tracker.gpu = match var("MEMTEST_GPU").as_deref() {
        Some("required") => GpuMode::Required,
        None => default_gpu_mode(&s.target),
        Some("auto") => GpuMode::Auto,
        Some("off") => GpuMode::Off,
        Some(v) => {
            return Err(ScenarioError::Env {
                var: "MEMTEST_GPU".into(),
                value: v.into(),
                expected: "required, auto or off".into(),
            });
        }
    };
    for (pattern, bytes) in env::slope_overrides("MEMTEST_MAX_SLOPE")? {
        s.thresholds.set_max_slope(&pattern, bytes);
    }
    if let Some(seed) = parse("MEMTEST_SEED", "a whole number")? {
        s.thresholds.seed = seed;
    }
    Ok(s)
}

/// GPU metrics unless told otherwise: required for SGLang on a GPU, off for SGLang on the CPU
/// (the report says why), used when present for everything else.
pub fn default_gpu_mode(target: &Target) -> GpuMode {
    match target {
        Target::Sglang(server) if server.device() == Device::Cpu => GpuMode::Off,
        Target::Sglang(_) => GpuMode::Required,
        _ => GpuMode::Auto,
    }
}

impl Scenario {
    /// A text model receiving text requests (`MEMTEST_TEXT_MODEL`, default
    /// `meta-llama/Llama-3.2-1B-Instruct`; 100 requests 0.1 s apart).
    ///
    /// # Errors
    /// [`ScenarioError`] for a `MEMTEST_*` variable that cannot be used.
    pub fn text_model() -> Result<Self, ScenarioError> {
        let (target, caches) = sglang_target("MEMTEST_TEXT_MODEL", DEFAULT_TEXT_MODEL, false, &[])?;
        let mut s = Scenario::new("text_model", target, Workload::Text);
        s.caches = caches;
        apply_common(s, 100, 0.1)
    }

    /// A VLM receiving text-only requests: no image reaches the multimodal processor
    /// (`MEMTEST_VLM_MODEL`, default `Qwen/Qwen2.5-VL-3B-Instruct`; `MEMTEST_LANGUAGE_MODEL_ONLY=1`
    /// adds `--language-model-only`, which few architectures accept).
    ///
    /// # Errors
    /// [`ScenarioError`] for a `MEMTEST_*` variable that cannot be used.
    pub fn vlm_no_mm_processor() -> Result<Self, ScenarioError> {
        let extra: &[&str] = if flag("MEMTEST_LANGUAGE_MODEL_ONLY")? {
            &["--language-model-only"]
        } else {
            &[]
        };
        let (target, caches) = sglang_target("MEMTEST_VLM_MODEL", DEFAULT_VLM_MODEL, true, extra)?;
        let mut s = Scenario::new("vlm_no_mm_processor", target, Workload::VlmText);
        s.caches = caches;
        apply_common(s, 100, 0.1)
    }

    /// A VLM receiving image requests: unique generated images by default (50 requests
    /// 0.2 s apart, as the seed tool's runner).
    ///
    /// # Errors
    /// [`ScenarioError`] for a `MEMTEST_*` variable that cannot be used.
    pub fn vlm_image() -> Result<Self, ScenarioError> {
        let (target, caches) = sglang_target("MEMTEST_VLM_MODEL", DEFAULT_VLM_MODEL, true, &[])?;
        let mut s = Scenario::new(
            "vlm_image",
            target,
            Workload::VlmImage(image_config_from_env()?),
        );
        s.caches = caches;
        apply_common(s, 50, 0.2)
    }
}

/// Image settings from `MEMTEST_IMAGE_*`.
pub fn image_config_from_env() -> Result<ImageConfig, ScenarioError> {
    let mut config = ImageConfig::default();
    let format = match var("MEMTEST_IMAGE_FORMAT").as_deref() {
        None | Some("png") => ImageFormat::Png,
        Some("jpeg" | "jpg") => ImageFormat::Jpeg,
        Some(v) => {
            return Err(ScenarioError::Env {
                var: "MEMTEST_IMAGE_FORMAT".into(),
                value: v.into(),
                expected: "png or jpeg".into(),
            });
        }
    };
    let (mut width, mut height) = (448, 448);
    if let Some(size) = var("MEMTEST_IMAGE_SIZE") {
        let parsed = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
        match parsed {
            Some((w, h)) if w > 0 && h > 0 && w <= 8192 && h <= 8192 => (width, height) = (w, h),
            _ => {
                return Err(ScenarioError::Env {
                    var: "MEMTEST_IMAGE_SIZE".into(),
                    value: size,
                    expected: "WIDTHxHEIGHT, e.g. 448x448".into(),
                });
            }
        }
    }
    config.source = match env::path("MEMTEST_IMAGE_DIR") {
        Some(dir) => ImageSource::Files(image_files(&dir)?),
        None => ImageSource::Generated {
            width,
            height,
            format,
        },
    };
    if let Some(n) = parse::<u32>("MEMTEST_IMAGES_PER_REQUEST", "a whole number, 1 or more")? {
        config.per_request = n.max(1);
    }
    config.mode = match var("MEMTEST_IMAGE_MODE").as_deref() {
        None | Some("unique") => ImageMode::Unique,
        Some("repeated") => ImageMode::Repeated,
        Some(v) => {
            return Err(ScenarioError::Env {
                var: "MEMTEST_IMAGE_MODE".into(),
                value: v.into(),
                expected: "unique or repeated".into(),
            });
        }
    };
    Ok(config)
}

/// The PNG/JPEG files of a folder, sorted.
pub fn image_files(dir: &std::path::Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ScenarioError::Invalid(format!(
            "cannot read the image folder {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ScenarioError::Invalid(format!(
            "{} has no .png or .jpg images",
            dir.display()
        )));
    }
    Ok(files)
}
