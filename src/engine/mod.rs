//! Engines: everything the harness knows about one inference server, in one file each, behind
//! one trait ([`Engine`]), registered in one list ([`ENGINES`]).
//!
//! testcontainers' shape: an [`Engine`] is their `Image` (what is launched and how to tell it is
//! ready), and [`Server`] is their `ImageExt`: the one builder every engine's server shares
//! (model, interpreter, device, memory share, arguments, environment, port). An engine file says
//! what only that engine knows:
//!
//! | what | trait item | used by |
//! |---|---|---|
//! | the launch command, readiness, environment | [`Engine::argv`], [`Engine::launch`] | [`Server::into_spec`] |
//! | the preflight (is it installed?) | [`Engine::module`], [`Engine::install_hint`] | the scenario, before launching |
//! | routes: `/generate`, `/abort_request`, `/flush_cache` | [`Engine::native_api`], [`Engine::abort`], [`Engine::flush`] | the configuration's checks, the cooldown |
//! | `/metrics` gauges and their names here | [`Engine::gauges`] | `tracker::server` |
//! | its accounting at idle (KV in use, requests running) | [`Engine::idle_route`], [`Engine::idle_from_metrics`] | `tracker::idle` |
//! | process roles (`scheduler`, `EngineCore`, …) | [`Engine::role`] | `tracker`'s process table |
//! | the log lines of its own memory checks | [`Engine::log_patterns`] | the fixture's log watch |
//! | the caches that grow with unique input, and the words for them | [`Engine::caches`] | the report, its likely causes |
//! | its knobs, and its server as the presets launch it | [`Engine::knobs`], [`Engine::preset`] | the configuration |
//!
//! A new engine is one file here implementing [`Engine`] plus one line in [`ENGINES`] (the
//! README's contributor section has the recipe). The reference server and "any command" are not
//! engines: they are targets of their own (`scenario::Target`) that speak an engine's HTTP API.
//!
//! This room sits just above the fixture (an engine's launch is a
//! [`ServerSpec`](crate::fixture::ServerSpec)) and below everything that reads engine knowledge:
//! the tracker, the report, the scenario and the configuration all look engines up in
//! [`ENGINES`]. The fixture, below, gets what it needs as values (the log patterns in the spec).

mod cache;
pub mod idle;
pub mod knob;
mod server;
pub mod sglang;
pub mod vllm;

use std::fmt;

pub use cache::{CacheGrowth, CacheInfo, cpu_malloc_cache};
pub use knob::{
    DEFAULT_TEXT_MODEL, DEFAULT_VLM_MODEL, EngineKnob, EngineSettings, KnobKind, Preset, Role,
};
pub use server::Server;
pub use sglang::Sglang;
pub use vllm::Vllm;

use crate::fixture::ServerSpec;
use crate::fixture::logwatch::{LogPattern, PYTHON_PATTERNS};

/// Every engine the harness knows, in the order their knowledge is consulted (metric names,
/// roles, log patterns, knobs); the first is the default engine of the presets. **Adding an
/// engine: one line here.**
pub static ENGINES: &[&dyn Engine] = &[&Sglang, &Vllm];

/// The engine named `name` (`sglang`, `vllm`).
pub fn engine(name: &str) -> Option<&'static dyn Engine> {
    ENGINES.iter().copied().find(|e| e.name() == name)
}

