//! The statistics' leaf: the checked sample, the trend (Theil–Sen, Kendall's interval, the normal
//! tails), least squares, and the batch-means reducer, over plain numbers. It does no I/O and
//! imports nothing of the crate but `util`'s serde helper, so every layer may use it: the
//! tracker's store fills the batch means, the verdicts, by-kind attribution, sweeps and fleets
//! read the rest. `tests/layers.rs` keeps it so (its floor is just above `util`).

mod batch;
pub(crate) mod least_squares;
pub(crate) mod sample;
pub(crate) mod trend;

use serde::{Deserialize, Serialize};

pub use batch::{BatchMeans, Batched, MAX_POINTS};

/// A point estimate with its standard error and confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Point estimate.
    pub point: f64,
    /// Standard error of the estimate.
    pub std_err: f64,
    /// Confidence interval.
    pub ci: ConfidenceInterval,
}

/// A two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}
