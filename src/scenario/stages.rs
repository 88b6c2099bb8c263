//! What the run's stages need besides the pipeline itself: the engine's import check (preflight),
//! the progress line (measure), the cache flush (cooldown), and writing the report and plots.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Scenario, ScenarioError};
use crate::report::Report;
use crate::tracker::MemoryTracker;
use crate::util::error_chain as chain;

impl Scenario {
    /// The live progress (a bar on a terminal, a line every `every` otherwise).
    pub(super) fn spawn_progress(
        &self,
        tracker: &MemoryTracker,
        every: Duration,
    ) -> super::progress::Display {
        let plan = super::progress::Plan {
            name: self.name.clone(),
            warmup: self.driver.warmup_requests,
            planned: self.driver.num_requests,
            budget: self.driver.budget(),
            duration: self.driver.duration,
        };
        super::progress::spawn(plan, tracker.marker(), every)
    }

    /// While the server still runs: judge what was measured, and on a leak let `capture` name
    /// the guilty processes and dump their stacks.
    pub(super) async fn diagnose_leak(&self, capture: &crate::diagnose::Capture, report: &Report) {
        let thresholds = self.thresholds.clone();
        let alpha = report
            .adaptive
            .as_ref()
            .and_then(crate::analysis::adaptive::Adaptive::final_alpha)
            .unwrap_or(1.0 - thresholds.confidence);
        let series = super::series::request_series(&report.timeline);
        if series.is_empty() {
            return;
        }
        let judged = tokio::task::spawn_blocking(move || {
            crate::analysis::analyze_at(&series, &thresholds, alpha)
        })
        .await;
        if let Ok(verdict) = judged {
            capture.on_verdict(&verdict, &report.timeline).await;
        }
    }

    /// The report as it stands, marked unfinished, with the raw files named: replaced at the end.
    pub(super) async fn write_provisional(&self, report: &Report) {
        let mut provisional = report.clone();
        provisional.error = Some(crate::report::RunError::new(crate::error::Error::from(
            super::ScenarioError::Unfinished {
                dir: self.out_dir.clone(),
            },
        )));
        let (dir, name) = (self.out_dir.clone(), self.name.clone());
        provisional.timeline.raw = Some(crate::tracker::RawFiles {
            samples: format!("{name}.samples.csv"),
            marks: format!("{name}.marks.csv"),
            processes: format!("{name}.processes.jsonl"),
        });
        provisional.files.requests = Some(dir.join(format!("{name}.requests.csv")));
        let json = dir.join(format!("{name}.json"));
        provisional.files.json = Some(json.clone());
        let _ = tokio::task::spawn_blocking(move || provisional.write_json(&json)).await;
    }

    /// Plots and the JSON report, on a blocking thread (encoding and fsync take a while).
    pub(super) async fn write_outputs(&self, report: &mut Report) {
        let json = self.out_dir.join(format!("{}.json", self.name));
        let (plots, seed, out_dir, name) = (
            self.plots,
            self.seed_names,
            self.out_dir.clone(),
            self.name.clone(),
        );
        let mut owned = std::mem::replace(report, self.empty_report());
        let done = tokio::task::spawn_blocking(move || {
            write_files(&mut owned, plots, seed, &out_dir, &name, &json);
            owned
        })
        .await;
        match done {
            Ok(r) => *report = r,
            Err(e) => report
                .notes
                .push(format!("writing the outputs failed: {e}")),
        }
    }
}