/// One inference engine: what the harness must know to launch it, judge it and explain it.
/// Items with a default are what an engine without that feature answers.
pub trait Engine: fmt::Debug + Send + Sync + 'static {
    /// `sglang`: the report's target kind, the server's name, a log pattern's engine.
    fn name(&self) -> &'static str;

    /// `SGLang`: the engine in sentences.
    fn display_name(&self) -> &'static str;

    /// The launch command after the interpreter (`-m sglang.launch_server --model-path …`), with
    /// `{host}` and `{port}` for the fixture to fill in.
    fn argv(&self, server: &Server) -> Vec<String>;

    /// What the engine adds to the spec every server gets (name, `GET /health`, 600 s,
    /// `PYTHONUNBUFFERED=1`, stopped root first, a private `TMPDIR`): readiness beyond `/health`,
    /// environment, and on the CPU its CPU environment. The caller's environment comes after.
    fn launch(&self, server: &Server, spec: ServerSpec) -> ServerSpec {
        let _ = server;
        spec
    }

    /// The Python module a preflight imports (`sglang`).
    fn module(&self) -> &'static str;

    /// What to do when [`module`](Self::module) is not importable by `python`: the sentence after
    /// "… is not importable by PYTHON: DETAIL.".
    fn install_hint(&self, python: &str) -> String;

    /// Whether it serves SGLang's native `/generate`; `Err` says what to use instead.
    fn native_api(&self) -> Result<(), &'static str> {
        Ok(())
    }

    /// Whether it serves SGLang's `/abort_request`; `Err` completes "…, which ENGINE does not
    /// have (…)".
    fn abort(&self) -> Result<(), &'static str> {
        Ok(())
    }

    /// The route that empties its caches at the cooldown; `Err`: the note for the report
    /// saying why there is none.
    fn flush(&self) -> Result<&'static str, &'static str> {
        Ok("/flush_cache")
    }

    /// Its `/metrics` gauges recorded as `server.*` metrics.
    fn gauges(&self) -> &'static [Gauge] {
        &[]
    }

    /// A JSON route that gives its accounting at idle (KV in use, requests running), tried
    /// before `/metrics` for every target that speaks HTTP.
    fn idle_route(&self) -> Option<idle::IdleRoute> {
        None
    }

    /// Its accounting at idle from a `/metrics` page; `None`: the page has not its gauges (the
    /// next engine of [`ENGINES`] is asked).
    fn idle_from_metrics(&self, page: &idle::MetricsPage<'_>) -> Option<idle::IdleReading> {
        let _ = page;
        None
    }

    /// The gauge that shows its accounting is served (`sglang:num_used_tokens`), for the
    /// sentence that says none was.
    fn idle_metrics_hint(&self) -> Option<&'static str> {
        None
    }

    /// The role of one of its processes (`scheduler`, `EngineCore`, `api_server`), from the
    /// process's command line; `None`: not one of its processes.
    fn role(&self, cmd: &Cmdline<'_>) -> Option<String>;

    /// The log lines of its own memory checks (the fixture also watches for Python's and
    /// PyTorch's out-of-memory errors, whichever engine).
    fn log_patterns(&self) -> &'static [LogPattern] {
        &[]
    }

    /// Its knobs (model, interpreter, arguments, its own values), listed by the configuration
    /// among every other knob.
    fn knobs(&self) -> &'static [EngineKnob] {
        &[]
    }

    /// Its server as the presets launch it, from its knobs' values and what the scenario says
    /// (the caches that would read as growth switched off, the user's arguments last);
    /// [`Preset::finish`] adds what every engine's preset ends with.
    fn preset(&self, settings: &EngineSettings, preset: &Preset<'_>) -> Server;

    /// The caches of `server` that grow with unique input, as its arguments and environment set
    /// them, for a run whose requests are text (`vlm`: to a VLM; `images`: with images). A
    /// cache that is on and that this run fills carries a [`CacheGrowth`].
    fn caches(&self, server: &Server, vlm: bool, images: bool) -> Vec<CacheInfo>;
}

/// A command line, split the ways an engine recognises its processes by.
#[derive(Debug, Clone, Copy)]
pub struct Cmdline<'a> {
    /// The first word of `argv[0]`: a process title such as `sglang::scheduler_TP0`.
    pub title: &'a str,
    /// `argv[0]`'s file name (`python3`, `vllm`, `sglang`).
    pub program: &'a str,
    /// `argv[1]` (`serve`).
    pub sub: Option<&'a str>,
    /// The module after `-m` (`sglang.launch_server`).
    pub module: Option<&'a str>,
}

impl<'a> Cmdline<'a> {
    /// The parts of `cmdline` (`/proc/PID/cmdline`, split at NULs).
    pub fn new(cmdline: &'a [String]) -> Self {
        let first = cmdline.first().map(|s| s.trim()).unwrap_or("");
        Self {
            title: first.split_whitespace().next().unwrap_or(""),
            program: first.rsplit('/').next().unwrap_or(first),
            sub: cmdline.get(1).map(String::as_str),
            module: cmdline
                .iter()
                .position(|a| a == "-m")
                .and_then(|i| cmdline.get(i + 1))
                .map(String::as_str),
        }
    }

