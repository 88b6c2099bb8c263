//! The fleet report: one row per series and segment (replica, process, GPU), the worst first,
//! in the versioned JSON schema (`"kind": "fleet"`), with a console table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::series::Segment;
use super::{FleetError, JudgeConfig, MemoryKind, QuerySet};
use crate::analysis::{
    Batched, Estimate, MetricAnalysis, Outcome, RequestSeries, Thresholds, Verdict,
};
use crate::report::{ReportError, ReportFiles, RunOutcome, SCHEMA_VERSION};
use crate::util::{human_bytes, signed_bytes};

/// One series (or its stretch between two restarts), judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetRow {
    /// The labels that tell this row from the others (`pod=sglang-2, gpu=3`), plus
    /// `(segment i/n)` after a restart.
    pub name: String,
    /// Every label of the series.
    pub labels: BTreeMap<String, String>,
    /// Host or GPU memory.
    pub memory: MemoryKind,
    /// The PromQL that found it.
    pub query: String,
    /// 1-based segment of the series (restarts cut it), and how many it has.
    pub segment: usize,
    /// Segments of the series.
    pub segments: usize,
    /// First and last reading (RFC 3339).
    pub from: String,
    /// Last reading.
    pub to: String,
    /// Readings (finite samples) in the segment.
    pub readings: usize,
    /// Requests counted by the matched counter over the segment (`null`: none matched).
    pub requests: Option<u64>,
    /// Room left at the end (limit − usage, or free GPU memory), bytes.
    pub headroom: Option<f64>,
    /// The outcome: the worst of the per-request and per-hour judgements.
    pub outcome: Outcome,
    /// Growth per hour over the segment (after the warm-up cut).
    pub growth_per_hour: Option<Estimate>,
    /// Hours until the headroom is used up at that rate.
    pub hours_to_exhaust: Option<f64>,
    /// Requests until the headroom is used up (per-request slope).
    pub requests_to_exhaust: Option<f64>,
    /// The whole analysis, as a run's report has it for a metric.
    pub analysis: MetricAnalysis,
    /// What was judged: the readings per request and against hours since `from` (batch
    /// means, at most 2000 points each), so that the judgement can be recomputed.
    pub input: RequestSeries,
}

impl FleetRow {
    pub(crate) fn new(
        memory: MemoryKind,
        query: String,
        seg: &Segment,
        input: RequestSeries,
        verdict: Verdict,
    ) -> Self {
        let analysis = verdict.metrics.into_iter().next().unwrap_or_else(|| {
            // analyze_at returns one metric per series: this is never reached.
            crate::analysis::analyze(std::slice::from_ref(&input), &Thresholds::default())
                .metrics
                .remove(0)
        });
        let hourly = analysis.hourly.first();
        Self {
            name: String::new(),
            labels: seg.labels.clone(),
            memory,
            query,
            segment: seg.index,
            segments: seg.of,
            from: rfc3339(seg.points.first().map_or(0.0, |p| p.0)),
            to: rfc3339(seg.points.last().map_or(0.0, |p| p.0)),
            readings: seg.points.len(),
            requests: seg.request_count().map(|r| r.round() as u64),
            headroom: seg.headroom,
            outcome: analysis.outcome,
            growth_per_hour: hourly.and_then(|h| h.slope),
            hours_to_exhaust: hourly.and_then(|h| h.hours_to_oom),
            requests_to_exhaust: analysis.requests_to_oom,
            analysis,
            input,
        }
    }

    /// Growth per request, when a request counter matched.
    pub fn growth_per_request(&self) -> Option<Estimate> {
        (self.input.values.readings > 0)
            .then_some(self.analysis.slope)
            .flatten()
    }

    /// The last reading (of the per-request series when there is one, else against time).
    pub fn last(&self) -> f64 {
        let by_time = self
            .by_time()
            .and_then(|b| b.y.iter().rev().find(|v| v.is_finite()).copied());
        if self.analysis.last.is_finite() {
            self.analysis.last
        } else {
            by_time.unwrap_or(f64::NAN)
        }
    }

