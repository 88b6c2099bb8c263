//! One way to configure a scenario: [`ScenarioConfig`].
//!
//! A config starts from a preset ([`text_model`](ScenarioConfig::text_model),
//! [`vlm_no_mm_processor`](ScenarioConfig::vlm_no_mm_processor),
//! [`vlm_image`](ScenarioConfig::vlm_image)) or [`new`](ScenarioConfig::new), is changed by
//! builder methods, and takes the `MEMTEST_*` environment **once, explicitly**, where the caller
//! puts [`env_overrides`](ScenarioConfig::env_overrides): what comes after it beats the
//! environment, what comes before it is beaten by it. Nothing else in the crate reads the
//! environment. [`build`](ScenarioConfig::build) checks everything and returns a [`Scenario`] or
//! a [`ConfigError`] that names the setting the way the user wrote it and what would be accepted.
//!
//! Every knob — its variable, flag, default, range and help — is defined once, in [`KNOBS`]; the
//! builder's setters, the environment layer and the CLI's flags all go through it.

mod error;
mod knobs;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, Origin, Setting};
pub use knobs::{Group, KNOBS, Knob, KnobKind, knob, markdown_table, parse_bytes};

use crate::analysis::Thresholds;
use crate::fixture::{Device, ServerSpec, SglangServer, WaitFor};
use crate::load::{Api, DriverConfig, ImageConfig, ImageSource, Workload};
use crate::report::CacheInfo;
use crate::scenario::{CooldownConfig, Scenario, Target};
use crate::tracker::metric::MetricPattern;
use crate::tracker::{GpuMode, TrackerConfig};

/// Default text model (the seed tool's).
pub const DEFAULT_TEXT_MODEL: &str = "meta-llama/Llama-3.2-1B-Instruct";
/// Default VLM (the seed tool's).
pub const DEFAULT_VLM_MODEL: &str = "Qwen/Qwen2.5-VL-3B-Instruct";

/// Which kind of server a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    /// The embedded reference server.
    Reference,
    /// SGLang, launched by the fixture.
    Sglang,
    /// Any command.
    Command,
    /// A server someone else runs.
    Attach,
}

/// What the requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestType {
    /// Text prompts.
    Text,
    /// Text prompts to a VLM: no image reaches the multimodal processor.
    VlmText,
    /// Prompts with images.
    VlmImage,
}

impl TestType {
    pub(crate) fn is_text(self) -> bool {
        self == TestType::Text
    }
}

/// SGLang's launch settings (used when the target is SGLang).
#[derive(Debug, Clone)]
pub(crate) struct SglangSettings {
    pub(crate) model: Option<String>,
    pub(crate) text_model: Option<String>,
    pub(crate) vlm_model: Option<String>,
    pub(crate) python: PathBuf,
    pub(crate) device: Device,
    pub(crate) mem_fraction: f64,
    pub(crate) max_total_tokens: Option<u64>,
    pub(crate) args: Vec<String>,
    pub(crate) language_model_only: bool,
}

/// A server choice and the setting that made it.
#[derive(Debug, Clone)]
struct Choice {
    kind: TargetKind,
    setting: Setting,
}

/// Every setting of a scenario; [`build`](Self::build) turns it into a [`Scenario`].
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub(crate) name: String,
    pub(crate) workload: TestType,
    pub(crate) images: ImageConfig,
    default_target: TargetKind,
    choices: Vec<Choice>,
    code_target: Option<Target>,
    pub(crate) sglang: SglangSettings,
    pub(crate) server_env: Vec<(String, String)>,
    pub(crate) reference_args: Vec<String>,
    pub(crate) reference_bin: Option<PathBuf>,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) health_path: String,
    pub(crate) attach_url: Option<String>,
    pub(crate) attach_pid: Option<u32>,
    pub(crate) startup_timeout: Duration,
    pub(crate) keep_server: bool,
    pub(crate) driver: DriverConfig,
    pub(crate) tracker: TrackerConfig,
    pub(crate) gpu: Option<GpuMode>,
    pub(crate) thresholds: Thresholds,
    pub(crate) cooldown: CooldownConfig,
    pub(crate) baseline: Duration,
    pub(crate) out_dir: PathBuf,
    pub(crate) plots: bool,
    pub(crate) progress: Option<Duration>,
    /// The setting being applied (for choices and errors).
    applying: Option<Setting>,
    /// Errors of setters, reported by `build`.
    errors: Vec<ConfigError>,
}

