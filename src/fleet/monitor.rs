//! `monitor --prometheus`: the harness drives the load (at a remote server, say) and the
//! memory comes from Prometheus. The run's own request completions stand in for a request
//! counter: [`measured_marks`] reads them back as unix times, and [`counter_at`] turns them into
//! a counter series on any series' timestamps.

use std::collections::BTreeMap;

use super::prom::PromSeries;
use crate::report::Report;
use crate::tracker::Phase;

/// Why a run's request completions could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum MarksError {
    /// The run streamed no raw files.
    #[error("the run wrote no raw marks file, so its requests cannot be placed in time")]
    NoRawFiles,
    /// The report's start time does not parse.
    #[error("the run's start time {0:?} is not RFC 3339")]
    StartTime(String),
    /// The marks file cannot be read.
    #[error("cannot read the run's marks {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// Unix times (seconds) of each measured request's completion, in order.
///
/// # Errors
/// [`MarksError`] when the report has no raw marks file or it cannot be read.
pub fn measured_marks(run: &Report) -> Result<Vec<f64>, MarksError> {
    let raw = run.timeline.raw.as_ref().ok_or(MarksError::NoRawFiles)?;
    let dir = run
        .files
        .json
        .as_ref()
        .and_then(|p| p.parent())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let path = dir.join(&raw.marks);
    let start = humantime::parse_rfc3339_weak(&run.timeline.started_at)
        .map_err(|_| MarksError::StartTime(run.timeline.started_at.clone()))?
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let read_err = |e: &dyn std::fmt::Display| MarksError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(&path)
        .map_err(|e| read_err(&e))?;
    // A phase change carries request 0 too: the latest time per request index is the
    // completion.
    let mut by_request: BTreeMap<u64, u64> = BTreeMap::new();
    for row in reader.records().flatten() {
        let parsed = (|| {
            let t: u64 = row.get(0)?.parse().ok()?;
            let phase: Phase = row.get(1)?.parse().ok()?;
            let request: u64 = row.get(2)?.parse().ok()?;
            Some((t, phase, request))
        })();
        if let Some((t, Phase::Measure, request)) = parsed {
            let e = by_request.entry(request).or_insert(t);
            *e = (*e).max(t);
        }
    }
    let mut times: Vec<f64> = by_request
        .values()
        .map(|t| start + *t as f64 / 1e6)
        .collect();
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// A counter of the requests completed by each of `series`' timestamps.
pub fn counter_at(series: &PromSeries, marks: &[f64]) -> PromSeries {
    PromSeries {
        labels: series.labels.clone(),
        points: series
            .points
            .iter()
            .map(|&(t, _)| (t, marks.partition_point(|m| *m <= t) as f64))
            .collect(),
    }
}