    /// The readings against hours since `from`.
    pub fn by_time(&self) -> Option<&Batched> {
        self.input.by_time.as_ref()
    }
}

/// The window a fleet report covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetWindow {
    /// Start (RFC 3339).
    pub from: String,
    /// End (RFC 3339).
    pub to: String,
    /// Resolution of the range queries, seconds.
    pub step_s: f64,
}

/// A judgement of a fleet: `sglang-memtest judge`'s JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `fleet` (a run's report has no `kind`).
    pub kind: String,
    /// `sglang-memtest <version>`.
    pub tool: String,
    /// When the judgement was made (RFC 3339).
    pub judged_at: String,
    /// Prometheus' base URL.
    pub prometheus: String,
    /// The window read.
    pub window: FleetWindow,
    /// The queries.
    pub queries: QuerySet,
    /// The worst row's outcome; `error` when nothing could be judged.
    pub outcome: RunOutcome,
    /// Why nothing could be judged, when so.
    pub error: Option<String>,
    /// What counts as a leak.
    pub thresholds: Thresholds,
    /// The significance level of each row: `1 - confidence` split across the rows.
    pub alpha: f64,
    /// One row per series and segment, the worst first (leaks, then the undecided, then passes;
    /// within each, the fastest growth per hour first).
    pub rows: Vec<FleetRow>,
    /// For a person: what was skipped and why.
    pub notes: Vec<String>,
    /// Files written.
    pub files: ReportFiles,
}