impl ScenarioConfig {
    /// A scenario named `name` sending `workload`, against SGLang unless told otherwise, with
    /// the defaults of every knob (100 measured requests 0.1 s apart, default thresholds,
    /// output under `target/memtest`).
    pub fn new(name: impl Into<String>, workload: TestType) -> Self {
        Self {
            name: name.into(),
            workload,
            images: ImageConfig::default(),
            default_target: TargetKind::Sglang,
            choices: Vec::new(),
            code_target: None,
            sglang: SglangSettings {
                model: None,
                text_model: None,
                vlm_model: None,
                python: PathBuf::from("python3"),
                device: Device::Gpu,
                mem_fraction: 0.7,
                max_total_tokens: None,
                args: Vec::new(),
                language_model_only: false,
            },
            server_env: Vec::new(),
            reference_args: Vec::new(),
            reference_bin: None,
            command: None,
            health_path: "/health".into(),
            attach_url: None,
            attach_pid: None,
            startup_timeout: Duration::from_secs(600),
            keep_server: false,
            driver: DriverConfig::default(),
            tracker: TrackerConfig::default(),
            gpu: None,
            thresholds: Thresholds::default(),
            cooldown: CooldownConfig::default(),
            baseline: Duration::from_millis(500),
            out_dir: PathBuf::from("target/memtest"),
            plots: true,
            progress: None,
            applying: None,
            errors: Vec::new(),
        }
    }

    /// A text model receiving text requests: `text_model`, 100 requests 0.1 s apart, against
    /// `meta-llama/Llama-3.2-1B-Instruct` (`MEMTEST_TEXT_MODEL`).
    pub fn text_model() -> Self {
        Self::new("text_model", TestType::Text)
    }

    /// A VLM receiving text-only requests, so no image reaches the multimodal processor:
    /// `vlm_no_mm_processor`, 100 requests 0.1 s apart, against `Qwen/Qwen2.5-VL-3B-Instruct`
    /// (`MEMTEST_VLM_MODEL`).
    pub fn vlm_no_mm_processor() -> Self {
        Self::new("vlm_no_mm_processor", TestType::VlmText)
    }

    /// A VLM receiving one unique generated 448×448 PNG per request: `vlm_image`, 50 requests
    /// 0.2 s apart (the seed tool's runner).
    pub fn vlm_image() -> Self {
        Self::new("vlm_image", TestType::VlmImage)
            .requests(50)
            .request_interval(Duration::from_millis(200))
    }

    /// The preset for a test type (`text`, `vlm-text`, `vlm-image`).
    pub fn preset(test_type: TestType) -> Self {
        match test_type {
            TestType::Text => Self::text_model(),
            TestType::VlmText => Self::vlm_no_mm_processor(),
            TestType::VlmImage => Self::vlm_image(),
        }
    }

    // ---- layering ---------------------------------------------------------------------------

