//! The errors a run can end with: the crate's [`Error`] (one variant per stage, each carrying
//! that stage's typed error, plus the configuration and a run that did not pass), and the two it
//! joins that belong to no single stage: [`ConfigError`] (`config.rs`, re-exported as
//! `config::ConfigError`) and [`ScenarioError`] (`scenario.rs`, re-exported as
//! `scenario::ScenarioError`).
//!
//! This room sits above the stages and the report and below the scenario that produces these
//! errors. The report holds a run's error through its own [`RunCause`] trait, so the data model
//! does not know this type; [`RunError::cause`](crate::report::RunError::cause) gives it back.

mod config;
mod scenario;

use std::fmt;

pub use config::{ConfigError, Origin, Setting};
pub use scenario::ScenarioError;

use crate::report::{ErrorKind, RunCause, RunFailure};

/// Anything that can stop a run, or a run that did not pass.
///
/// `Debug` prints the same sentences as `Display`, with the chain of causes, so that a test
/// returning `Result<(), Error>` fails with a readable message instead of a struct dump.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot run (found before anything is launched).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Launching, readying or stopping the server failed.
    #[error(transparent)]
    Fixture(#[from] crate::fixture::FixtureError),
    /// The memory tracker could not start.
    #[error(transparent)]
    Tracker(#[from] crate::tracker::TrackerError),
    /// Driving requests failed (bad workload, too many failed requests, the server gone).
    #[error(transparent)]
    Load(#[from] crate::load::LoadError),
    /// Reading or writing a report failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// The raw files of a run could not be read back.
    #[error(transparent)]
    Replay(#[from] crate::tracker::ReplayError),
    /// A condition of the run itself (the server exited, nothing measured, ...).
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// The run finished and did not pass: a leak, inconclusive, or an error above.
    #[error(transparent)]
    Run(#[from] RunFailure),
}

impl Error {
    /// Whether the user has something to fix before running again ([`ErrorKind::Setup`]) or
    /// the run itself failed ([`ErrorKind::Run`]).
    pub fn kind(&self) -> ErrorKind {
        use crate::fixture::FixtureError as F;
        use ScenarioError as S;
        match self {
            Error::Config(_) | Error::Tracker(_) => ErrorKind::Setup,
            Error::Fixture(F::Teardown { .. } | F::Cancelled { .. }) => ErrorKind::Run,
            Error::Fixture(_) => ErrorKind::Setup,
            Error::Load(crate::load::LoadError::Images(_) | crate::load::LoadError::Client(_)) => {
                ErrorKind::Setup
            }
            Error::Load(_) | Error::Report(_) | Error::Replay(_) => ErrorKind::Run,
            Error::Scenario(
                S::OutDirNotWritable { .. }
                | S::GpuRequired(_)
                | S::EngineMissing { .. }
                | S::AttachUnreachable { .. }
                | S::NothingJudged,
            ) => ErrorKind::Setup,
            Error::Scenario(_) => ErrorKind::Run,
            Error::Run(f) => f.error_kind().unwrap_or(ErrorKind::Run),
        }
    }
}

impl RunCause for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::util::error_chain(self))
    }
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
