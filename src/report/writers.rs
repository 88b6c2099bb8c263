//! A run's outputs, one writer each, in one list (criterion's `Report` trait and its `Reports`
//! list): the plots, the seed tool's names, the HTML page, the JSON report, the seed tool's
//! copies. A new format is one file with a [`ReportWriter`] plus one line in [`WRITERS`]; it
//! records its files in [`ReportFiles::other`](super::ReportFiles::other) under its name.
//!
//! The order matters and is the list's: the JSON is written after everything it names, and the
//! copies under the seed tool's names after the JSON.

use std::path::{Path, PathBuf};

use super::Report;
use crate::util::error_chain as chain;

/// Where and what a run writes: `<dir>/<stem>.*`.
#[derive(Debug, Clone, Copy)]
pub struct Outputs<'a> {
    /// The output folder.
    pub dir: &'a Path,
    /// The files' stem (the scenario's name).
    pub stem: &'a str,
    /// Plots (PNG and SVG).
    pub plots: bool,
    /// Copies under the seed tool's names.
    pub seed_names: bool,
}

/// What went wrong writing one output.
pub type WriteError = Box<dyn std::error::Error + Send + Sync>;

/// One output of a run.
pub trait ReportWriter: Sync {
    /// What it writes, for a person: `plot`, `HTML report`, `JSON report`.
    fn what(&self) -> &'static str;

    /// Writes its files for `report` (or does nothing when `out` does not ask for them) and
    /// records them in `report.files`.
    ///
    /// # Errors
    /// Why it was not written; the run notes "`what` not written: …" and goes on.
    fn write(&self, report: &mut Report, out: &Outputs<'_>) -> Result<(), WriteError>;
}

/// Every output, in the order they are written.
pub static WRITERS: &[&dyn ReportWriter] = &[&Plots, &SeedNames, &Html, &Json, &SeedCopies];

/// Writes every output of `report` into `out.dir` (the JSON report at `json`), in [`WRITERS`]'
/// order; a writer that fails leaves a note in the report and the others go on.
pub fn write_outputs(report: &mut Report, out: &Outputs<'_>, json: &Path) {
    report.files.json = Some(json.to_owned());
    for w in WRITERS {
        if let Err(e) = w.write(report, out) {
            report
                .notes
                .push(format!("{} not written: {}", w.what(), chain(e.as_ref())));
        }
    }
}

/// PNG and SVG plots (`--no-plot`: none).
struct Plots;

impl ReportWriter for Plots {
    fn what(&self) -> &'static str {
        "plot"
    }

    fn write(&self, report: &mut Report, out: &Outputs<'_>) -> Result<(), WriteError> {
        if !out.plots {
            return Ok(());
        }
        let title = report.plot_title();
        let input = super::plot::PlotInput::of(report, &title);
        let files = super::plot::write_plots(&input, out.dir, out.stem)?;
        report.files.png = Some(files.png);
        report.files.svg = Some(files.svg);
        Ok(())
    }
}

/// The names of the seed tool's copies, in the report before it is written (the copies follow
/// the JSON).
struct SeedNames;

impl ReportWriter for SeedNames {
    fn what(&self) -> &'static str {
        "seed names"
    }

    fn write(&self, report: &mut Report, out: &Outputs<'_>) -> Result<(), WriteError> {
        if !out.seed_names {
            return Ok(());
        }
        let stem = out.dir.join(seed_stem(report));
        let data = PathBuf::from(format!("{}_memory_data.json", stem.display()));
        report.files.seed = vec![data];
        if report.files.png.is_some() {
            report
                .files
                .seed
                .push(PathBuf::from(format!("{}_memory_plot.png", stem.display())));
        }
        Ok(())
    }
}

/// The HTML page (`<stem>.html`).
struct Html;

impl ReportWriter for Html {
    fn what(&self) -> &'static str {
        "HTML report"
    }

    fn write(&self, report: &mut Report, out: &Outputs<'_>) -> Result<(), WriteError> {
        let html = out.dir.join(format!("{}.html", out.stem));
        report.files.html = Some(html.clone());
        if let Err(e) = super::html::write_html(report, &html, &[]) {
            report.files.html = None;
            return Err(e.into());
        }
        Ok(())
    }
}

/// The JSON report: the one thing a run must leave behind, so a failure is logged too.
struct Json;

impl ReportWriter for Json {
    fn what(&self) -> &'static str {
        "JSON report"
    }

    fn write(&self, report: &mut Report, _out: &Outputs<'_>) -> Result<(), WriteError> {
        let Some(json) = report.files.json.clone() else {
            return Ok(());
        };
        if let Err(e) = report.write_json(&json) {
            report.files.json = None;
            tracing::error!("JSON report not written: {}", chain(&e));
            return Err(e.into());
        }
        Ok(())
    }
}

/// The seed's names: copies of the JSON and the PNG, so a later run (which replaces ours)
/// leaves them as they were. None when the JSON was not written.
struct SeedCopies;

impl ReportWriter for SeedCopies {
    fn what(&self) -> &'static str {
        "seed copies"
    }

    fn write(&self, report: &mut Report, _out: &Outputs<'_>) -> Result<(), WriteError> {
        let Some(json) = report.files.json.clone() else {
            return Ok(());
        };
        let copies: Vec<(PathBuf, PathBuf)> = report
            .files
            .seed
            .iter()
            .map(|to| {
                let from = if to.to_string_lossy().ends_with(".png") {
                    report.files.png.clone().unwrap_or_default()
                } else {
                    json.clone()
                };
                (from, to.clone())
            })
            .collect();
        for (from, to) in copies {
            if let Err(e) = std::fs::copy(&from, &to) {
                tracing::warn!("failed to copy {} to {}: {e}", from.display(), to.display());
            }
        }
        Ok(())
    }
}

/// `{test}_{model}_{unix}`, as the seed tool named its files: the test type, the model with `/`
/// (and anything else not safe in a file name) as `_`, the Unix time.
fn seed_stem(report: &Report) -> String {
    let model = report
        .target
        .model
        .clone()
        .unwrap_or_else(|| report.target.kind.clone());
    let model: String = model
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{}_{model}_{unix}", report.test_type)
}
