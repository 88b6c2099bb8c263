//! `sglang-memtest judge --prometheus URL`: judge a running fleet from its Prometheus, and
//! `monitor --prometheus URL`: read a remote server's memory from Prometheus after a run.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use sglang_memtest::analysis::Thresholds;
use sglang_memtest::fleet::{
    self, FleetReport, JudgeConfig, MemoryKind, MemoryQuery, Preset, QuerySet, Window,
};
use sglang_memtest::report::{Report, RunOutcome};

use crate::{EXIT_FAILURE, EXIT_INCONCLUSIVE, EXIT_LEAK, EXIT_PASS, EXIT_SETUP};

/// Rows printed on the console (every row is in the JSON).
const CONSOLE_ROWS: usize = 30;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PresetArg {
    /// SGLang on Kubernetes: cAdvisor working set per container (limit from
    /// container_spec_memory_limit_bytes), dcgm-exporter FB used per GPU (free from FB_FREE),
    /// requests from sglang:num_requests_total, matched on namespace and pod.
    SglangK8s,
    /// process_resident_memory_bytes per process, requests from sglang:num_requests_total,
    /// matched on instance.
    Process,
}

/// The queries and judgement settings shared by `judge` and `monitor --prometheus`.
#[derive(Args, Clone, Default)]
pub(crate) struct QueryArgs {
    /// A query set to start from: `sglang-k8s` or `process`.
    #[arg(long, value_enum)]
    preset: Option<PresetArg>,
    /// Label matchers added to every preset query, e.g. 'namespace="llm",pod=~"sglang-.*"'.
    #[arg(long, default_value = "")]
    selector: String,
    /// A host-memory query in bytes (PromQL), one verdict per series; repeatable.
    #[arg(long = "query", value_name = "PROMQL")]
    queries: Vec<String>,
    /// A GPU-memory query in bytes (PromQL), one verdict per series; repeatable.
    #[arg(long = "gpu-query", value_name = "PROMQL")]
    gpu_queries: Vec<String>,
    /// A request counter (replaces the preset's): growth is also judged per request.
    #[arg(long = "requests-query", value_name = "PROMQL")]
    requests: Option<String>,
    /// Host memory limit in bytes (replaces the preset's): headroom = limit − usage.
    #[arg(long = "limit-query", value_name = "PROMQL")]
    limit: Option<String>,
    /// Free GPU memory in bytes (replaces the preset's): headroom.
    #[arg(long = "gpu-free-query", value_name = "PROMQL")]
    gpu_free: Option<String>,
    /// Labels that pair a memory series with its counter and limit (comma-separated; default:
    /// the preset's, else every label both carry).
    #[arg(long, value_delimiter = ',', value_name = "LABELS")]
    on: Vec<String>,
    /// Resolution of the range queries (raised so that no series has over 10,000 points).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    step: Duration,
    /// Per HTTP request to Prometheus.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    prometheus_timeout: Duration,
}

