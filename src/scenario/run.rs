//! `Scenario::run`: the pipeline, end to end, with a report written on every outcome.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::accounting;
use super::series::request_series;
use super::stages::{check_engine, flush};
use super::{Scenario, ScenarioError, Target};
use crate::analysis::{self, adaptive, adaptive::Adaptive};
use crate::error::Error;
use crate::fixture::watchdog;
use crate::fixture::{LogWatchReport, ServerFixture, ServerSpec};
use crate::load::{self, images::ImageSet};
use crate::load::{Driver, LoadError, Plan, RequestLog};
use crate::report::{Report, ReportFiles, RunError, RunOutcome, SCHEMA_VERSION, TargetInfo};
use crate::tracker::metric::Metric;
use crate::tracker::{GpuMode, MemoryTracker, Phase, Timeline};
use crate::util::error_chain as chain;

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
    ///
    /// With the [`watchdog`] installed (`MEMTEST_WATCHDOG=1` installs it here), a signal to the
    /// process ends the run early as [`run_until`](Self::run_until) does.
    pub async fn run(&self) -> Report {
        if self.watchdog {
            watchdog::install_or_warn();
        }
        self.run_until(&watchdog::token()).await
    }

    /// [`run`](Self::run) that ends early when `cancel` is cancelled (the CLI cancels it on
    /// the first Ctrl-C or SIGTERM): a start-up is given up at once, the requests stop, the
    /// server is torn down and the report — outcome error, interrupted, with everything
    /// measured until then — is written. A token is one run's (or one CLI invocation's):
    /// nothing global is left set for later runs.
    pub async fn run_until(&self, cancel: &CancellationToken) -> Report {
        let _in_flight = watchdog::RunGuard::new();
        let t0 = Instant::now();
        let mut report = self.empty_report();
        if let Err(e) = self.run_stages(&mut report, cancel).await {
            report.outcome = RunOutcome::Error;
            report.error = Some(RunError::new(e));
        }
        report.likely_causes = crate::report::likely_causes(&report);
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
                report.error = Some(RunError::new(Error::from(ScenarioError::Harness {
                    what: "start the async runtime",
                    source: e,
                })));
                report
            }
        }
    }

    pub(super) fn empty_report(&self) -> Report {
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
            thresholds: self.thresholds.clone(),
            requests: None,
            adaptive: None,
            verdict: None,
            timeline: Timeline::default(),
            shutdown: None,
            server_log_tail: Vec::new(),
            idle_accounting: None,
            log_watch: None,
            files: ReportFiles::default(),
            notes: Vec::new(),
            likely_causes: Vec::new(),
            diagnosis: None,
        }
    }

    /// The engine's name when it runs on the CPU (SGLang's CPU engine, vLLM's CPU build).
    fn cpu_engine(&self) -> Option<&'static str> {
        let server = self.target.engine()?;
        (server.device() == crate::engine::Device::Cpu).then(|| server.engine().display_name())
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
            Target::Engine(server) => server.clone().into_spec().with_name(format!(
                "{}-{}",
                self.name,
                server.engine().name()
            )),
            Target::Command(spec) => spec.clone(),
            Target::Attach { .. } => return None,
        };
        let spec = match self.port {
            Some(p) => spec.with_port(p),
            None => spec,
        };
        Some(
            // Every engine's memory checks, whatever was launched: an engine behind a command
            // prints the same lines.
            spec.with_log_patterns(crate::engine::log_patterns())
                .with_log_dir(self.out_dir.join("logs"))
                .with_startup_timeout(self.startup_timeout)
                .with_keep(self.keep_server)
                .with_reaper(self.reaper)
                .with_watchdog(self.watchdog),
        )
    }

    /// With `--py-heap`: the tracer written into the run folder, for a server the harness
    /// launches (an attached one cannot be given it: the report says so).
    fn prepare_py_heap(&self, report: &mut Report) -> Option<crate::diagnose::PyHeapRun> {
        let config = self.py_heap?;
        if let Target::Attach { .. } = self.target {
            report.notes.push(
                "--py-heap does nothing for an attached server: the harness cannot put its tracer on a running server's PYTHONPATH; let the harness launch the server (--model, --vllm-model, --server-cmd)".into(),
            );
            return None;
        }
        Some(crate::diagnose::PyHeapRun::prepare(
            &self.out_dir,
            &self.name,
            config,
        ))
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
        match &self.target {
            Target::Engine(server) => check_engine(server).await?,
            Target::Attach { base_url, .. } => check_reachable(base_url).await?,
            _ => {}
        }
        Ok(())
    }

    async fn run_stages(
        &self,
        report: &mut Report,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        self.preflight().await?;
        if cancel.is_cancelled() {
            return Err(ScenarioError::Interrupted { stage: "preflight" }.into());
        }
        let images = match self.workload.images() {
            Some(config) => {
                let config = config.clone();
                Some(
                    tokio::task::spawn_blocking(move || ImageSet::new(&config))
                        .await
                        .map_err(|e| blocking("prepare the images", e))?
                        .map_err(LoadError::from)?,
                )
            }
            None => None,
        };
        if let Some(engine) = self.cpu_engine() {
            report.notes.push(format!(
                "{engine} runs on the CPU (device cpu): host memory is judged"
            ));
        }
        let py_heap = self.prepare_py_heap(report);
        let spec = self
            .spec()
            .map(|spec| match py_heap.as_ref().and_then(|h| h.server_env()) {
                Some((site, vars)) => vars
                    .into_iter()
                    .fold(spec, |spec, (k, v)| spec.with_env(k, v))
                    .with_path_prepended("PYTHONPATH", site),
                None => spec,
            });
        let fixture = match (&self.target, spec) {
            (Target::Attach { base_url, .. }, _) => ServerFixture::attach(base_url.clone()),
            (_, Some(spec)) => {
                report.target.argv = crate::fixture::redact(&spec.argv());
                ServerFixture::start_cancellable(spec, cancel).await?
            }
            (_, None) => unreachable!("every launched target has a spec"),
        };
        report.target.base_url = fixture.base_url().to_owned();
        report.files.server_log = fixture.log_path().map(Path::to_path_buf);
        if let Some(server) = self.target.engine() {
            report.target.model = Some(server.model_path.clone());
        }
        let tree = match &self.target {
            Target::Attach { pid: Some(pid), .. } => {
                Some(crate::fixture::ProcessTree::new(*pid, None))
            }
            _ => fixture.tree(),
        };
        let capture = crate::diagnose::Capture::new(
            tree.clone(),
            self.py_spy.clone(),
            self.out_dir.clone(),
            self.name.clone(),
        )
        .with_py_heap(py_heap);
        // NVML's first call loads a library and may take a while: not on an async thread.
        let started = {
            let (url, config) = (fixture.base_url().to_owned(), self.tracker.clone());
            let (dir, name) = (self.out_dir.clone(), self.name.clone());
            tokio::task::spawn_blocking(move || {
                MemoryTracker::start(tree, Some(&url), &config, Some((&dir, &name)))
            })
            .await
            .map_err(|e| blocking("start the memory tracker", e))?
        };
        let tracker = match started {
            Ok(t) => t,
            Err(e) => {
                let shutdown = fixture.stop().await;
                report.shutdown = shutdown.ok();
                return Err(e.into());
            }
        };
        // From here on the raw files fill up: a report that says so is on disk at once, so a
        // harness killed mid-run still leaves something `analyze` can turn into a verdict.
        self.write_provisional(report).await;
        // Everything from here stops at once when the user cancels or the server dies.
        let stop = cancel.child_token();
        let measuring = self.measure(&fixture, &tracker, images.as_ref(), report, &stop, &capture);
        let death = async {
            let _ = fixture.exited().await;
            stop.cancel();
            std::future::pending::<()>().await
        };
        let outcome = tokio::select! {
            r = measuring => r,
            () = death => unreachable!("the death watch never ends"),
        };
        let outcome_kinds = outcome.as_ref().ok().cloned();
        report.timeline = tracker.finish().await;
        if let Some(engine) = self.cpu_engine()
            && let Some(gpu) = report.timeline.sources.iter_mut().find(|s| s.name == "gpu")
            && !gpu.available
        {
            gpu.note = Some(format!(
                "GPU metrics off: {engine} runs on the CPU (device cpu)"
            ));
        }
        report.server_log_tail = fixture.log_tail(50);
        if outcome.is_ok() && fixture.exit_info().is_none() && !cancel.is_cancelled() {
            // The server still runs: on a leak, the guilty process's stacks.
            self.diagnose_leak(&capture, report).await;
        }
        let exit = fixture.exit_info();
        let tree_pids = fixture.seen_pids();
        let log_watch = fixture.log_watch();
        match fixture.stop().await {
            Ok(shutdown) => report.shutdown = Some(shutdown),
            Err(e) => report
                .notes
                .push(format!("stopping the server: {}", chain(&e))),
        }
        report.diagnosis = capture.finish(&report.timeline);
        // Read after the stop: the server's last words (a traceback) are in by then.
        report.log_watch = Some(log_watch.map_or_else(
            || {
                LogWatchReport::unavailable(
                    "not available: the server's log is not ours (attached)",
                )
            },
            |w| w.report(),
        ));
        match (outcome, exit) {
            // Even one crash at the last request is a failed run, whatever the error rate says.
            (outcome, Some(status)) => {
                let oom =
                    tokio::task::spawn_blocking(move || crate::fixture::oom_evidence(&tree_pids))
                        .await
                        .ok()
                        .flatten();
                return Err(accounting::exited(
                    report,
                    status,
                    oom,
                    outcome.err().map(Box::new),
                ));
            }
            (Err(e), None) => return Err(e),
            (Ok(_), None) if cancel.is_cancelled() => {
                return Err(ScenarioError::Interrupted { stage: "cooldown" }.into());
            }
            (Ok(_), None) => {}
        }
        let kinds = match &outcome_kinds {
            Some(k) => k.clone(),
            None => crate::load::KindSequence::default(),
        };
        let series = request_series(&report.timeline);
        if series.is_empty() {
            return Err(ScenarioError::NoReadings.into());
        }
        let thresholds = self.thresholds.clone();
        let alpha = report
            .adaptive
            .as_ref()
            .and_then(Adaptive::final_alpha)
            .unwrap_or(1.0 - thresholds.confidence);
        let verdict = tokio::task::spawn_blocking(move || {
            analysis::analyze_with(&series, &thresholds, alpha, Some(&kinds))
        })
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
        if let Some(note) = report
            .adaptive
            .as_ref()
            .and_then(|a| a.refuted_stop(&verdict))
        {
            report.notes.push(note);
        }
        if !judged_memory {
            report.verdict = Some(verdict);
            return Err(ScenarioError::NothingJudged.into());
        }
        report.outcome = verdict.outcome.into();
        report.verdict = Some(verdict);
        accounting::apply(report);
        Ok(())
    }

    async fn measure(
        &self,
        fixture: &ServerFixture,
        tracker: &MemoryTracker,
        images: Option<&ImageSet>,
        report: &mut Report,
        stop: &CancellationToken,
        capture: &crate::diagnose::Capture,
    ) -> Result<crate::load::KindSequence, Error> {
        tracker.mark(0, Phase::Baseline);
        if !sleep_unless(self.baseline, stop).await {
            return Err(ScenarioError::Interrupted { stage: "baseline" }.into());
        }
        let idle_before = accounting::before(fixture.base_url()).await;
        let mut log = RequestLog::to_file(&self.out_dir, &self.name).map_err(|source| {
            ScenarioError::OutDirNotWritable {
                path: self.out_dir.clone(),
                source,
            }
        })?;
        report.files.requests = log.path().map(Path::to_path_buf);
        let printer = self
            .progress
            .map(|every| self.spawn_progress(tracker, every));
        let driven = self
            .drive(fixture, tracker, images, &mut log, stop, capture)
            .await;
        if let Some(p) = printer {
            p.stop();
        }
        if driven.is_ok() && !stop.is_cancelled() {
            // Before the cooldown's flush, as the memory was after the last measured request.
            let measured = tracker.snapshot().requests_in(Phase::Measure);
            capture.end(measured).await;
        }
        report.requests = Some(log.summary());
        report.notes.extend(unreached_paths(&log.summary()));
        if let Some(note) = log.flush() {
            report.notes.push(note);
        }
        report.adaptive = driven?;
        if stop.is_cancelled() {
            // Interrupted in the idle phase, or the server died: no cooldown to measure.
            return Ok(log.kinds().clone());
        }
        // Before the cooldown's flush: SGLang's /flush_cache resets the KV allocator, which
        // would hand leaked slots back and hide the leak.
        let sent = report.requests.as_ref().map_or(0, |r| r.sent);
        report.idle_accounting =
            Some(accounting::after(fixture.base_url(), &idle_before, sent).await);
        tracker.mark(0, Phase::Cooldown);
        let route = match self.target.engine() {
            Some(server) => server.engine().flush(),
            None => Ok("/flush_cache"),
        };
        if let (true, Err(none)) = (self.cooldown.flush, route) {
            report.notes.push(none.into());
        } else if let (true, Ok(route)) = (self.cooldown.flush, route) {
            tokio::select! {
                r = flush(fixture.base_url(), route, self.cooldown.flush_timeout) => {
                    if let Err(note) = r {
                        report.notes.push(note);
                    }
                }
                () = stop.cancelled() => {}
            }
        }
        tracker.mark(1, Phase::Cooldown);
        sleep_unless(self.cooldown.settle, stop).await;
        Ok(log.kinds().clone())
    }

    /// Warm-up, the measured requests (a count, or a duration), the error guard, the idle phase.
    async fn drive(
        &self,
        fixture: &ServerFixture,
        tracker: &MemoryTracker,
        images: Option<&ImageSet>,
        log: &mut RequestLog,
        stop: &CancellationToken,
        capture: &crate::diagnose::Capture,
    ) -> Result<Option<Adaptive>, Error> {
        let d = &self.driver;
        let mut driver = Driver::connect(fixture.base_url(), &self.workload, d, images)
            .await?
            .with_cancel(stop.clone());
        if d.warmup_requests > 0 {
            driver
                .run(Phase::Warmup, Plan::Count(d.warmup_requests), tracker, log)
                .await?;
        }
        capture.begin().await;
        let adaptive = match d.duration {
            Some(t) => {
                driver
                    .run(Phase::Measure, Plan::For(t), tracker, log)
                    .await?;
                None
            }
            None => Some(self.measure_adaptively(&mut driver, tracker, log).await?),
        };
        if let Some(e) = load::error_guard(log, d) {
            return Err(e.into());
        }
        if let Some(idle) = d.idle {
            tracker.mark(0, Phase::Idle);
            sleep_unless(idle, stop).await;
        }
        Ok(adaptive)
    }

    /// The measured requests of a count plan, in the batches of the adaptive schedule: after
    /// each batch the verdict so far is judged at that look's level, and the run stops when the
    /// [rule](analysis::adaptive) says so.
    async fn measure_adaptively(
        &self,
        driver: &mut Driver<'_>,
        tracker: &MemoryTracker,
        log: &mut RequestLog,
    ) -> Result<Adaptive, Error> {
        let d = &self.driver;
        let alpha = 1.0 - self.thresholds.confidence;
        let looks = adaptive::schedule(d.num_requests, d.budget(), alpha, EARLY_LOOK_MIN);
        driver.expect_total(d.warmup_requests + d.num_requests);
        let mut records = Vec::new();
        let mut sent = 0;
        for (i, look) in looks.iter().enumerate() {
            driver
                .run(
                    Phase::Measure,
                    Plan::Count(look.requests - sent),
                    tracker,
                    log,
                )
                .await?;
            sent = look.requests;
            if let Some(e) = load::error_guard(log, d) {
                return Err(e.into());
            }
            let timeline = tracker.snapshot();
            let thresholds = self.thresholds.clone();
            let kinds = log.kinds().clone();
            let a = look.alpha;
            let verdict = tokio::task::spawn_blocking(move || {
                analysis::analyze_with(&request_series(&timeline), &thresholds, a, Some(&kinds))
            })
            .await
            .map_err(|e| blocking("analyse a look", e))?;
            records.push(adaptive::LookRecord::new(*look, &verdict));
            let last = i + 1 == looks.len();
            if let Some(stopped) = adaptive::decide(look, &verdict, last) {
                return Ok(Adaptive {
                    planned: d.num_requests,
                    budget: d.budget(),
                    requests: sent,
                    stopped,
                    looks: records,
                    alpha,
                });
            }
        }
        unreachable!("the last look always decides")
    }
}

