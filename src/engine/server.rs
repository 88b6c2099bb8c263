//! [`Server`]: the one builder every engine's server shares (testcontainers' `ImageExt`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{CPU_MALLOC_ENV, Device, Engine};
use crate::fixture::{ServerSpec, StopOrder, WaitFor};

/// A server of one [`Engine`]: the model, the interpreter that has the engine, where it runs,
/// its share of GPU memory, the KV pool's size, extra arguments and environment, the port.
/// Each setting means the same for every engine; an engine ignores one it has no flag for (its
/// file says which).
///
/// `Server::sglang(model)` and `Server::vllm(model)` start one (or [`Server::new`] with any
/// engine of [`ENGINES`](super::ENGINES)); [`into_spec`](Self::into_spec) is the launch.
#[derive(Debug, Clone)]
pub struct Server {
    engine: &'static dyn Engine,
    /// The model path or Hugging Face id.
    pub model_path: String,
    device: Device,
    python: PathBuf,
    mem_fraction: Option<f64>,
    max_total_tokens: Option<u64>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: Option<u16>,
}

impl Server {
    /// A server of `engine` for `model_path`, run by `python3`, on a GPU, with the engine's own
    /// defaults for everything else.
    pub fn new(engine: &'static dyn Engine, model_path: impl Into<String>) -> Self {
        Self {
            engine,
            model_path: model_path.into(),
            device: Device::Gpu,
            python: PathBuf::from("python3"),
            mem_fraction: None,
            max_total_tokens: None,
            args: Vec::new(),
            env: Vec::new(),
            port: None,
        }
    }

    /// The engine.
    pub fn engine(&self) -> &'static dyn Engine {
        self.engine
    }

    /// Where the model runs (default [`Device::Gpu`]); what the engine adds on the CPU is in
    /// its file.
    pub fn with_device(mut self, device: Device) -> Self {
        self.device = device;
        self
    }

    /// Where the model runs.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The Python interpreter that has the engine installed (default `python3`).
    pub fn with_python(mut self, p: impl Into<PathBuf>) -> Self {
        self.python = p.into();
        self
    }

    /// The Python interpreter that will run the engine.
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// The share of GPU memory the engine may take (SGLang's `--mem-fraction-static`, default
    /// 0.7; vLLM's `--gpu-memory-utilization` on a GPU, vLLM's own 0.9 when not set).
    pub fn with_mem_fraction(mut self, f: f64) -> Self {
        self.mem_fraction = Some(f);
        self
    }

    /// The share set by [`with_mem_fraction`](Self::with_mem_fraction).
    pub fn mem_fraction(&self) -> Option<f64> {
        self.mem_fraction
    }

    /// The KV pool's size in tokens (SGLang's `--max-total-tokens`).
    pub fn with_max_total_tokens(mut self, tokens: u64) -> Self {
        self.max_total_tokens = Some(tokens);
        self
    }

    /// The size set by [`with_max_total_tokens`](Self::with_max_total_tokens).
    pub fn max_total_tokens(&self) -> Option<u64> {
        self.max_total_tokens
    }

    /// Appends extra server arguments (after the engine's own: the last of a flag wins).
    pub fn with_args(mut self, a: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    /// The extra arguments, in order.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Sets an environment variable for the server (after the engine's own: later ones win).
    pub fn with_env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// The environment set with [`with_env`](Self::with_env), in order.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Uses this port instead of a free one.
    pub fn with_port(mut self, p: u16) -> Self {
        self.port = Some(p);
        self
    }

    /// The spec: `<python> <the engine's argv>`, named after the engine, ready when `GET /health`
    /// answers 200 (and whatever the engine adds), startup timeout 600 s, `PYTHONUNBUFFERED=1` so
    /// the log streams as it is written, stopped root first ([`StopOrder::RootFirst`]: Python
    /// engines stop their children themselves), a private `TMPDIR` (engines leave ZMQ sockets
    /// there at every stop); then the engine's own settings, on the CPU the fixed glibc mmap
    /// threshold of [`CPU_MALLOC_ENV`], the caller's environment, and the watched log patterns.
    pub fn into_spec(self) -> ServerSpec {
        let engine = self.engine;
        let py = self.python.display().to_string();
        let module = engine.module();
        let spec = ServerSpec::command(&self.python, engine.argv(&self))
            .with_name(engine.name())
            .with_startup_timeout(Duration::from_secs(600))
            .with_wait_for(WaitFor::http_ok("/health"))
            .with_env("PYTHONUNBUFFERED", "1")
            .with_stop_order(StopOrder::RootFirst)
            .with_private_tmp(true)
            .with_spawn_hint(format!(
                "is {} installed in {py}? try `{py} -c 'import {module}'`",
                engine.display_name()
            ))
            .with_log_patterns(super::log_patterns());
        let mut spec = engine.launch(&self, spec);
        if self.device == Device::Cpu {
            for (k, v) in CPU_MALLOC_ENV {
                spec = spec.with_env(k, v);
            }
        }
        for (k, v) in self.env {
            spec = spec.with_env(k, v);
        }
        if let Some(p) = self.port {
            spec = spec.with_port(p);
        }
        spec
    }
}
