//! Every knob of a scenario, once: its name, environment variable, flag, default, range and
//! what it does. The environment layer ([`ScenarioConfig::env_overrides`]), the CLI (its
//! flags are generated from [`KNOBS`]) and the builder's setters all go through
//! [`Knob::apply`], so a value is parsed and bounded in exactly one place.
//!
//! [`ScenarioConfig::env_overrides`]: super::ScenarioConfig::env_overrides

mod parse;
mod requests;
mod server;
mod verdict;
mod vllm;

pub use parse::parse_bytes;

use super::{ScenarioConfig, TargetKind};
use crate::load::{ImageFormat, ImageSource};

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
    if let ImageSource::Generated {
        width,
        height,
        format,
    } = &mut c.images.source
    {
        f(width, height, format);
    }
}

/// Every knob, in the order they are applied and shown: the server's (`server.rs`, then vLLM's
/// in `vllm.rs`), what is sent (`requests.rs`, the images last), then measurement and outputs
/// (`verdict.rs`).
pub static KNOBS: &[Knob] = &concat::<ALL>([
    server::SERVER,
    vllm::VLLM,
    requests::REQUESTS,
    verdict::VERDICT,
]);

const ALL: usize =
    server::SERVER.len() + vllm::VLLM.len() + requests::REQUESTS.len() + verdict::VERDICT.len();

/// The groups' tables one after the other, at compile time (`N`: their total length).
const fn concat<const N: usize>(groups: [&[Knob]; 4]) -> [Knob; N] {
    let mut out = [groups[0][0]; N];
    let (mut g, mut at) = (0, 0);
    while g < groups.len() {
        let mut i = 0;
        while i < groups[g].len() {
            out[at] = groups[g][i];
            (i, at) = (i + 1, at + 1);
        }
        g += 1;
    }
    assert!(at == N, "N is the groups' total length");
    out
}

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
}