/// Whether anything answers at `base_url` (any HTTP status will do): an attach to nothing is a
/// setup error now, not a run of failed requests.
async fn check_reachable(base_url: &str) -> Result<(), ScenarioError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ScenarioError::AttachUnreachable {
            url: base_url.to_owned(),
            detail: chain(&e),
        })?;
    match client.get(format!("{base_url}/health")).send().await {
        Ok(_) => Ok(()),
        Err(e) => Err(ScenarioError::AttachUnreachable {
            url: base_url.to_owned(),
            detail: crate::load::describe_reqwest(&e),
        }),
    }
}

/// Sleeps `d` unless `stop` is cancelled first; whether the whole sleep happened.
async fn sleep_unless(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = stop.cancelled() => false,
    }
}

/// Kinds whose path no request reached: abort requests that all finished before their abort,
/// streams that all ended before the client could drop them. Said, so a pass is not taken for
/// a pass of a path that was never taken.
fn unreached_paths(summary: &crate::load::RequestSummary) -> Vec<String> {
    use crate::load::RequestKind;
    summary
        .by_kind
        .iter()
        .filter_map(|(name, c)| {
            let kind: RequestKind = name.parse().ok()?;
            let (reached, path) = if kind.is_abort() {
                (c.aborted, "aborted")
            } else if kind == RequestKind::Disconnect {
                (c.disconnected, "dropped mid-stream")
            } else {
                return None;
            };
            (c.sent > 0 && reached == 0 && c.failed < c.sent).then(|| {
                format!(
                    "none of the {} {name} requests was {path}: each finished first, so that path was not exercised (more tokens per request, --max-new-tokens, make the window longer)",
                    c.sent
                )
            })
        })
        .collect()
}

/// Early looks need this many measured requests (a trend needs readings after the warm-up cut).
const EARLY_LOOK_MIN: u64 = 2 * analysis::MIN_JUDGED as u64;
