//! From a configuration to a [`Scenario`]: which server (an engine's as its preset launches it:
//! `engine/`), the caches named in the report, and the checks of [`build`](ScenarioConfig::build).

use std::path::{Path, PathBuf};

use super::{Choice, ConfigError, Origin, ScenarioConfig, Setting, TargetKind, knob};
use crate::engine::CacheInfo;
use crate::engine::{Device, Preset, Server};
use crate::fixture::{ServerSpec, WaitFor};
use crate::load::{ImageSource, Workload};
use crate::scenario::{Scenario, Target};
use crate::tracker::GpuMode;

impl ScenarioConfig {
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
            let agrees_with_attach =
                attach && c.kind == TargetKind::Engine(crate::engine::ENGINES[0].name());
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

    /// Whether this scenario can send every kind of its mix.
    fn check_mix(&self, target: &Target) -> Result<(), ConfigError> {
        let mix = &self.driver.mix;
        let setting = || {
            self.mix_set.clone().unwrap_or_else(|| {
                let k = knob("mix").unwrap_or_else(|| unreachable!("mix is a knob"));
                Setting {
                    knob: k.name,
                    env: k.env,
                    flag: k.flag,
                    origin: Origin::Code,
                    value: mix.spec(),
                }
            })
        };
        let invalid = |expected: String| ConfigError::Invalid {
            setting: setting(),
            expected,
        };
        if matches!(self.workload, Workload::Custom(_)) && *mix != crate::load::Mix::plain() {
            return Err(invalid(
                "no mix with a custom workload: its source labels and builds every request itself"
                    .into(),
            ));
        }
        for kind in mix.kinds() {
            if kind.needs_images() && self.workload.images().is_none() {
                return Err(invalid(format!(
                    "kinds this scenario can send: {kind} sends images, which only a vlm-image scenario has"
                )));
            }
            if kind.needs_vlm() && !self.workload.needs_vlm() {
                return Err(invalid(format!(
                    "kinds this scenario can send: {kind} needs a VLM (vlm-text or vlm-image), this is a text scenario"
                )));
            }
            if kind.is_abort()
                && let Some(engine) = target.engine().map(Server::engine)
                && let Err(why) = engine.abort()
            {
                let name = engine.display_name();
                return Err(invalid(format!(
                    "kinds {name} serves: {kind} uses SGLang's /abort_request, which {name} does not have ({why})"
                )));
            }
        }
        if mix.kinds().any(|k| k == crate::load::RequestKind::AbortAll)
            && self.driver.concurrency > 1
        {
            return Err(invalid(format!(
                "abort-all with concurrency 1 only: it aborts every request on the server, so the {} other requests in flight would be aborted too",
                self.driver.concurrency - 1
            )));
        }
        Ok(())
    }

    /// What the scenario tells an engine's preset.
    fn engine_preset(&self) -> Preset<'_> {
        Preset {
            vlm: self.workload.needs_vlm(),
            images: self.workload.images().is_some(),
            language_model_only: self.language_model_only,
            device: self.device,
            mem_fraction: self.mem_fraction,
            server_env: &self.server_env,
        }
    }

    fn caches(&self, target: &Target) -> Vec<CacheInfo> {
        let vlm = self.workload.needs_vlm();
        let images = self.workload.images().is_some();
        match target {
            Target::Engine(server) => server.engine().caches(server, vlm, images),
            Target::Attach { .. } => {
                // Attached: SGLang's, as the default engine's (the model knob names it).
                let mut caches = crate::engine::sglang::sglang_caches(vlm, Device::Gpu);
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
                    None => reference_exe()?,
                },
                args: self.reference_args.clone(),
            },
            TargetKind::Engine(name) => {
                let engine = crate::engine::engine(name)
                    .ok_or_else(|| ConfigError::UnknownKnob(format!("engine {name}")))?;
                let settings = self.engines.get(name).cloned().unwrap_or_default();
                Target::Engine(engine.preset(&settings, &self.engine_preset()))
            }
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
        if let (Some(max), Some(setting)) = (self.driver.max_requests, &self.max_requests_set) {
            if self.driver.duration.is_some() {
                return Err(ConfigError::Requires {
                    setting: setting.clone(),
                    needs: "a run of a request count (num_requests), not of a duration: a soak's length is its duration",
                });
            }
            if max < self.driver.num_requests {
                return Err(ConfigError::Invalid {
                    setting: setting.clone(),
                    expected: format!(
                        "at least num_requests ({}): the budget counts the planned requests too; equal to it for a fixed length",
                        self.driver.num_requests
                    ),
                });
            }
        }
        self.check_engine_args(&target)?;
        if let Workload::VlmImage(images) = &self.workload
            && let ImageSource::Files(paths) = &images.source
        {
            for p in paths {
                check_image_dir(p)?;
            }
        }
        self.check_mix(&target)?;
        // Blocks at least as long as the concurrency: a block's requests then finish together.
        let block = u32::try_from(self.driver.concurrency)
            .unwrap_or(u32::MAX)
            .max(crate::load::DEFAULT_BLOCK);
        self.driver.mix = std::mem::take(&mut self.driver.mix).with_block(block);
        // A warm-up (unless switched off) sends every kind of a mix at least once.
        if self.driver.warmup_requests > 0 {
            let kinds = self.driver.mix.weights.len() as u64;
            self.driver.warmup_requests = self.driver.warmup_requests.max(kinds);
        }
        let caches = self.caches(&target);
        let mut tracker = self.tracker.clone();
        tracker.gpu = self.gpu.unwrap_or_else(|| default_gpu_mode(&target));
        Ok(Scenario {
            name: self.name,
            target,
            workload: self.workload,
            driver: crate::load::DriverConfig {
                seed: self.thresholds.seed,
                ..self.driver
            },
            thresholds: self.thresholds,
            tracker,
            cooldown: self.cooldown,
            baseline: self.baseline,
            out_dir: self.out_dir,
            startup_timeout: self.startup_timeout,
            keep_server: self.keep_server,
            reaper: self.reaper,
            watchdog: self.watchdog,
            caches,
            plots: self.plots,
            seed_names: self.seed_names,
            py_spy: self.py_spy,
            py_heap: self.py_heap.then_some(crate::diagnose::PyHeapConfig {
                frames: self.py_heap_frames,
            }),
            port: self.port,
            progress: self.progress,
        })
    }
}

