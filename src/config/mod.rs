//! One way to configure a scenario: [`ScenarioConfig`].
//!
//! A config starts from a preset ([`text_model`](ScenarioConfig::text_model),
//! [`vlm_no_mm_processor`](ScenarioConfig::vlm_no_mm_processor),
//! [`vlm_image`](ScenarioConfig::vlm_image)) or [`new`](ScenarioConfig::new), is changed by
//! builder methods, and takes the `MEMTEST_*` environment **once, explicitly**, where the caller
//! puts [`env_overrides`](ScenarioConfig::env_overrides): what comes after it beats the
//! environment, what comes before it is beaten by it. Nothing else in the crate reads the
//! environment. [`build`](ScenarioConfig::build) checks everything and returns a [`Scenario`](crate::Scenario) or
//! a [`ConfigError`] that names the setting the way the user wrote it and what would be accepted.
//!
//! Every knob — its variable, flag, default, range and help — is defined once, in [`KNOBS`]; the
//! builder's setters, the environment layer and the CLI's flags all go through it.

mod build;
mod builder;
mod knobs;

use std::path::PathBuf;
use std::time::Duration;

pub use crate::engine::sglang::sglang_caches;
pub use crate::engine::vllm::vllm_caches;
pub use crate::error::{ConfigError, Origin, Setting};
pub use build::{default_gpu_mode, reference_exe};
pub use knobs::{Group, KNOBS, Knob, KnobKind, knob, markdown_table, parse_bytes};

use crate::analysis::Thresholds;
use crate::engine::{Device, ENGINES, EngineSettings};
use crate::load::{DriverConfig, ImageConfig, Workload};
use crate::scenario::{CooldownConfig, Target};
use crate::tracker::{GpuMode, TrackerConfig};
use std::collections::BTreeMap;

pub use crate::engine::{DEFAULT_TEXT_MODEL, DEFAULT_VLM_MODEL};

/// Which kind of server a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetKind {
    /// The embedded reference server.
    Reference,
    /// An engine of [`ENGINES`](crate::engine::ENGINES), by name, launched by the fixture.
    Engine(&'static str),
    /// Any command.
    Command,
    /// A server someone else runs.
    Attach,
}

/// A server choice and the setting that made it.
#[derive(Debug, Clone)]
struct Choice {
    kind: TargetKind,
    setting: Setting,
}

/// Every setting of a scenario; [`build`](Self::build) turns it into a
/// [`Scenario`](crate::Scenario).
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub(crate) name: String,
    /// What the requests carry; the image knobs set a `vlm-image` workload's images.
    pub(crate) workload: Workload,
    default_target: TargetKind,
    choices: Vec<Choice>,
    code_target: Option<Target>,
    /// Each engine's knobs, by engine name (declared in the engine's file).
    pub(crate) engines: BTreeMap<&'static str, EngineSettings>,
    /// The setting that gave each engine knob its (last) value, to name it in an error.
    pub(crate) engine_set: BTreeMap<&'static str, Setting>,
    /// Where the engine runs the model.
    pub(crate) device: Device,
    /// The engine's share of GPU memory, when set.
    pub(crate) mem_fraction: Option<f64>,
    /// Build only the language model of a VLM receiving text.
    pub(crate) language_model_only: bool,
    pub(crate) server_env: Vec<(String, String)>,
    pub(crate) reference_args: Vec<String>,
    pub(crate) reference_bin: Option<PathBuf>,
    pub(crate) command: Option<Vec<String>>,
    pub(crate) health_path: String,
    pub(crate) attach_url: Option<String>,
    pub(crate) attach_pid: Option<u32>,
    pub(crate) startup_timeout: Duration,
    pub(crate) keep_server: bool,
    pub(crate) reaper: bool,
    pub(crate) watchdog: bool,
    pub(crate) driver: DriverConfig,
    pub(crate) tracker: TrackerConfig,
    pub(crate) gpu: Option<GpuMode>,
    pub(crate) thresholds: Thresholds,
    pub(crate) cooldown: CooldownConfig,
    pub(crate) baseline: Duration,
    pub(crate) out_dir: PathBuf,
    pub(crate) plots: bool,
    /// Copies of the report and plot under the seed tool's names.
    pub(crate) seed_names: bool,
    /// The py-spy that dumps a leaking process's stacks.
    pub(crate) py_spy: crate::diagnose::PySpy,
    /// Python heap attribution (`--py-heap`), and its frames per allocation.
    pub(crate) py_heap: bool,
    pub(crate) py_heap_frames: u16,
    /// The port to launch the server on (`None`: a free one).
    pub(crate) port: Option<u16>,
    /// How `port` was set, to name it when it cannot be used (an attached server).
    pub(crate) port_setting: Option<Setting>,
    pub(crate) progress: Option<Duration>,
    /// The setting that chose the API (`--api native` with vLLM is an error naming it).
    pub(crate) api_setting: Option<Setting>,
    /// The setting being applied (for choices and errors).
    pub(crate) applying: Option<Setting>,
    /// How `max_requests` was set, to name it if it cannot be used with the rest.
    max_requests_set: Option<Setting>,
    /// How the mix was set, to name it if the scenario cannot send one of its kinds.
    mix_set: Option<Setting>,
    /// Errors of setters, reported by `build`.
    errors: Vec<ConfigError>,
}

