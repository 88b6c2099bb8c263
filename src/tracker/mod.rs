//! Memory tracking: a background sampler over the server's process tree.
#![allow(missing_docs, unused)]

pub mod metric;
mod store;
mod timeline;

pub(crate) use store::{Reading, Store};
pub use timeline::{Mark, Phase, Point, ProcessInfo, Series, SourceStatus, Timeline, Unit};

/// Errors starting the tracker.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// stub
    #[error("stub")]
    Stub,
}

/// Tracker settings.
#[derive(Debug, Clone)]
pub struct TrackerConfig {}

/// The background sampler.
#[derive(Debug)]
pub struct MemoryTracker {}