impl ScenarioConfig {
    /// The one-call finish of a test: exactly
    /// `self.env_overrides()?.build()?.run_blocking().into_result()`, every error as the crate's
    /// [`Error`](crate::error::Error). The environment is layered here, over everything set
    /// before: call [`env_overrides`](Self::env_overrides) yourself where it should sit instead.
    ///
    /// ```no_run
    /// use sglang_memtest::{ScenarioConfig, tracker::metric};
    ///
    /// # fn main() -> sglang_memtest::Result<()> {
    /// let report = ScenarioConfig::text_model().max_new_tokens(64).check()?;
    /// assert!(report.metric(metric::HOST_RSS_TREE).is_some());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`](crate::error::Error::Config) for a setting that cannot be used, and
    /// [`Error::Run`](crate::error::Error::Run) with the whole report for a leak, an
    /// inconclusive verdict or a run that failed.
    pub fn check(self) -> crate::error::Result<crate::report::Report> {
        Ok(self
            .env_overrides()?
            .build()?
            .run_blocking()
            .into_result()?)
    }
}

impl ScenarioConfig {
    /// One engine's extra arguments given to the other, or SGLang's native API with vLLM, are an
    /// error, not silently dropped.
    fn check_engine_args(&self, target: &Target) -> Result<(), ConfigError> {
        if self.driver.api == crate::load::Api::Native
            && let Some(Err(needs)) = target.engine().map(|s| s.engine().native_api())
        {
            let k = knob("api").ok_or_else(|| ConfigError::UnknownKnob("api".into()))?;
            return Err(ConfigError::Requires {
                setting: self.api_setting.clone().unwrap_or(Setting {
                    knob: k.name,
                    env: k.env,
                    flag: k.flag,
                    origin: Origin::Code,
                    value: "native".into(),
                }),
                needs,
            });
        }
        if let (Target::Attach { .. }, Some(_)) = (target, self.port) {
            let k = knob("port").ok_or_else(|| ConfigError::UnknownKnob("port".into()))?;
            return Err(ConfigError::Requires {
                setting: self.port_setting.clone().unwrap_or(Setting {
                    knob: k.name,
                    env: k.env,
                    flag: k.flag,
                    origin: Origin::Code,
                    value: self.port.map(|p| p.to_string()).unwrap_or_default(),
                }),
                needs: "a server this run launches: an attached server's port is the one in --base-url",
            });
        }
        // An engine's knob given while another engine runs: an error when the knob says so
        // (its arguments, say), rather than silently dropped.
        let Some(running) = target.engine().map(|s| s.engine().name()) else {
            return Ok(());
        };
        for engine in crate::engine::ENGINES
            .iter()
            .filter(|e| e.name() != running)
        {
            let Some(settings) = self.engines.get(engine.name()) else {
                continue;
            };
            for k in engine.knobs() {
                let Some(needs) = k.elsewhere.filter(|_| settings.has(k)) else {
                    continue;
                };
                let setting = self.engine_set.get(k.name).cloned().unwrap_or(Setting {
                    knob: k.name,
                    env: k.env,
                    flag: k.flag,
                    origin: Origin::Code,
                    value: settings.shown(k).unwrap_or_default(),
                });
                return Err(ConfigError::Requires { setting, needs });
            }
        }
        Ok(())
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

/// GPU metrics unless told otherwise: required for SGLang or vLLM on a GPU, off for either on
/// the CPU (the report says why), used when present for everything else.
pub fn default_gpu_mode(target: &Target) -> GpuMode {
    match target.engine() {
        Some(server) if server.device() == Device::Cpu => GpuMode::Off,
        Some(_) => GpuMode::Required,
        None => GpuMode::Auto,
    }
}

/// The `sglang-memtest` executable that serves the reference server: the running executable
/// when it is `sglang-memtest`, else `sglang-memtest` next to the running executable or one
/// folder up (where cargo puts it for tests). `MEMTEST_REFERENCE_BIN` / `--reference-bin`
/// choose another.
///
/// # Errors
/// [`ConfigError::ReferenceBinary`] naming the places searched.
pub fn reference_exe() -> Result<PathBuf, ConfigError> {
    let me = std::env::current_exe().map_err(|e| ConfigError::ReferenceBinary {
        searched: format!("the running executable is unknown: {e}"),
    })?;
    if me.file_stem().is_some_and(|s| s == "sglang-memtest") {
        return Ok(me);
    }
    let candidates: Vec<PathBuf> = me
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("sglang-memtest"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| ConfigError::ReferenceBinary {
            searched: format!(
                "looked in {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}
