//! What the run's stages need besides the pipeline itself: the engine's import check (preflight),
//! the progress line (measure), the cache flush (cooldown), and writing the report and plots.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Scenario, ScenarioError};
use crate::report::Report;
use crate::tracker::{MemoryTracker, Phase, metric};
use crate::util::error_chain as chain;
use crate::util::{human_bytes, signed_bytes};

impl Scenario {
    /// A task printing one line every `every`: phase, requests done, tree memory so far.
    pub(super) fn spawn_progress(
        &self,
        tracker: &MemoryTracker,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let marker = tracker.marker();
        let name = self.name.clone();
        let (warmup, measured) = (self.driver.warmup_requests, self.driver.num_requests);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let p = marker.progress(&[
                    metric::HOST_RSS_TREE,
                    metric::GPU_PROC_TREE,
                    metric::SHM_BYTES,
                ]);
                let (phase, total) = match p.phase {
                    Some(Phase::Warmup) => ("warm-up", warmup),
                    Some(Phase::Measure) => ("measure", measured),
                    _ => continue,
                };
                let values: Vec<String> = p
                    .values
                    .iter()
                    .map(|(m, first, last)| {
                        format!(
                            "{m} {} ({})",
                            human_bytes(*last),
                            signed_bytes(last - first)
                        )
                    })
                    .collect();
                let count = if p.done > total {
                    format!("{} (planned {total}, extended: undecided)", p.done)
                } else {
                    format!("{}/{total}", p.done)
                };
                eprintln!("  {name} · {phase} {count} · {}", values.join(" · "));
            }
        })
    }

    /// The report as it stands, marked unfinished, with the raw files named: replaced at the end.
    pub(super) async fn write_provisional(&self, report: &Report) {
        let mut provisional = report.clone();
        provisional.error = Some(crate::report::RunError::new(
            super::ScenarioError::Unfinished {
                dir: self.out_dir.clone(),
            }
            .into(),
        ));
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
        let (plots, out_dir, name) = (self.plots, self.out_dir.clone(), self.name.clone());
        let mut owned = std::mem::replace(report, self.empty_report());
        let done = tokio::task::spawn_blocking(move || {
            write_files(&mut owned, plots, &out_dir, &name, &json);
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

pub(super) fn write_files(
    report: &mut Report,
    plots: bool,
    out_dir: &Path,
    name: &str,
    json: &Path,
) {
    if plots {
        let title = format!("{name} ({}) — {}", report.test_type, report.target.kind);
        match crate::report::plot::write_plots(
            &report.timeline,
            report.verdict.as_ref(),
            &title,
            out_dir,
            name,
        ) {
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
    if let Err(e) = report.write_json(json) {
        // The report is the one thing a run must leave behind: say so loudly.
        report.files.json = None;
        report
            .notes
            .push(format!("JSON report not written: {}", chain(&e)));
        tracing::error!("JSON report not written: {}", chain(&e));
    }
}

/// `/flush_cache`, retried while the server answers 400 (requests still running).
pub(super) async fn flush(base_url: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    loop {
        let status = client
            .post(format!("{base_url}/flush_cache"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        match status {
            Ok(200..=299) => return Ok(()),
            Ok(400) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Ok(404) => {
                return Err(
                    "the server has no /flush_cache: cooldown without a cache flush".into(),
                );
            }
            Ok(s) => {
                return Err(format!(
                    "/flush_cache answered HTTP {s}: cooldown without a cache flush"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "/flush_cache failed ({e}): cooldown without a cache flush"
                ));
            }
        }
    }
}

pub(super) async fn check_sglang(python: &Path) -> Result<(), ScenarioError> {
    import_error(python, "sglang")
        .await
        .map_or(Ok(()), |(python, detail)| {
            Err(ScenarioError::SglangMissing { python, detail })
        })
}

pub(super) async fn check_vllm(python: &Path) -> Result<(), ScenarioError> {
    import_error(python, "vllm")
        .await
        .map_or(Ok(()), |(python, detail)| {
            Err(ScenarioError::VllmMissing { python, detail })
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
