//! What the run's stages need besides the pipeline itself: the engine's import check (preflight),
//! the progress line (measure), the cache flush (cooldown), and writing the report and plots.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Scenario, ScenarioError};
use crate::report::{Outputs, Report};
use crate::tracker::MemoryTracker;

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
            let outputs = Outputs {
                dir: &out_dir,
                stem: &name,
                plots,
                seed_names: seed,
            };
            crate::report::write_outputs(&mut owned, &outputs, &json);
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
