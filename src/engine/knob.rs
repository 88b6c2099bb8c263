//! An engine's own settings: the knobs it declares in its file ([`EngineKnob`]), where their
//! values go ([`EngineSettings`]), and what every scenario tells an engine's preset ([`Preset`]).
//!
//! The configuration lists every engine's knobs among its own (`config::KNOBS`: the same
//! environment variables, flags, help and README table), parses them with the same code, and
//! keeps one [`EngineSettings`] per engine; at [`build`](crate::config::ScenarioConfig::build) the
//! chosen engine turns its settings into a [`Server`] ([`Engine::preset`](super::Engine::preset)).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Device, Server};
use crate::util::Invalid;

/// Default text model (the seed tool's).
pub const DEFAULT_TEXT_MODEL: &str = "meta-llama/Llama-3.2-1B-Instruct";
/// Default VLM (the seed tool's).
pub const DEFAULT_VLM_MODEL: &str = "Qwen/Qwen2.5-VL-3B-Instruct";

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

/// What an engine knob sets.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// The model of every scenario: setting it chooses the engine.
    Model,
    /// The model of text scenarios (chooses the engine for them).
    TextModel,
    /// The model of VLM scenarios (chooses the engine for them).
    VlmModel,
    /// The Python interpreter that has the engine.
    Python,
    /// One extra argument of the engine (repeatable).
    Arg,
    /// A value of the engine's own, checked (and written in a normal form) by the function:
    /// `Err` says what would be accepted.
    Value(fn(&str) -> Result<String, Invalid>),
}

/// One setting of an engine, declared in the engine's file.
#[derive(Debug, Clone, Copy)]
pub struct EngineKnob {
    /// The name (`vllm_model`), as in errors and `ScenarioConfig::set`.
    pub name: &'static str,
    /// The environment variable (`MEMTEST_VLLM_MODEL`).
    pub env: &'static str,
    /// The command-line flag without dashes; `None`: environment only.
    pub flag: Option<&'static str>,
    /// The value's placeholder in help.
    pub value_name: &'static str,
    /// The default, for a person.
    pub default: &'static str,
    /// What it does, in one sentence.
    pub help: &'static str,
    /// How it takes its value.
    pub kind: KnobKind,
    /// What it sets.
    pub role: Role,
    /// Set while another engine is the target: an error that says what the knob needs (`None`:
    /// ignored).
    pub elsewhere: Option<&'static str>,
}

/// The values of one engine's knobs.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    /// The model of every scenario.
    pub model: Option<String>,
    /// The model of text scenarios.
    pub text_model: Option<String>,
    /// The model of VLM scenarios.
    pub vlm_model: Option<String>,
    /// The interpreter (`python3` when not set).
    pub python: Option<PathBuf>,
    /// Extra arguments, in order.
    pub args: Vec<String>,
    values: BTreeMap<&'static str, String>,
}

impl EngineSettings {
    /// The model for a text or a VLM scenario: the scenario's own setting, else the shared one,
    /// else the default text or VLM model.
    pub fn model(&self, vlm: bool) -> String {
        let own = if vlm {
            &self.vlm_model
        } else {
            &self.text_model
        };
        own.clone()
            .or_else(|| self.model.clone())
            .unwrap_or_else(|| {
                if vlm {
                    DEFAULT_VLM_MODEL
                } else {
                    DEFAULT_TEXT_MODEL
                }
                .to_owned()
            })
    }

    /// The value of the knob `name` ([`Role::Value`]), as its check wrote it.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether `knob` was given a value (its model, interpreter, an argument or a value).
    pub fn has(&self, knob: &EngineKnob) -> bool {
        match knob.role {
            Role::Model => self.model.is_some(),
            Role::TextModel => self.text_model.is_some(),
            Role::VlmModel => self.vlm_model.is_some(),
            Role::Python => self.python.is_some(),
            Role::Arg => !self.args.is_empty(),
            Role::Value(_) => self.values.contains_key(knob.name),
        }
    }

    /// Sets `knob` from `value` (one item of a list); `Err` says what would be accepted.
    pub(crate) fn apply(&mut self, knob: &'static EngineKnob, value: &str) -> Result<(), String> {
        let nonempty = |what: &str| {
            let t = value.trim();
            if t.is_empty() {
                Err(format!("{what}, not empty"))
            } else {
                Ok(t.to_owned())
            }
        };
        match knob.role {
            Role::Model => self.model = Some(nonempty("a model path or id")?),
            Role::TextModel => self.text_model = Some(nonempty("a model path or id")?),
            Role::VlmModel => self.vlm_model = Some(nonempty("a model path or id")?),
            Role::Python => {
                self.python = Some(PathBuf::from(nonempty("an interpreter path or name")?));
            }
            Role::Arg => self.args.push(value.to_owned()),
            Role::Value(check) => {
                self.values
                    .insert(knob.name, check(value).map_err(|e| e.0)?);
            }
        }
        Ok(())
    }

    /// The value of `knob` for an error that names it (`None`: not set).
    pub fn shown(&self, knob: &EngineKnob) -> Option<String> {
        match knob.role {
            Role::Model => self.model.clone(),
            Role::TextModel => self.text_model.clone(),
            Role::VlmModel => self.vlm_model.clone(),
            Role::Python => self.python.as_ref().map(|p| p.display().to_string()),
            Role::Arg => (!self.args.is_empty()).then(|| self.args.join(" ")),
            Role::Value(_) => self.values.get(knob.name).cloned(),
        }
    }
}

/// What a scenario tells the engine's preset, besides the engine's own settings: the
/// requests, and the settings every engine shares.
#[derive(Debug, Clone, Copy)]
pub struct Preset<'a> {
    /// The requests go to a VLM.
    pub vlm: bool,
    /// They carry images.
    pub images: bool,
    /// Build only the language model of a VLM (text-only requests to a VLM).
    pub language_model_only: bool,
    /// Where the model runs.
    pub device: Device,
    /// The share of GPU memory, when set.
    pub mem_fraction: Option<f64>,
    /// Environment for the server, after the engine's own.
    pub server_env: &'a [(String, String)],
}

impl Preset<'_> {
    /// What every engine's preset ends with: the interpreter, the device, the memory share when
    /// set, and the environment given for the server (after the engine's own, so it wins).
    pub fn finish(&self, server: Server, settings: &EngineSettings) -> Server {
        let mut server = server
            .with_python(
                settings
                    .python
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("python3")),
            )
            .with_device(self.device);
        if let Some(f) = self.mem_fraction {
            server = server.with_mem_fraction(f);
        }
        for (k, v) in self.server_env {
            server = server.with_env(k, v);
        }
        server
    }

    /// Text-only requests to a VLM with `language_model_only`: `--language-model-only`.
    pub fn language_model_only(&self) -> bool {
        self.vlm && !self.images && self.language_model_only
    }
}
