//! Every knob of a scenario, once: its name, environment variable, flag, default, range and
//! what it does. The environment layer ([`ScenarioConfig::env_overrides`]), the CLI (its
//! flags are generated from [`KNOBS`]) and the builder's setters all go through
//! [`Knob::apply`], so a value is parsed and bounded in exactly one place.
//!
//! [`ScenarioConfig::env_overrides`]: super::ScenarioConfig::env_overrides

mod diagnose;
mod parse;
mod requests;
mod server;
mod verdict;

pub use parse::parse_bytes;

use std::sync::LazyLock;

use super::{ScenarioConfig, TargetKind};
use crate::engine::{ENGINES, Engine, EngineKnob, Role};
use crate::load::{ImageConfig, ImageFormat, ImageSource};

/// How a knob takes its value (the engines declare theirs with it too).
pub use crate::engine::KnobKind;

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
#[derive(Clone, Copy)]
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

fn choose_target(c: &mut ScenarioConfig, kind: TargetKind) {
    c.choose(kind);
}

fn set_generated(c: &mut ScenarioConfig, f: impl FnOnce(&mut u32, &mut u32, &mut ImageFormat)) {
    if let Some(ImageConfig {
        source:
            ImageSource::Generated {
                width,
                height,
                format,
            },
        ..
    }) = c.images_mut()
    {
        f(width, height, format);
    }
}

/// Every knob, in the order they are applied and shown: which reference server (`server.rs`),
/// every engine's own (declared in its file under `engine/`, in
/// [`ENGINES`](crate::engine::ENGINES) order), the rest of the server's (`server.rs`), what is
/// sent (`requests.rs`, the images last), then measurement and outputs (`verdict.rs`).
pub static KNOBS: LazyLock<Vec<Knob>> = LazyLock::new(|| {
    let engines = ENGINES.iter().flat_map(|e| e.knobs()).map(|k| Knob {
        name: k.name,
        env: k.env,
        flag: k.flag,
        value_name: k.value_name,
        default: k.default,
        help: k.help,
        kind: k.kind,
        group: Group::Server,
        apply: apply_engine_knob,
    });
    server::REFERENCE
        .iter()
        .copied()
        .chain(engines)
        .chain(server::SERVER.iter().copied())
        .chain(requests::REQUESTS.iter().copied())
        .chain(verdict::VERDICT.iter().copied())
        .chain(diagnose::DIAGNOSE.iter().copied())
        .collect()
});

/// The engine knob being applied (named by `c.applying`), and its engine.
pub(crate) fn engine_knob(name: &str) -> Option<(&'static dyn Engine, &'static EngineKnob)> {
    ENGINES
        .iter()
        .find_map(|e| e.knobs().iter().find(|k| k.name == name).map(|k| (*e, k)))
}

/// An engine's knob: its value into the engine's settings; a model chooses the engine (for the
/// scenarios it names a model of).
fn apply_engine_knob(c: &mut ScenarioConfig, v: &str) -> Result<(), String> {
    let name = c.applying.as_ref().map(|s| s.knob).unwrap_or_default();
    let Some((engine, knob)) = engine_knob(name) else {
        return Err(format!("a knob of an engine ({name} is none)"));
    };
    c.engine_settings(engine.name()).apply(knob, v)?;
    let chooses = match knob.role {
        Role::Model => true,
        Role::TextModel => !c.workload.needs_vlm(),
        Role::VlmModel => c.workload.needs_vlm(),
        Role::Python | Role::Arg | Role::Value(_) => false,
    };
    if chooses {
        choose_target(c, TargetKind::Engine(engine.name()));
    }
    if let Some(setting) = c.applying.clone() {
        c.engine_set.insert(knob.name, setting);
    }
    Ok(())
}

/// The README's table of knobs, from [`KNOBS`] (`sglang-memtest knobs` prints it).
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | flag | default | meaning |\n|---|---|---|---|\n");
    for k in KNOBS.iter() {
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
        for k in KNOBS.iter() {
            assert!(names.insert(k.name), "{}", k.name);
            assert!(envs.insert(k.env), "{}", k.env);
            if let Some(f) = k.flag {
                assert!(flags.insert(f), "{f}");
                assert_eq!(f.replace('-', "_"), k.name, "flag and name agree");
            }
        }
    }
}