impl ScenarioConfig {
    /// A scenario named `name` sending `workload`, against SGLang unless told otherwise, with
    /// the defaults of every knob (100 measured requests 0.1 s apart, default thresholds,
    /// output under `target/memtest`).
    pub fn new(name: impl Into<String>, workload: Workload) -> Self {
        Self {
            name: name.into(),
            workload,
            default_target: TargetKind::Engine(ENGINES[0].name()),
            choices: Vec::new(),
            code_target: None,
            engines: BTreeMap::new(),
            engine_set: BTreeMap::new(),
            device: Device::Gpu,
            mem_fraction: None,
            language_model_only: false,
            server_env: Vec::new(),
            reference_args: Vec::new(),
            reference_bin: None,
            command: None,
            health_path: "/health".into(),
            attach_url: None,
            attach_pid: None,
            startup_timeout: Duration::from_secs(600),
            keep_server: false,
            reaper: true,
            watchdog: false,
            driver: DriverConfig::default(),
            tracker: TrackerConfig::default(),
            gpu: None,
            thresholds: Thresholds::default(),
            cooldown: CooldownConfig::default(),
            baseline: Duration::from_millis(500),
            out_dir: PathBuf::from("target/memtest"),
            plots: true,
            seed_names: false,
            py_spy: crate::diagnose::PySpy::Auto,
            py_heap: false,
            py_heap_frames: crate::diagnose::py_heap::DEFAULT_FRAMES,
            port: None,
            port_setting: None,
            progress: None,
            api_setting: None,
            applying: None,
            max_requests_set: None,
            mix_set: None,
            errors: Vec::new(),
        }
    }

    /// A text model receiving text requests: `text_model`, 100 requests 0.1 s apart, against
    /// `meta-llama/Llama-3.2-1B-Instruct` (`MEMTEST_TEXT_MODEL`).
    pub fn text_model() -> Self {
        Self::new("text_model", Workload::Text)
    }

    /// A VLM receiving text-only requests, so no image reaches the multimodal processor:
    /// `vlm_no_mm_processor`, 100 requests 0.1 s apart, against `Qwen/Qwen2.5-VL-3B-Instruct`
    /// (`MEMTEST_VLM_MODEL`).
    pub fn vlm_no_mm_processor() -> Self {
        Self::new("vlm_no_mm_processor", Workload::VlmText)
    }

    /// A VLM receiving one unique generated 448×448 PNG per request: `vlm_image`, 50 requests
    /// 0.2 s apart (the seed tool's runner).
    pub fn vlm_image() -> Self {
        Self::new("vlm_image", Workload::VlmImage(ImageConfig::default()))
            .requests(50)
            .request_interval(Duration::from_millis(200))
    }

    /// A contributor's scenario: `workload`'s requests (see
    /// [`Workload::custom`]) against the text model, or the VLM when the workload carries
    /// images; every other knob as [`new`](Self::new) (the image knobs do not change a custom
    /// workload's images).
    pub fn custom(name: impl Into<String>, workload: Workload) -> Self {
        Self::new(name, workload)
    }

    /// Every error path a text request can reach (streams, client disconnects, aborts of
    /// running and queued requests, rejections of over-long prompts, of too many new tokens and
    /// of an unknown parameter) mixed with plain requests: `error_paths`, 200 requests 0.1 s
    /// apart against the text model. See [`Mix::error_paths`](crate::load::Mix::error_paths).
    pub fn error_paths() -> Self {
        let mut c = Self::new("error_paths", Workload::Text).requests(200);
        c.driver.mix = crate::load::Mix::error_paths();
        c
    }

    /// The preset for a workload: [`text_model`](Self::text_model),
    /// [`vlm_no_mm_processor`](Self::vlm_no_mm_processor), [`vlm_image`](Self::vlm_image) with
    /// the workload's images, or [`custom`](Self::custom) named after the custom workload.
    pub fn preset(workload: Workload) -> Self {
        match workload {
            Workload::Text => Self::text_model(),
            Workload::VlmText => Self::vlm_no_mm_processor(),
            Workload::VlmImage(images) => Self::vlm_image().images(images),
            Workload::Custom(c) => {
                let name = c.name.clone();
                Self::custom(name, Workload::Custom(c))
            }
        }
    }

    /// The images of a `vlm-image` workload, which the image knobs and
    /// [`images`](Self::images) set; `None` for the others (a custom workload keeps its own).
    pub(crate) fn images_mut(&mut self) -> Option<&mut ImageConfig> {
        match &mut self.workload {
            Workload::VlmImage(images) => Some(images),
            _ => None,
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

    /// The settings of the engine named `name` (created on first use).
    pub(crate) fn engine_settings(&mut self, name: &'static str) -> &mut EngineSettings {
        self.engines.entry(name).or_default()
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
        self.env_overrides_from(crate::util::env::get)
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
        for k in KNOBS.iter() {
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
}

#[cfg(test)]
mod tests;
