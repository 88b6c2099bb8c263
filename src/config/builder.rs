//! The builder's setters of [`ScenarioConfig`]; those of a knob go through [`set`](ScenarioConfig::set).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ScenarioConfig, TargetKind};
use crate::analysis::Thresholds;
use crate::engine::Device;
use crate::load::{Api, ImageConfig};
use crate::scenario::{CooldownConfig, Target};
use crate::tracker::metric::MetricPattern;
use crate::tracker::{GpuMode, TrackerConfig};

impl ScenarioConfig {
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

    /// Budget of measured requests for an undecided run (default 4 × the planned count; equal
    /// to it for a fixed length). See [`adaptive`](crate::analysis::adaptive).
    pub fn max_requests(self, n: u64) -> Self {
        self.code("max_requests", n)
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

    /// Request kinds by weight (`plain` takes the rest); see [`Mix`](crate::load::Mix).
    pub fn mix(self, mix: &crate::load::Mix) -> Self {
        self.code("mix", mix.spec())
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
        self.engine_settings("sglang").args.push(arg.into());
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

    /// Run against an explicit [`Target`] (any [`ServerSpec`](crate::ServerSpec), for instance).
    pub fn target(mut self, target: Target) -> Self {
        self.code_target = Some(target);
        self
    }

    /// Attach to a server someone else runs.
    pub fn attach(self, base_url: impl AsRef<str>) -> Self {
        self.set("base_url", base_url)
    }

    /// The images of a `vlm-image` scenario (the other workloads have none to set).
    pub fn images(mut self, images: ImageConfig) -> Self {
        if let Some(i) = self.images_mut() {
            *i = images;
        }
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

    /// Also write the report and plot under the seed tool's names (`--seed-names`).
    pub fn seed_names(mut self, on: bool) -> Self {
        self.seed_names = on;
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
}
