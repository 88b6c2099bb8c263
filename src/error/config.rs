//! [`ConfigError`]: a setting that cannot be used, named as the user wrote it.

use std::fmt;
use std::path::PathBuf;

/// Where a setting came from, to name it in an error the way the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Set in code ([`ScenarioConfig`](crate::config::ScenarioConfig)'s builder or a preset).
    Code,
    /// An environment variable (`MEMTEST_*`).
    Env,
    /// A command-line flag.
    Flag,
}

/// A knob as the user set it: `MEMTEST_NUM_REQUESTS=abc`, `--num-requests abc` or
/// `num_requests = abc (set in code)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The knob's name (`num_requests`).
    pub knob: &'static str,
    /// Its environment variable.
    pub env: &'static str,
    /// Its flag, if it has one.
    pub flag: Option<&'static str>,
    /// Where the value came from.
    pub origin: Origin,
    /// The value as given.
    pub value: String,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.origin, self.flag) {
            (Origin::Env, _) | (Origin::Flag, None) => write!(f, "{}={:?}", self.env, self.value),
            (Origin::Flag, Some(flag)) => write!(f, "--{flag} {:?}", self.value),
            (Origin::Code, _) => write!(f, "{} = {:?} (set in code)", self.knob, self.value),
        }
    }
}

/// A configuration that cannot run, found before anything is launched. Every variant names
/// the setting as the user wrote it and what would be accepted.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("{setting} is not valid: expected {expected}")]
    Invalid {
        /// The setting.
        setting: Setting,
        /// What would be accepted, with the range.
        expected: String,
    },
    /// Two settings choose different servers.
    #[error("{first} and {second} choose different servers: keep one")]
    ConflictingTargets {
        /// One choice.
        first: Box<Setting>,
        /// The other.
        second: Box<Setting>,
    },
    /// A setting that only means something with another one.
    #[error("{setting} needs {needs}")]
    Requires {
        /// The setting.
        setting: Setting,
        /// What it needs, as the user would set it.
        needs: &'static str,
    },
    /// The image folder cannot be used.
    #[error("the image folder {} cannot be used: {why}", path.display())]
    ImageDir {
        /// The folder.
        path: PathBuf,
        /// Why, in a phrase.
        why: String,
    },
    /// The `sglang-memtest` executable that serves the reference server was not found.
    #[error(
        "cannot find the sglang-memtest executable for the reference server ({searched}); set MEMTEST_REFERENCE_BIN (--reference-bin) or build it with `cargo build`"
    )]
    ReferenceBinary {
        /// Where it was looked for.
        searched: String,
    },
    /// There is no knob of that name.
    #[error("there is no setting named {0:?} (see `sglang-memtest knobs`)")]
    UnknownKnob(String),
}

impl ConfigError {
    /// The knob this error is about, when it is about one.
    pub fn knob(&self) -> Option<&'static str> {
        match self {
            ConfigError::Invalid { setting, .. } | ConfigError::Requires { setting, .. } => {
                Some(setting.knob)
            }
            ConfigError::ConflictingTargets { second, .. } => Some(second.knob),
            _ => None,
        }
    }
}