/// Writes the plots (with `plots`), the HTML page and the JSON report of `report` into
/// `out_dir` as `<name>.*`, and with `seed_names` copies of the JSON and the PNG under the seed
/// tool's names beside them. The JSON is written last: it names every file that was written.
pub(super) fn write_files(
    report: &mut Report,
    plots: bool,
    seed_names: bool,
    out_dir: &Path,
    name: &str,
    json: &Path,
) {
    if plots {
        let title = report.plot_title();
        let input = crate::report::plot::PlotInput::of(report, &title);
        match crate::report::plot::write_plots(&input, out_dir, name) {
            Ok(files) => {
                report.files.png = Some(files.png);
                report.files.svg = Some(files.svg);
            }
            Err(e) => report
                .notes
                .push(format!("plot not written: {}", chain(&e))),
        }
    }
    report.files.json = Some(json.to_owned());
    let seed = seed_names.then(|| out_dir.join(seed_stem(report)));
    if let Some(stem) = &seed {
        let data = PathBuf::from(format!("{}_memory_data.json", stem.display()));
        report.files.seed = vec![data];
        if report.files.png.is_some() {
            report
                .files
                .seed
                .push(PathBuf::from(format!("{}_memory_plot.png", stem.display())));
        }
    }
    let html = out_dir.join(format!("{name}.html"));
    report.files.html = Some(html.clone());
    if let Err(e) = crate::report::html::write_html(report, &html, &[]) {
        report.files.html = None;
        report
            .notes
            .push(format!("HTML report not written: {}", chain(&e)));
    }
    if let Err(e) = report.write_json(json) {
        // The report is the one thing a run must leave behind: say so loudly.
        report.files.json = None;
        report
            .notes
            .push(format!("JSON report not written: {}", chain(&e)));
        tracing::error!("JSON report not written: {}", chain(&e));
        return;
    }
    // The seed's names: copies, so a later run (which replaces ours) leaves them as they were.
    let copies: Vec<(PathBuf, PathBuf)> = report
        .files
        .seed
        .iter()
        .map(|to| {
            let from = if to.to_string_lossy().ends_with(".png") {
                report.files.png.clone().unwrap_or_default()
            } else {
                json.to_owned()
            };
            (from, to.clone())
        })
        .collect();
    for (from, to) in copies {
        if let Err(e) = std::fs::copy(&from, &to) {
            tracing::warn!("failed to copy {} to {}: {e}", from.display(), to.display());
        }
    }
}

/// `{test}_{model}_{unix}`, as the seed tool named its files: the test type, the model with `/`
/// (and anything else not safe in a file name) as `_`, the Unix time.
pub(super) fn seed_stem(report: &Report) -> String {
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

/// The engine's flush route (`/flush_cache`), retried while the server answers 400 (requests
/// still running).
pub(super) async fn flush(base_url: &str, route: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        let status = client
            .post(format!("{base_url}{route}"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        match status {
            Ok(200..=299) => return Ok(()),
            Ok(400) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Ok(404) => {
                return Err(format!(
                    "the server has no {route}: cooldown without a cache flush"
                ));
            }
            Ok(s) => {
                return Err(format!(
                    "{route} answered HTTP {s}: cooldown without a cache flush"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "{route} failed ({e}): cooldown without a cache flush"
                ));
            }
        }
    }
}

/// The engine's preflight: its Python module imports in the server's interpreter.
pub(super) async fn check_engine(server: &crate::engine::Server) -> Result<(), ScenarioError> {
    let engine = server.engine();
    import_error(server.python(), engine.module())
        .await
        .map_or(Ok(()), |(python, detail)| {
            Err(ScenarioError::EngineMissing {
                engine: engine.display_name(),
                fix: engine.install_hint(&python),
                python,
                detail,
            })
        })
}

/// `None` when `python -c 'import <module>'` works, else the interpreter and what went wrong.
async fn import_error(python: &Path, module: &str) -> Option<(String, String)> {
    let py = python.display().to_string();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python)
            .args(["-c", &format!("import {module}")])
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let detail = match out {
        Err(_) => format!("`import {module}` took over 120 s"),
        Ok(Err(e)) => format!("could not run it ({e})"),
        Ok(Ok(o)) if o.status.success() => return None,
        Ok(Ok(o)) => {
            let err = String::from_utf8_lossy(&o.stderr);
            err.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("import failed")
                .trim()
                .to_owned()
        }
    };
    Some((py, detail))
}