/// Unix seconds as RFC 3339 (UTC, seconds).
pub fn rfc3339(unix: f64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(unix.max(0.0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The labels whose values differ between rows (all of them when there is one row).
fn distinguishing(rows: &[FleetRow]) -> BTreeSet<String> {
    let all: BTreeSet<String> = rows.iter().flat_map(|r| r.labels.keys().cloned()).collect();
    if rows.len() < 2 {
        return all.into_iter().filter(|k| k != "__name__").collect();
    }
    all.into_iter()
        .filter(|k| {
            let mut values = rows.iter().map(|r| r.labels.get(k));
            let first = values.next().flatten();
            values.any(|v| v != first)
        })
        .collect()
}

impl FleetReport {
    pub(crate) fn new(
        c: &JudgeConfig,
        alpha: f64,
        mut rows: Vec<FleetRow>,
        notes: Vec<String>,
    ) -> Self {
        let keys = distinguishing(&rows);
        for r in &mut rows {
            let mut name = r
                .labels
                .iter()
                .filter(|(k, _)| keys.contains(*k))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            if name.is_empty() {
                name.clone_from(&r.query);
            }
            if r.segments > 1 {
                let _ = write!(name, " (segment {}/{})", r.segment, r.segments);
            }
            r.name = name;
        }
        let rate = |r: &FleetRow| r.growth_per_hour.map_or(f64::NEG_INFINITY, |e| e.point);
        rows.sort_by(|a, b| b.outcome.cmp(&a.outcome).then(rate(b).total_cmp(&rate(a))));
        let outcome = rows
            .iter()
            .map(|r| r.outcome)
            .max()
            .map_or(RunOutcome::Error, RunOutcome::from);
        let mut report = Self::empty(c);
        report.outcome = outcome;
        report.alpha = alpha;
        report.rows = rows;
        report.notes = notes;
        report
    }

    /// A report of a judgement that could not be made (written anyway, for the cron job's logs).
    pub fn failed(c: &JudgeConfig, error: &FleetError) -> Self {
        let mut report = Self::empty(c);
        report.error = Some(error.to_string());
        report
    }

    fn empty(c: &JudgeConfig) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            kind: "fleet".into(),
            tool: format!("sglang-memtest {}", env!("CARGO_PKG_VERSION")),
            judged_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            prometheus: c.prometheus.clone(),
            window: FleetWindow {
                from: rfc3339(c.window.start),
                to: rfc3339(c.window.end),
                step_s: c.window.step,
            },
            queries: c.queries.clone(),
            outcome: RunOutcome::Error,
            error: None,
            thresholds: c.thresholds.clone(),
            alpha: 1.0 - c.thresholds.confidence,
            rows: Vec::new(),
            notes: Vec::new(),
            files: ReportFiles::default(),
        }
    }

    /// Write `<dir>/<stem>.json` (atomically), and with `plots` the PNG/SVG, recording the
    /// paths in `files`. A plot that fails is a note, not an error.
    ///
    /// # Errors
    /// [`ReportError::Write`] when the JSON cannot be written.
    pub fn write(&mut self, dir: &Path, stem: &str, plots: bool) -> Result<PathBuf, ReportError> {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
            path: dir.to_owned(),
            source,
        })?;
        let json = dir.join(format!("{stem}.json"));
        if plots && !self.rows.is_empty() {
            match super::plot::write(self, dir, stem) {
                Ok((png, svg)) => {
                    self.files.png = Some(png);
                    self.files.svg = Some(svg);
                }
                Err(e) => self
                    .notes
                    .push(format!("no plot: {}", crate::util::error_chain(&e))),
            }
        }
        self.files.json = Some(json.clone());
        let svg = self
            .files
            .svg
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        let html = dir.join(format!("{stem}.html"));
        match crate::report::write_atomic(
            &html,
            super::html::render(self, svg.as_deref()).as_bytes(),
        ) {
            Ok(()) => self.files.html = Some(html),
            Err(e) => self
                .notes
                .push(format!("no HTML page: {}", crate::util::error_chain(&e))),
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ReportError::Write {
            path: json.clone(),
            source: std::io::Error::other(e),
        })?;
        crate::report::write_atomic(&json, &bytes)?;
        Ok(json)
    }

    /// The console table: outcome, then one line per row (the first `max_rows`).
    pub fn summary(&self, max_rows: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "fleet: {:?} — {} series from {} ({} .. {}, step {}s)",
            self.outcome,
            self.rows.len(),
            self.prometheus,
            self.window.from,
            self.window.to,
            self.window.step_s
        );
        if let Some(e) = &self.error {
            let _ = writeln!(s, "  error: {e}");
        }
        let per_hour = |r: &FleetRow| {
            r.growth_per_hour
                .map_or("-".into(), |e| format!("{}/h", signed_bytes(e.point)))
        };
        let per_request = |r: &FleetRow| {
            r.growth_per_request()
                .map_or("-".into(), |e| format!("{}/req", signed_bytes(e.point)))
        };
        let exhaust = |r: &FleetRow| match (r.hours_to_exhaust, r.headroom) {
            (Some(h), _) => format!("full in {}", crate::analysis::human_hours(h)),
            (None, Some(room)) => format!("{} free", human_bytes(room)),
            _ => String::new(),
        };
        for r in self.rows.iter().take(max_rows) {
            let _ = writeln!(
                s,
                "  {:<12} {:<4} {:>14} {:>14} {:>10}  {}  {}",
                format!("{:?}", r.outcome).to_lowercase(),
                match r.memory {
                    MemoryKind::Host => "host",
                    MemoryKind::Gpu => "gpu",
                },
                per_hour(r),
                per_request(r),
                human_bytes(r.last()),
                r.name,
                exhaust(r)
            );
            if r.outcome != Outcome::Pass
                && let Some(reason) = r.analysis.reasons.first()
            {
                let _ = writeln!(s, "      {reason}");
            }
        }
        if self.rows.len() > max_rows {
            let _ = writeln!(
                s,
                "  … {} more rows in the JSON",
                self.rows.len() - max_rows
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        for f in [&self.files.json, &self.files.png, &self.files.html]
            .into_iter()
            .flatten()
        {
            let _ = writeln!(s, "  wrote {}", f.display());
        }
        s
    }
}
