//! `sglang-memtest analyze`: a report rebuilt from the raw files beside it — after the harness
//! was killed (the report on disk is the provisional one), or to re-judge a finished run.

use std::path::Path;

use super::ScenarioError;
use crate::analysis;
use crate::error::Error;
use crate::load::RequestLog;
use crate::report::{Report, RunOutcome};

/// Rebuild the report at `json` from its raw files: the timeline replayed, the requests
/// recounted, the verdict recomputed with the report's thresholds; then the JSON (and, with
/// `plots`, the PNG/SVG) written again. A run cut short is judged on what reached the disk.
///
/// # Errors
/// The report cannot be read or written, names no raw files, or they cannot be read back.
pub fn reanalyze(json: &Path, plots: bool) -> Result<Report, Error> {
    let mut report = Report::read_json(json)?;
    let dir = json.parent().unwrap_or_else(|| Path::new("."));
    let raw = report
        .timeline
        .raw
        .clone()
        .ok_or_else(|| ScenarioError::NoRawFiles {
            report: json.to_owned(),
        })?;
    let stem = raw
        .samples
        .strip_suffix(".samples.csv")
        .unwrap_or(&raw.samples)
        .to_owned();
    let (mut timeline, seen) =
        crate::tracker::replay(dir, &stem, report.tracker.interval.as_millis() as u64)?;
    timeline.sources = std::mem::take(&mut report.timeline.sources);
    report.timeline = timeline;
    if let Some(path) = &report.files.requests
        && let Ok(records) =
            crate::load::read_records(&dir.join(path.file_name().unwrap_or_default()))
    {
        let mut log = RequestLog::in_memory();
        for r in &records {
            log.record(r);
        }
        report.requests = Some(log.summary());
    }
    let cut_short = report.shutdown.is_none();
    let series = super::series::request_series(&report.timeline);
    let verdict = analysis::analyze(&series, &report.thresholds);
    report.outcome = if series.is_empty() {
        RunOutcome::Error
    } else {
        verdict.outcome.into()
    };
    if !series.is_empty() {
        report.error = None;
    }
    report.verdict = Some(verdict);
    // The engine's own checks were made during the run: they stand as the report has them.
    super::accounting::apply(&mut report);
    report.likely_causes = crate::report::likely_causes(&report);
    report.notes.push(format!(
        "rebuilt by `sglang-memtest analyze` from {} readings and {} marks{}",
        seen.readings,
        seen.marks,
        if seen.bad_rows > 0 {
            format!(
                " ({} unreadable rows skipped: a torn last line is one)",
                seen.bad_rows
            )
        } else {
            String::new()
        }
    ));
    if cut_short {
        report.notes.push(format!(
            "the harness stopped before the end of the run: judged on the {} measured requests that reached the disk; the server may have been left running (its process tree was not torn down by this harness)",
            report.timeline.requests_in(crate::tracker::Phase::Measure)
        ));
    }
    let outputs = crate::report::Outputs {
        dir,
        stem: &stem,
        plots,
        seed_names: false,
    };
    crate::report::write_outputs(&mut report, &outputs, json);
    Ok(report)
}
