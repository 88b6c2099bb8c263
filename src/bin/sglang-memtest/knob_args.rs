//! The scenario flags, generated from the library's knob table (`sglang_memtest::config::KNOBS`):
//! one flag per knob, with its help, its environment variable and its default in `--help`.
//! Values are handed to `ScenarioConfig::cli_overrides` as strings, so the library parses and
//! bounds them — the same code that reads `MEMTEST_*`.

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use sglang_memtest::config::{KNOBS, Knob, KnobKind, Origin};

/// The knob flags given on the command line.
#[derive(Debug, Clone, Default)]
pub struct KnobArgs {
    values: Vec<(&'static Knob, String)>,
}

impl KnobArgs {
    /// `(knob, value, Origin::Flag)` for `ScenarioConfig::cli_overrides`.
    pub fn overrides(&self) -> impl Iterator<Item = (&'static Knob, &str, Origin)> {
        self.values
            .iter()
            .map(|(k, v)| (*k, v.as_str(), Origin::Flag))
    }
}

impl FromArgMatches for KnobArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut out = Self::default();
        out.update_from_arg_matches(m)?;
        Ok(out)
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        for k in KNOBS.iter().filter(|k| k.flag.is_some()) {
            if m.value_source(k.name) != Some(clap::parser::ValueSource::CommandLine) {
                continue;
            }
            match k.kind {
                KnobKind::Switch => {
                    if m.get_flag(k.name) {
                        self.values.push((k, "1".into()));
                    }
                }
                KnobKind::Value => {
                    if let Some(v) = m.get_one::<String>(k.name) {
                        self.values.push((k, v.clone()));
                    }
                }
                KnobKind::ShellList | KnobKind::CommaList => {
                    for v in m.get_many::<String>(k.name).into_iter().flatten() {
                        self.values.push((k, v.clone()));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Args for KnobArgs {
    fn augment_args(mut cmd: Command) -> Command {
        for k in KNOBS.iter() {
            let Some(flag) = k.flag else { continue };
            let help = format!("{} [env: {}] [default: {}]", k.help, k.env, k.default);
            let arg = Arg::new(k.name)
                .long(flag)
                .help(help)
                .help_heading(k.group.heading());
            let arg = match k.kind {
                KnobKind::Switch => arg.action(ArgAction::SetTrue),
                KnobKind::Value => arg
                    .action(ArgAction::Set)
                    .value_name(k.value_name)
                    .allow_hyphen_values(k.name == "server_cmd"),
                KnobKind::ShellList | KnobKind::CommaList => arg
                    .action(ArgAction::Append)
                    .value_name(k.value_name)
                    .allow_hyphen_values(true),
            };
            cmd = cmd.arg(arg);
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}