    /// The role a process title gives after `prefix` (`sglang::scheduler_TP0` → `scheduler_TP0`).
    pub fn titled(&self, prefix: &str) -> Option<String> {
        self.title
            .strip_prefix(prefix)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
    }
}

/// How a gauge is folded over label sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// Counts add up over data-parallel ranks and models.
    Sum,
    /// Ratios are averaged (a sum of two 0.6 usages is not 1.2).
    Mean,
}

/// One `/metrics` gauge recorded: the Prometheus name with `:` written `_`
/// (`sglang_num_running_reqs`), our metric (`server.num_running_reqs`), and how label sets fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge {
    /// The Prometheus name, `:` written `_`.
    pub prometheus: &'static str,
    /// The metric it is recorded as.
    pub metric: &'static str,
    /// How its label sets fold into one value.
    pub fold: Fold,
}

/// Where an engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Device {
    /// NVIDIA GPU (the engines' default).
    #[default]
    Gpu,
    /// The host CPU: SGLang's CPU engine (`SGLANG_USE_CPU_ENGINE=1 --device cpu`) with
    /// torch-native attention, a bounded KV pool and the idle scheduler asleep; vLLM's CPU build.
    Cpu,
}

impl Device {
    /// `gpu` or `cpu`.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Gpu => "gpu",
            Device::Cpu => "cpu",
        }
    }
}

impl std::str::FromStr for Device {
    type Err = crate::util::Invalid;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "gpu" | "cuda" => Ok(Device::Gpu),
            "cpu" => Ok(Device::Cpu),
            _ => Err(crate::util::Invalid(format!(
                "unknown device {s:?}: use gpu or cpu"
            ))),
        }
    }
}

/// glibc malloc settings for an engine on the CPU (the server's own `with_env` still wins): a
/// fixed mmap threshold instead of glibc's dynamic one. With the dynamic threshold every freed
/// image tensor raises the threshold, later tensors of that size come from the heap, and the heap
/// keeps what they free: measured on the CPU tier, SGLang's scheduler's RSS then creeps ~50 KiB
/// per unique image and is never given back, while with a fixed 128 KiB threshold (or tcmalloc,
/// or jemalloc) it grows ~7–10 KiB per image. A real leak (objects kept alive) grows either way,
/// so this removes allocator hysteresis without hiding leaks (`docs/validation-sglang-cpu.md`).
pub const CPU_MALLOC_ENV: [(&str, &str); 2] = [
    ("MALLOC_MMAP_THRESHOLD_", "131072"),
    ("MALLOC_TRIM_THRESHOLD_", "131072"),
];

/// Every log pattern the fixture watches for: each engine's, in [`ENGINES`] order, then
/// Python's and PyTorch's (first match wins). Every scenario watches for all of them, whatever
/// it launched: an engine behind "any command" or an attached server prints the same lines.
pub fn log_patterns() -> Vec<&'static LogPattern> {
    ENGINES
        .iter()
        .flat_map(|e| e.log_patterns())
        .chain(PYTHON_PATTERNS)
        .collect()
}

/// The role `cmdline` has in any engine's tree.
pub fn role(cmdline: &[String]) -> Option<String> {
    let cmd = Cmdline::new(cmdline);
    ENGINES.iter().find_map(|e| e.role(&cmd))
}

/// The value the last `--flag V` or `--flag=V` in `args` gives (argparse: the last one wins).
pub(crate) fn last_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let mut found = None;
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        if a == flag {
            found = it.peek().map(|v| v.as_str());
        } else if let Some(v) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            found = Some(v);
        }
    }
    found
}

/// Whether the last of `on` / `off` in `args` is `on` (`None`: neither is there).
pub(crate) fn last_switch(args: &[String], on: &str, off: &str) -> Option<bool> {
    args.iter().rev().find_map(|a| {
        if a == on {
            Some(true)
        } else if a == off {
            Some(false)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests;
