//! `Scenario::run`: the pipeline, end to end, with a report written on every outcome.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Scenario, ScenarioError, Target};
use crate::Error;
use crate::analysis::{self, RequestSeries};
use crate::fixture::{ServerFixture, ServerSpec};
use crate::load::LoadError;
use crate::load::{self, Workload, images::ImageSet};
use crate::report::{Report, ReportFiles, RunError, RunOutcome, SCHEMA_VERSION, TargetInfo};
use crate::tracker::metric::Metric;
use crate::tracker::{GpuMode, MemoryTracker, Phase, Timeline, Unit, metric};
use crate::util::error_chain as chain;
use crate::util::{human_bytes, signed_bytes};

/// A blocking task that panicked or was cancelled.
fn blocking(what: &'static str, e: tokio::task::JoinError) -> ScenarioError {
    ScenarioError::Harness {
        what,
        source: std::io::Error::other(e),
    }
}

/// One lock for every scenario of this process that runs a real server (GPU memory and
/// `/dev/shm` are shared by the machine): `run_blocking` takes it, so the tests of one binary
/// do not disturb each other's measurements.
static REAL_SERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Scenario {
    /// Run the whole pipeline: launch, baseline, warm-up, measured requests, cooldown, stop,
    /// analyse; then write the JSON report (and plots) into the output folder.
    ///
    /// Never fails: a failed stage ends the run with [`RunOutcome::Error`] and the report still
    /// holds everything collected until then, the typed error included
    /// ([`RunError::cause`]). Use [`Report::into_result`] in tests.
    pub async fn run(&self) -> Report {
        let t0 = Instant::now();
        let mut report = self.empty_report();
        if let Err(e) = self.run_stages(&mut report).await {
            report.outcome = RunOutcome::Error;
            report.error = Some(RunError::new(e));
        }
        report.duration_ms = t0.elapsed().as_millis() as u64;
        self.write_outputs(&mut report).await;
        report
    }

    /// [`run`](Self::run) on a runtime of its own, for a plain `#[test]`. Scenarios against a
    /// real server (anything but the reference server) run one at a time per process: GPU
    /// memory and `/dev/shm` are shared by the machine.
    pub fn run_blocking(&self) -> Report {
        let _serial = match self.target {
            Target::Reference { .. } => None,
            _ => Some(
                REAL_SERVER
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
        };
        match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(self.run()),
            Err(e) => {
                let mut report = self.empty_report();
                report.error = Some(RunError::new(
                    ScenarioError::Harness {
                        what: "start the async runtime",
                        source: e,
                    }
                    .into(),
                ));
                report
            }
        }
    }

    fn empty_report(&self) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            tool: format!("sglang-memtest {}", env!("CARGO_PKG_VERSION")),
            scenario: self.name.clone(),
            test_type: self.workload.test_type().to_owned(),
            outcome: RunOutcome::Error,
            error: None,
            started_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            duration_ms: 0,
            target: TargetInfo {
                kind: self.target.kind().to_owned(),
                ..TargetInfo::default()
            },
            caches: self.caches.clone(),
            workload: self.workload.clone(),
            driver: self.driver.clone(),
            tracker: self.tracker.clone(),
            requests: None,
            request_records: Vec::new(),
            verdict: None,
            timeline: Timeline::default(),
            shutdown: None,
            server_log_tail: Vec::new(),
            files: ReportFiles::default(),
            notes: Vec::new(),
        }
    }

    fn spec(&self) -> Option<ServerSpec> {
        let spec = match &self.target {
            Target::Reference { exe, args } => {
                let mut argv = vec![
                    "serve-reference".to_owned(),
                    "--port".to_owned(),
                    "{port}".to_owned(),
                ];
                argv.extend(args.iter().cloned());
                ServerSpec::command(exe, argv).with_name(format!("{}-reference", self.name))
            }
            Target::Sglang(server) => server
                .clone()
                .into_spec()
                .with_name(format!("{}-sglang", self.name)),
            Target::Command(spec) => spec.clone(),
            Target::Attach { .. } => return None,
        };
        Some(
            spec.with_log_dir(self.out_dir.join("logs"))
                .with_startup_timeout(self.startup_timeout)
                .with_keep(self.keep_server),
        )
    }

    async fn preflight(&self) -> Result<(), Error> {
        // Find out now, not after a 10-minute SGLang start, that the report cannot be written.
        let dir = self.out_dir.clone();
        let writable = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .and_then(|()| tempfile::NamedTempFile::new_in(&dir).map(drop))
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(source) = writable {
            return Err(ScenarioError::OutDirNotWritable {
                path: self.out_dir.clone(),
                source,
            }
            .into());
        }
        if self.tracker.gpu == GpuMode::Required {
            let visible = self.tracker.visible_devices.clone();
            tokio::task::spawn_blocking(move || crate::tracker::check_gpu(visible.as_deref()))
                .await
                .unwrap_or_else(|e| {
                    Err(crate::tracker::GpuUnavailable {
                        reason: e.to_string(),
                    })
                })
                .map_err(ScenarioError::GpuRequired)?;
        }
        if let Target::Sglang(server) = &self.target {
            check_sglang(server.python()).await?;
        }
        Ok(())
    }

    async fn run_stages(&self, report: &mut Report) -> Result<(), Error> {
        self.preflight().await?;
        let images = match &self.workload {
            Workload::VlmImage(config) => {
                let config = config.clone();
                Some(
                    tokio::task::spawn_blocking(move || ImageSet::new(&config))
                        .await
                        .map_err(|e| blocking("prepare the images", e))?
                        .map_err(LoadError::from)?,
                )
            }
            _ => None,
        };
        if let Target::Sglang(server) = &self.target
            && server.device() == crate::fixture::Device::Cpu
        {
            report
                .notes
                .push("SGLang runs on the CPU (device cpu): host memory is judged".into());
        }
        let fixture = match (&self.target, self.spec()) {
            (Target::Attach { base_url, .. }, _) => ServerFixture::attach(base_url.clone()),
            (_, Some(spec)) => {
                report.target.argv = spec.argv();
                ServerFixture::start(spec).await?
            }
            (_, None) => unreachable!("every launched target has a spec"),
        };
        report.target.base_url = fixture.base_url().to_owned();
        report.files.server_log = fixture.log_path().map(Path::to_path_buf);
        if let Target::Sglang(server) = &self.target {
            report.target.model = Some(server.model_path.clone());
        }
        let tree = match &self.target {
            Target::Attach { pid: Some(pid), .. } => {
                Some(crate::fixture::ProcessTree::new(*pid, None))
            }
            _ => fixture.tree(),
        };
        let tracker = match MemoryTracker::start(tree, Some(fixture.base_url()), &self.tracker) {
            Ok(t) => t,
            Err(e) => {
                let shutdown = fixture.stop().await;
                report.shutdown = shutdown.ok();
                return Err(e.into());
            }
        };
        let outcome = self
            .measure(&fixture, &tracker, images.as_ref(), report)
            .await;
        report.timeline = tracker.finish().await;
        if let Target::Sglang(server) = &self.target
            && server.device() == crate::fixture::Device::Cpu
            && let Some(gpu) = report.timeline.sources.iter_mut().find(|s| s.name == "gpu")
            && !gpu.available
        {
            gpu.note = Some("GPU metrics off: SGLang runs on the CPU (device cpu)".into());
        }
        report.server_log_tail = fixture.log_tail(50);
        let exit = fixture.exit_info();
        match fixture.stop().await {
            Ok(shutdown) => report.shutdown = Some(shutdown),
            Err(e) => report
                .notes
                .push(format!("stopping the server: {}", chain(&e))),
        }
        match (outcome, exit) {
            // Even one crash at the last request is a failed run, whatever the error rate says.
            (outcome, Some(status)) => {
                return Err(ScenarioError::ServerExited {
                    status,
                    during: outcome.err().map(Box::new),
                }
                .into());
            }
            (Err(e), None) => return Err(e),
            (Ok(()), None) => {}
        }
        let series = request_series(&report.timeline);
        if series.is_empty() {
            return Err(ScenarioError::NoReadings.into());
        }
        let thresholds = self.thresholds.clone();
        let verdict = tokio::task::spawn_blocking(move || analysis::analyze(&series, &thresholds))
            .await
            .map_err(|e| blocking("analyse the timeline", e))?;
        let judged_memory = verdict.metrics.iter().any(|m| {
            m.judged
                && m.metric
                    .parse::<Metric>()
                    .is_ok_and(|metric| metric.is_server_memory())
        });
        // A threshold of the user's that matched no metric of this run is said, not ignored.
        for rule in &self.thresholds.rules {
            if rule.custom
                && !verdict
                    .metrics
                    .iter()
                    .any(|m| rule.pattern.matches_name(&m.metric))
            {
                report.notes.push(format!(
                    "the threshold for {} matched no metric of this run (the metrics are listed in the report)",
                    rule.pattern
                ));
            }
        }
        if !judged_memory {
            report.verdict = Some(verdict);
            return Err(ScenarioError::NothingJudged.into());
        }
        report.outcome = verdict.outcome.into();
        report.verdict = Some(verdict);
        Ok(())
    }

    async fn measure(
        &self,
        fixture: &ServerFixture,
        tracker: &MemoryTracker,
        images: Option<&ImageSet>,
        report: &mut Report,
    ) -> Result<(), Error> {
        tracker.mark(0, Phase::Baseline);
        tokio::time::sleep(self.baseline).await;
        let printer = self
            .progress
            .map(|every| self.spawn_progress(tracker, every));
        let driven = load::drive(
            fixture.base_url(),
            &self.workload,
            &self.driver,
            tracker,
            images,
        )
        .await;
        if let Some(p) = printer {
            p.abort();
        }
        report.requests = Some(load::summarize(&driven.records));
        report.request_records = driven.records;
        if let Some(e) = driven.error {
            return Err(e.into());
        }
        tracker.mark(0, Phase::Cooldown);
        if self.cooldown.flush {
            match flush(fixture.base_url(), self.cooldown.flush_timeout).await {
                Ok(()) => {}
                Err(note) => report.notes.push(note),
            }
        }
        tracker.mark(1, Phase::Cooldown);
        tokio::time::sleep(self.cooldown.settle).await;
        Ok(())
    }

    /// A task printing one line every `every`: phase, requests done, tree memory so far.
    fn spawn_progress(
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
                eprintln!(
                    "  {name} · {phase} {}/{total} · {}",
                    p.done,
                    values.join(" · ")
                );
            }
        })
    }

    /// Plots and the JSON report, on a blocking thread (encoding and fsync take a while).
    async fn write_outputs(&self, report: &mut Report) {
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

fn write_files(report: &mut Report, plots: bool, out_dir: &Path, name: &str, json: &Path) {
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
async fn flush(base_url: &str, timeout: Duration) -> Result<(), String> {
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

async fn check_sglang(python: &Path) -> Result<(), ScenarioError> {
    let py = python.display().to_string();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(python)
            .args(["-c", "import sglang"])
            .kill_on_drop(true)
            .output(),
    )
    .await;
    let detail = match out {
        Err(_) => "`import sglang` took over 120 s".to_owned(),
        Ok(Err(e)) => format!("could not run it ({e})"),
        Ok(Ok(o)) if o.status.success() => return Ok(()),
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
    Err(ScenarioError::SglangMissing { python: py, detail })
}

/// Whether a metric's growth is analysed: bytes that can leak (not capacities, headroom or the
/// server's own counters).
fn analysed(metric: &Metric, unit: Unit) -> bool {
    unit == Unit::Bytes && metric.can_leak()
}

fn last(timeline: &Timeline, name: &str) -> Option<f64> {
    timeline.series.get(name)?.points.last().map(|p| p.v)
}

/// Room left before an out-of-memory failure for `metric`: the host's `MemAvailable`, the
/// device's free memory, or for per-process GPU metrics the tightest device.
fn headroom(timeline: &Timeline, metric: &Metric) -> Option<f64> {
    use crate::tracker::metric::{Scope, Source};
    match (metric.source, &metric.scope) {
        (Source::Host, _) => last(timeline, metric::HOST_MEM_AVAILABLE),
        (Source::Gpu, Scope::Dev(d)) => last(timeline, &Metric::gpu_dev("free", *d).to_string()),
        (Source::Gpu, _) => timeline
            .series
            .iter()
            .filter(|(k, _)| {
                k.parse::<Metric>()
                    .is_ok_and(|m| m.source == Source::Gpu && m.quantity == "free")
            })
            .filter_map(|(_, s)| s.points.last().map(|p| p.v))
            // A process lives on one device (usually): the tightest device is the honest bound.
            .reduce(f64::min),
        _ => None,
    }
}

/// Turn the timeline into one request-indexed series per analysed metric.
pub(crate) fn request_series(timeline: &Timeline) -> Vec<RequestSeries> {
    // The settle starts at the cooldown's last mark (after the flush), not at its first.
    let cooldown_from = timeline.marks_in(Phase::Cooldown).map(|m| m.t_us).max();
    timeline
        .series
        .iter()
        .filter_map(|(name, s)| {
            let metric: Metric = name.parse().ok()?;
            if !analysed(&metric, s.unit) {
                return None;
            }
            let values = timeline.per_request(name, Phase::Measure)?;
            // The settled part of the cooldown: its second half.
            let cooldown = match (cooldown_from, s.points.last()) {
                (Some(from), Some(end)) if end.t_us > from => {
                    let mid = from + (end.t_us - from) / 2;
                    s.points
                        .iter()
                        .filter(|p| p.t_us >= mid)
                        .map(|p| p.v)
                        .collect()
                }
                _ => Vec::new(),
            };
            Some(RequestSeries {
                metric: name.clone(),
                unit: s.unit,
                values,
                cooldown,
                headroom: headroom(timeline, &metric),
            })
        })
        .collect()
}
