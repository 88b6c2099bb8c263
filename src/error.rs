//! The crate's error: one variant per stage, each carrying that stage's typed error.

/// Anything that can stop a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Launching, readying or stopping the server failed.
    #[error(transparent)]
    Fixture(#[from] crate::fixture::FixtureError),
    /// The memory tracker could not start.
    #[error(transparent)]
    Tracker(#[from] crate::tracker::TrackerError),
    /// Driving requests failed (bad workload, too many failed requests).
    #[error(transparent)]
    Load(#[from] crate::load::LoadError),
    /// Writing a report failed.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// The scenario's configuration is invalid.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    /// The reference server failed.
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