    /// Applies one knob: `value` as it would be written in the environment (or after the flag).
    fn apply(&mut self, knob: &'static Knob, value: &str, origin: Origin) {
        self.applying = Some(Setting {
            knob: knob.name,
            env: knob.env,
            flag: knob.flag,
            origin,
            value: if knob.name == "api_key" {
                "<redacted>".into()
            } else {
                value.to_owned()
            },
        });
        let items: Vec<String> = match (knob.kind, origin) {
            (KnobKind::ShellList, Origin::Env) => match shlex::split(value) {
                Some(items) => items,
                None => {
                    self.fail("words with balanced quotes".into());
                    return;
                }
            },
            (KnobKind::CommaList, Origin::Env) => value
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().to_owned())
                .collect(),
            _ => vec![value.to_owned()],
        };
        for item in items {
            if let Err(expected) = (knob.apply)(self, &item) {
                self.fail(expected);
                break;
            }
        }
        self.applying = None;
    }

    fn fail(&mut self, expected: String) {
        if let Some(setting) = self.applying.clone() {
            self.errors.push(ConfigError::Invalid { setting, expected });
        }
    }

    pub(crate) fn choose(&mut self, kind: TargetKind) {
        if let Some(setting) = self.applying.clone() {
            self.choices.push(Choice { kind, setting });
        }
    }

    /// Sets the knob named `name` (see [`KNOBS`]) from `value`, as the environment would; an
    /// unknown name or a bad value is reported by [`build`](Self::build).
    pub fn set(mut self, name: &str, value: impl AsRef<str>) -> Self {
        match knob(name) {
            Some(k) => self.apply(k, value.as_ref(), Origin::Code),
            None => self.errors.push(ConfigError::UnknownKnob(name.to_owned())),
        }
        self
    }

    /// Layers the `MEMTEST_*` environment (and `CUDA_VISIBLE_DEVICES`) over what was set so
    /// far: the one place the crate reads the environment. Settings made after this call beat
    /// the environment.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first variable that cannot be used.
    pub fn env_overrides(self) -> Result<Self, ConfigError> {
        self.env_overrides_from(|var| std::env::var(var).ok())
    }

    /// [`env_overrides`](Self::env_overrides) from another source of variables: a map, or the
    /// `KEY=VALUE` file `scripts/setup-sglang-cpu.sh` writes.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first variable that cannot be used.
    pub fn env_overrides_from(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let before = self.errors.len();
        for k in KNOBS {
            if let Some(v) = lookup(k.env) {
                self.apply(k, &v, Origin::Env);
            }
        }
        let first = self.errors.drain(before..).next();
        match first {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }

    /// Applies command-line values: `(knob, value, origin)` as the CLI parsed them (flags, or
    /// environment variables clap read for it). Values from the environment are applied first,
    /// flags after them.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first value that cannot be used.
    pub fn cli_overrides<'a>(
        mut self,
        values: impl IntoIterator<Item = (&'static Knob, &'a str, Origin)>,
    ) -> Result<Self, ConfigError> {
        let mut values: Vec<_> = values.into_iter().collect();
        values.sort_by_key(|(_, _, origin)| *origin);
        let before = self.errors.len();
        for (k, v, origin) in values {
            self.apply(k, v, origin);
        }
        let first = self.errors.drain(before..).next();
        match first {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }

    // ---- builder ----------------------------------------------------------------------------

    fn code(self, name: &str, value: impl ToString) -> Self {
        self.set(name, value.to_string())
    }

    /// The scenario's name (file names: `<name>.json`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Measured requests (3 to 100,000,000).
    pub fn requests(self, n: u64) -> Self {
        self.code("num_requests", n)
    }

    /// Requests sent first and not measured.
    pub fn warmup_requests(self, n: u64) -> Self {
        self.code("warmup_requests", n)
    }

    /// Time between request starts.
    pub fn request_interval(self, d: Duration) -> Self {
        self.code("request_interval", d.as_secs_f64())
    }

    /// Requests in flight at most (1 to 4096).
    pub fn concurrency(self, n: usize) -> Self {
        self.code("concurrency", n)
    }

    /// Tokens generated per request.
    pub fn max_new_tokens(self, n: u32) -> Self {
        self.code("max_new_tokens", n)
    }

    /// The HTTP API the requests use.
    pub fn api(mut self, api: Api) -> Self {
        self.driver.api = api;
        self
    }

    /// Run against SGLang serving `model`.
    pub fn sglang(self, model: impl AsRef<str>) -> Self {
        self.set("model", model)
    }

    /// The interpreter that has SGLang.
    pub fn python(self, python: impl AsRef<Path>) -> Self {
        let p = python.as_ref().display().to_string();
        self.set("python", p)
    }

    /// Where SGLang runs the model.
    pub fn device(self, device: Device) -> Self {
        self.set("device", device.as_str())
    }

    /// An extra SGLang argument.
    pub fn server_arg(mut self, arg: impl Into<String>) -> Self {
        self.sglang.args.push(arg.into());
        self
    }

    /// An environment variable for the launched server (SGLang or a command).
    pub fn server_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.server_env.push((key.into(), value.into()));
        self
    }

    /// Run against the reference server with these knobs (`--leak-bytes-per-request=1048576`).
    pub fn reference(mut self, knobs: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.reference_args
            .extend(knobs.into_iter().map(Into::into));
        self.set("reference", "1")
    }

    /// The reference server when no other server is chosen (the CLI's default).
    pub fn reference_by_default(mut self) -> Self {
        self.default_target = TargetKind::Reference;
        self
    }

    /// Run against an explicit [`Target`] (any [`ServerSpec`], for instance).
    pub fn target(mut self, target: Target) -> Self {
        self.code_target = Some(target);
        self
    }

    /// Attach to a server someone else runs.
    pub fn attach(self, base_url: impl AsRef<str>) -> Self {
        self.set("base_url", base_url)
    }

    /// The images of a `vlm-image` scenario.
    pub fn images(mut self, images: ImageConfig) -> Self {
        self.images = images;
        self
    }

    /// GPU metrics: required, auto or off.
    pub fn gpu(mut self, mode: GpuMode) -> Self {
        self.gpu = Some(mode);
        self
    }

    /// Sampling settings.
    pub fn tracker(mut self, tracker: TrackerConfig) -> Self {
        self.tracker = tracker;
        self
    }

    /// The leak limit of metrics matching `pattern` (see [`MetricPattern`]), per request.
    pub fn max_slope(mut self, pattern: &MetricPattern, per_request: f64) -> Self {
        self.thresholds.set_max_slope(pattern, per_request);
        self
    }

    /// All thresholds at once.
    pub fn thresholds(mut self, thresholds: Thresholds) -> Self {
        self.thresholds = thresholds;
        self
    }

    /// What happens after the last request.
    pub fn cooldown(mut self, cooldown: CooldownConfig) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Idle sampling before the first request.
    pub fn baseline(mut self, d: Duration) -> Self {
        self.baseline = d;
        self
    }

    /// Where reports, plots and logs go.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = dir.into();
        self
    }

    /// Write PNG/SVG plots (default on).
    pub fn plots(mut self, on: bool) -> Self {
        self.plots = on;
        self
    }

    /// How long to wait for the server to become ready.
    pub fn startup_timeout(self, d: Duration) -> Self {
        self.code("startup_timeout", d.as_secs_f64())
    }

    /// Leave the server running after the run, for debugging.
    pub fn keep_server(mut self, keep: bool) -> Self {
        self.keep_server = keep;
        self
    }

    /// Interval between regular memory samples (each request also gets its own reading).
    pub fn sample_interval(self, d: Duration) -> Self {
        self.code("sample_interval", d.as_secs_f64())
    }

    /// Seed of every random draw, recorded in the report.
    pub fn seed(mut self, seed: u64) -> Self {
        self.thresholds.seed = seed;
        self
    }

    /// Short idle phases and tight pacing for a fast local server (the reference server in
    /// tests, the demo and the calibration): requests 10 ms apart, samples every 50 ms, 200 ms
    /// of baseline, 300 ms of settling, no GPU metrics.
    pub fn quick(mut self) -> Self {
        self.driver.interval = Duration::from_millis(10);
        self.tracker.interval = Duration::from_millis(50);
        self.baseline = Duration::from_millis(200);
        self.cooldown.settle = Duration::from_millis(300);
        self.gpu = Some(GpuMode::Off);
        self
    }

    /// Print a progress line to stderr this often (the CLI sets it).
    pub fn progress(mut self, every: Option<Duration>) -> Self {
        self.progress = every;
        self
    }

    // ---- build ------------------------------------------------------------------------------

    /// The server this configuration chooses, with the setting that chose it (`None`: the
    /// default).
    fn target_kind(&self) -> Result<TargetKind, ConfigError> {
        let Some(top) = self.choices.iter().map(|c| c.setting.origin).max() else {
            return Ok(self.default_target);
        };
        // The highest layer decides; within it, attaching to a server and naming its model
        // agree (the model is the attached server's).
        let layer: Vec<&Choice> = self
            .choices
            .iter()
            .filter(|c| c.setting.origin == top)
            .collect();
        let attach = layer.iter().any(|c| c.kind == TargetKind::Attach);
        let mut distinct: Vec<&Choice> = Vec::new();
        for c in layer {
            let agrees_with_attach = attach && c.kind == TargetKind::Sglang;
            if !agrees_with_attach && !distinct.iter().any(|d| d.kind == c.kind) {
                distinct.push(c);
            }
        }
        match distinct.as_slice() {
            [] => Ok(self.default_target),
            [one] => Ok(one.kind),
            [a, b, ..] => Err(ConfigError::ConflictingTargets {
                first: Box::new(a.setting.clone()),
                second: Box::new(b.setting.clone()),
            }),
        }
    }

    fn model(&self) -> String {
        let own = if self.workload.is_text() {
            &self.sglang.text_model
        } else {
            &self.sglang.vlm_model
        };
        own.clone()
            .or_else(|| self.sglang.model.clone())
            .unwrap_or_else(|| {
                if self.workload.is_text() {
                    DEFAULT_TEXT_MODEL
                } else {
                    DEFAULT_VLM_MODEL
                }
                .to_owned()
            })
    }

    /// SGLang as the presets launch it: the caches that grow with unique input off, metrics on.
    fn sglang_server(&self) -> SglangServer {
        let vlm = !self.workload.is_text();
        let mut args: Vec<String> = vec!["--disable-radix-cache".into(), "--enable-metrics".into()];
        if self.workload == TestType::VlmText && self.sglang.language_model_only {
            args.push("--language-model-only".into());
        }
        args.extend(self.sglang.args.iter().cloned());
        let mut server = SglangServer::new(self.model())
            .with_python(&self.sglang.python)
            .with_mem_fraction_static(self.sglang.mem_fraction)
            .with_device(self.sglang.device)
            .with_args(args);
        if let Some(t) = self.sglang.max_total_tokens {
            server = server.with_max_total_tokens(t);
        }
        if vlm {
            // SGLang's multimodal embedding cache (100 MB by default) fills with every unique
            // image and would read as growth: off, and named in the report.
            server = server.with_env("SGLANG_VLM_CACHE_SIZE_MB", "0");
        }
        for (k, v) in &self.server_env {
            server = server.with_env(k, v);
        }
        server
    }

    fn caches(&self, target: &Target) -> Vec<CacheInfo> {
        let vlm = !self.workload.is_text();
        match target {
            Target::Sglang(server) => {
                let mut caches = sglang_caches(vlm, server.device());
                let overridden = self
                    .server_env
                    .iter()
                    .rfind(|(k, _)| k == "SGLANG_VLM_CACHE_SIZE_MB");
                if let (Some((_, mb)), Some(c)) = (
                    overridden,
                    caches.iter_mut().find(|c| c.name.starts_with("multimodal")),
                ) && mb != "0"
                {
                    c.state = format!("on, {mb} MB");
                    c.flag = Some(format!("SGLANG_VLM_CACHE_SIZE_MB={mb}"));
                }
                caches
            }
            Target::Attach { .. } => {
                let mut caches = sglang_caches(vlm, Device::Gpu);
                for c in &mut caches {
                    c.state = "as the attached server was started".into();
                }
                caches
            }
            Target::Reference { .. } | Target::Command(_) => Vec::new(),
        }
    }

    fn target_value(&self) -> Result<Target, ConfigError> {
        if let Some(t) = &self.code_target
            && self
                .choices
                .iter()
                .all(|c| c.setting.origin == Origin::Code)
        {
            return Ok(t.clone());
        }
        Ok(match self.target_kind()? {
            TargetKind::Reference => Target::Reference {
                exe: match &self.reference_bin {
                    Some(p) => p.clone(),
                    None => crate::scenario::reference_exe()?,
                },
                args: self.reference_args.clone(),
            },
            TargetKind::Sglang => Target::Sglang(self.sglang_server()),
            TargetKind::Command => {
                let argv = self.command.clone().unwrap_or_default();
                let (program, args) = argv
                    .split_first()
                    .ok_or(ConfigError::UnknownKnob("server_cmd (empty)".into()))?;
                let mut spec = ServerSpec::command(program, args.to_vec())
                    .with_name("server")
                    .with_wait_for(WaitFor::http_ok(self.health_path.clone()));
                for (k, v) in &self.server_env {
                    spec = spec.with_env(k, v);
                }
                Target::Command(spec)
            }
            TargetKind::Attach => Target::Attach {
                base_url: self.attach_url.clone().unwrap_or_default(),
                pid: self.attach_pid,
            },
        })
    }

    /// Checks every setting and returns the runnable [`Scenario`].
    ///
    /// # Errors
    /// The first [`ConfigError`]: a setting that does not parse or is out of range (naming it as
    /// written and what would be accepted), two settings that choose different servers, a
    /// setting without the one it needs, an image folder without images, no reference-server
    /// executable.
    pub fn build(mut self) -> Result<Scenario, ConfigError> {
        if let Some(e) = std::mem::take(&mut self.errors).into_iter().next() {
            return Err(e);
        }
        let target = self.target_value()?;
        if self.attach_pid.is_some() && !matches!(target, Target::Attach { .. }) {
            let k =
                knob("server_pid").ok_or_else(|| ConfigError::UnknownKnob("server_pid".into()))?;
            return Err(ConfigError::Requires {
                setting: Setting {
                    knob: k.name,
                    env: k.env,
                    flag: k.flag,
                    origin: Origin::Env,
                    value: self.attach_pid.map(|p| p.to_string()).unwrap_or_default(),
                },
                needs: "a server to attach to (--base-url / MEMTEST_BASE_URL)",
            });
        }
        if self.workload == TestType::VlmImage
            && let ImageSource::Files(paths) = &self.images.source
        {
            for p in paths {
                check_image_dir(p)?;
            }
        }
        let workload = match self.workload {
            TestType::Text => Workload::Text,
            TestType::VlmText => Workload::VlmText,
            TestType::VlmImage => Workload::VlmImage(self.images.clone()),
        };
        let caches = self.caches(&target);
        let mut tracker = self.tracker.clone();
        tracker.gpu = self.gpu.unwrap_or_else(|| default_gpu_mode(&target));
        Ok(Scenario {
            name: self.name,
            target,
            workload,
            driver: self.driver,
            thresholds: self.thresholds,
            tracker,
            cooldown: self.cooldown,
            baseline: self.baseline,
            out_dir: self.out_dir,
            startup_timeout: self.startup_timeout,
            keep_server: self.keep_server,
            caches,
            plots: self.plots,
            progress: self.progress,
        })
    }
}

/// A folder of images (or one image file) that can be sent.
fn check_image_dir(path: &Path) -> Result<(), ConfigError> {
    let err = |why: String| ConfigError::ImageDir {
        path: path.to_owned(),
        why,
    };
    if path.is_file() {
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| err(e.to_string()))?;
    let any = entries.filter_map(Result::ok).any(|e| {
        e.path()
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
    });
    if any {
        Ok(())
    } else {
        Err(err("it has no .png, .jpg or .jpeg files".into()))
    }
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

/// The engine caches the presets switch off for SGLang (named in the report), and on the CPU
/// the allocator setting of [`CPU_MALLOC_ENV`](crate::fixture::CPU_MALLOC_ENV).
pub fn sglang_caches(vlm: bool, device: Device) -> Vec<CacheInfo> {
    let mut caches = vec![CacheInfo {
        name: "radix (prefix) cache".into(),
        state: "off".into(),
        flag: Some("--disable-radix-cache".into()),
    }];
    if vlm {
        caches.push(CacheInfo {
            name: "multimodal embedding cache".into(),
            state: "off".into(),
            flag: Some("SGLANG_VLM_CACHE_SIZE_MB=0".into()),
        });
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

#[cfg(test)]
mod tests;