#[derive(Args)]
pub(crate) struct JudgeArgs {
    /// Prometheus' base URL, e.g. http://prometheus:9090.
    #[arg(long, env = "MEMTEST_PROMETHEUS_URL")]
    prometheus: String,
    #[command(flatten)]
    queries: QueryArgs,
    /// Growth per hour above which a series leaks (`256MiB`, `1GiB`).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    max_growth_per_hour: f64,
    /// The window: the last DURATION (`90m`, `7d`) before --end.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    since: Duration,
    /// The window's start (RFC 3339), instead of --since.
    #[arg(long)]
    start: Option<String>,
    /// The window's end (RFC 3339; default: now).
    #[arg(long)]
    end: Option<String>,
    /// Where the report and plots go.
    #[arg(long, default_value = "target/memtest/fleet")]
    out_dir: PathBuf,
    /// File stem of the report (`<name>.json`, `.png`, `.svg`).
    #[arg(long, default_value = "fleet")]
    name: String,
    /// Skip the PNG/SVG plots.
    #[arg(long)]
    no_plot: bool,
    /// Print the JSON report to stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// `monitor --prometheus`: the run drives the load; memory comes from Prometheus.
#[derive(Args, Default)]
pub(crate) struct MonitorPrometheus {
    /// Judge the run's memory from this Prometheus (with --base-url: a remote server) over the
    /// run's measured window, requests mapped by their completion times. Without --query or
    /// --preset: `process_resident_memory_bytes{instance="HOST:PORT"}` of the --base-url.
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    #[command(flatten)]
    queries: QueryArgs,
}

pub(crate) fn parse_size(text: &str) -> Result<f64, String> {
    sglang_memtest::config::parse_bytes(text)
        .ok_or_else(|| format!("{text:?} is not a size: write e.g. 256MiB or 1GiB"))
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn parse_time(flag: &str, text: &str) -> anyhow::Result<f64> {
    humantime::parse_rfc3339_weak(text)
        .map(unix)
        .map_err(|e| anyhow::anyhow!("--{flag} {text:?}: {e}; write it as 2026-12-06T03:00:00Z"))
}

impl QueryArgs {
    fn query_set(&self) -> QuerySet {
        let preset = self.preset.map(|p| match p {
            PresetArg::SglangK8s => Preset::SglangK8s,
            PresetArg::Process => Preset::Process,
        });
        let mut q = preset
            .map(|p| p.queries(&self.selector))
            .unwrap_or_default();
        q.memory.extend(
            self.queries
                .iter()
                .map(|s| MemoryQuery::new(MemoryKind::Host, s)),
        );
        q.memory.extend(
            self.gpu_queries
                .iter()
                .map(|s| MemoryQuery::new(MemoryKind::Gpu, s)),
        );
        for (slot, given) in [
            (&mut q.requests, &self.requests),
            (&mut q.limit, &self.limit),
            (&mut q.gpu_free, &self.gpu_free),
        ] {
            if given.is_some() {
                slot.clone_from(given);
            }
        }
        if !self.on.is_empty() {
            q.on.clone_from(&self.on);
        }
        q
    }

    fn config(
        &self,
        prometheus: &str,
        start: f64,
        end: f64,
        thresholds: Thresholds,
    ) -> JudgeConfig {
        JudgeConfig {
            prometheus: prometheus.to_owned(),
            queries: self.query_set(),
            window: Window::new(start, end, self.step),
            thresholds,
            timeout: self.prometheus_timeout,
            request_marks: None,
        }
    }
}

/// The exit status of a fleet judgement.
fn exit_code(r: &FleetReport) -> u8 {
    match r.outcome {
        RunOutcome::Pass => EXIT_PASS,
        RunOutcome::Leak => EXIT_LEAK,
        RunOutcome::Inconclusive => EXIT_INCONCLUSIVE,
        RunOutcome::Error => EXIT_SETUP,
    }
}

/// Judge, write the report (also on error), print it; the exit status.
async fn judge_and_write(
    c: &JudgeConfig,
    dir: &std::path::Path,
    name: &str,
    plots: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let mut report = match fleet::judge(c).await {
        Ok(r) => r,
        Err(e) => {
            let mut failed = FleetReport::failed(c, &e);
            // The report of a failure is for the cron job's logs; the error is what to fix.
            let _ = failed.write(dir, name, false);
            eprintln!("error: {e}");
            return Ok(EXIT_SETUP);
        }
    };
    if let Err(e) = report.write(dir, name, plots) {
        eprintln!("error: {:#}", anyhow::Error::from(e));
        print!("{}", report.summary(CONSOLE_ROWS));
        return Ok(EXIT_FAILURE);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.summary(CONSOLE_ROWS));
    }
    Ok(exit_code(&report))
}

/// `sglang-memtest judge`.
pub(crate) async fn judge(a: JudgeArgs) -> anyhow::Result<u8> {
    let end = match &a.end {
        Some(t) => parse_time("end", t)?,
        None => unix(SystemTime::now()),
    };
    let start = match &a.start {
        Some(t) => parse_time("start", t)?,
        None => end - a.since.as_secs_f64(),
    };
    let thresholds = Thresholds {
        max_growth_per_hour: a.max_growth_per_hour,
        ..Thresholds::default()
    };
    let c = a.queries.config(&a.prometheus, start, end, thresholds);
    judge_and_write(&c, &a.out_dir, &a.name, !a.no_plot, a.json).await
}

impl MonitorPrometheus {
    /// Whether `--prometheus` was given.
    pub(crate) fn wanted(&self) -> bool {
        self.prometheus.is_some()
    }
}

/// `monitor --prometheus`: after the run, judge its measured window from Prometheus with the
/// run's request completions as the request index. A run that measured no request keeps its
/// own exit status.
pub(crate) async fn after_run(m: &MonitorPrometheus, run: &Report) -> anyhow::Result<u8> {
    let url = m.prometheus.as_deref().unwrap_or_default();
    if run
        .timeline
        .requests_in(sglang_memtest::tracker::Phase::Measure)
        == 0
    {
        eprintln!(
            "error: the run measured no request, so there is nothing to judge from Prometheus"
        );
        return Ok(crate::exit_code(run));
    }
    println!("\nmemory from Prometheus ({url}), over the run's measured requests:");
    after_run_inner(m, url, run).await
}

async fn after_run_inner(m: &MonitorPrometheus, url: &str, run: &Report) -> anyhow::Result<u8> {
    let marks = fleet::monitor::measured_marks(run)?;
    let (Some(&first), Some(&last)) = (marks.first(), marks.last()) else {
        anyhow::bail!("the run's marks hold no measured request: nothing to judge from Prometheus");
    };
    let mut queries = m.queries.clone();
    if queries.preset.is_none() && queries.queries.is_empty() && queries.gpu_queries.is_empty() {
        // The server's own /metrics, as Prometheus labels it: `instance="HOST:PORT"`.
        queries.preset = Some(PresetArg::Process);
        if queries.selector.is_empty() {
            let instance = run.target.base_url.split("://").last().unwrap_or_default();
            queries.selector = format!("instance=\"{}\"", instance.trim_end_matches('/'));
        }
    }
    // A scrape or two of margin on each side: the first and last requests' readings.
    let margin = 2.0 * queries.step.as_secs_f64();
    // The run's own thresholds (its --max-slope, --max-growth-per-hour).
    let mut c = queries.config(url, first - margin, last + margin, run.thresholds.clone());
    c.request_marks = Some(marks);
    let dir = run
        .files
        .json
        .as_ref()
        .and_then(|p| p.parent())
        .map_or_else(|| PathBuf::from("target/memtest"), PathBuf::from);
    let name = format!("{}.prometheus", run.scenario);
    judge_and_write(&c, &dir, &name, true, false).await
}
