//! Fleets: judge the memory of servers someone else runs, from the Prometheus that already
//! scrapes them (`sglang-memtest judge --prometheus URL`).
//!
//! ```text
//!  QuerySet (preset or --query) ──query_range──> PromSeries ──segments (cut at restarts)──>
//!  RequestSeries (per request via the matched counter, per hour) ──analysis::analyze_at──>
//!  FleetRow per series and segment, worst first ──> FleetReport (JSON, PNG/SVG, console)
//! ```
//!
//! - [`prom`]: the HTTP API client; its errors quote Prometheus.
//! - [`series`]: the adapter from Prometheus' samples to the analysis' input.
//! - [`presets`]: the query sets of common deployments.
//! - [`report`]: the fleet report, one row per replica, process or GPU.
//! - [`server`]: a real Prometheus as a test fixture.
//! - [`monitor`]: `monitor --prometheus`, the run's own requests as the request index.

mod html;
pub mod monitor;
mod plot;
pub mod presets;
pub mod prom;
pub mod report;
pub mod series;
pub mod server;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use presets::{MemoryQuery, Preset, QuerySet};
pub use prom::{PromClient, PromSeries, Window};
pub use report::{FleetReport, FleetRow};
pub use server::PrometheusServer;

use crate::analysis::{self, Thresholds};

/// Which memory a series measures: decides the threshold rule that judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryKind {
    /// Host memory (RSS, a container's working set): judged as `host.rss@tree`.
    Host,
    /// GPU memory: judged as `gpu.proc@tree`.
    Gpu,
}

impl MemoryKind {
    /// The metric name whose threshold rule judges this kind.
    pub fn metric(self) -> &'static str {
        match self {
            MemoryKind::Host => crate::tracker::metric::HOST_RSS_TREE,
            MemoryKind::Gpu => crate::tracker::metric::GPU_PROC_TREE,
        }
    }
}

/// How a limit series gives the headroom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headroom {
    /// A capacity (`container_spec_memory_limit_bytes`): headroom = limit − usage.
    Limit,
    /// Free memory (`DCGM_FI_DEV_FB_FREE`): headroom = its value.
    Free,
}

/// Why a fleet could not be judged. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The Prometheus URL does not parse.
    #[error(
        "{url:?} is not a Prometheus URL: write it as http://HOST:PORT (e.g. http://prometheus:9090)"
    )]
    BadUrl {
        /// What was given.
        url: String,
    },
    /// No answer (connection refused, DNS, timeout).
    #[error(
        "cannot reach Prometheus at {url}: {message}; check the address and that Prometheus runs (its UI answers at {url}/graph)"
    )]
    Unreachable {
        /// The base URL.
        url: String,
        /// The transport's error.
        message: String,
    },
    /// An answer that is not Prometheus' API JSON.
    #[error(
        "{url} answered HTTP {status} without Prometheus' JSON ({body:?}): is this the Prometheus server's address (the one its web UI runs on)?"
    )]
    NotPrometheus {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Prometheus rejected the query.
    #[error("Prometheus rejected the query `{query}` ({kind}): {message}")]
    Query {
        /// The PromQL.
        query: String,
        /// Prometheus' `errorType`.
        kind: String,
        /// Prometheus' `error`.
        message: String,
    },
    /// The query's result is not a range of samples.
    #[error(
        "the query `{query}` returned a {found}, not series over time: give a query that selects series (no scalar or string)"
    )]
    NotMatrix {
        /// The PromQL.
        query: String,
        /// The `resultType`.
        found: String,
    },
    /// The memory queries matched nothing in the window.
    #[error(
        "no memory series in the window: {queries} matched nothing between {from} and {to}; check the metric names and labels in Prometheus' UI (/graph) and the window (--since, --start, --end)"
    )]
    Empty {
        /// The queries, joined.
        queries: String,
        /// The window's start (RFC 3339).
        from: String,
        /// The window's end.
        to: String,
    },
    /// No memory query at all.
    #[error("nothing to judge: pass --preset (sglang-k8s, process) or at least one --query")]
    NoQuery,
    /// The window is empty or reversed.
    #[error("the window {from} .. {to} is empty: --start must come before --end")]
    BadWindow {
        /// Start (RFC 3339).
        from: String,
        /// End.
        to: String,
    },
}

/// One judgement of a fleet.
#[derive(Debug, Clone)]
pub struct JudgeConfig {
    /// Prometheus' base URL.
    pub prometheus: String,
    /// What to read.
    pub queries: QuerySet,
    /// The window and its resolution.
    pub window: Window,
    /// What counts as a leak.
    pub thresholds: Thresholds,
    /// Per HTTP request to Prometheus.
    pub timeout: Duration,
    /// Completion times (unix seconds) of requests the harness sent itself (`monitor
    /// --prometheus`): the request index of every series, instead of a counter query.
    pub request_marks: Option<Vec<f64>>,
}

/// What the queries of a [`JudgeConfig`] returned: the input of [`assess`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fetched {
    /// Per memory query: its kind, its PromQL and the series it found.
    pub memory: Vec<(MemoryKind, String, Vec<PromSeries>)>,
    /// The request counter's series (empty: none asked for, or none found).
    pub requests: Vec<PromSeries>,
    /// Host memory limits.
    pub limits: Vec<PromSeries>,
    /// Free GPU memory.
    pub gpu_free: Vec<PromSeries>,
}

fn check(c: &JudgeConfig) -> Result<(), FleetError> {
    if c.queries.memory.is_empty() {
        return Err(FleetError::NoQuery);
    }
    if c.window.end <= c.window.start {
        return Err(FleetError::BadWindow {
            from: report::rfc3339(c.window.start),
            to: report::rfc3339(c.window.end),
        });
    }
    Ok(())
}

/// Run every query of `c` over its window.
///
/// # Errors
/// [`FleetError`]: a bad URL or window, Prometheus unreachable or rejecting a query.
pub async fn fetch(c: &JudgeConfig) -> Result<Fetched, FleetError> {
    check(c)?;
    let client = PromClient::new(&c.prometheus, c.timeout)?;
    let w = c.window;
    let read = |q: Option<String>| {
        let client = client.clone();
        async move {
            match q {
                Some(q) => client.query_range(&q, &w).await,
                None => Ok(Vec::new()),
            }
        }
    };
    // The harness's own requests replace the counter (monitor --prometheus).
    let counter = c
        .queries
        .requests
        .clone()
        .filter(|_| c.request_marks.is_none());
    let mut fetched = Fetched {
        requests: read(counter).await?,
        limits: read(c.queries.limit.clone()).await?,
        gpu_free: read(c.queries.gpu_free.clone()).await?,
        memory: Vec::new(),
    };
    for m in &c.queries.memory {
        let found = client.query_range(&m.query, &w).await?;
        fetched.memory.push((m.kind, m.query.clone(), found));
    }
    Ok(fetched)
}

/// Judge each memory series of `f` (per segment between restarts) with the run's own analysis.
/// Rows come worst first. The significance level is split across the rows (Bonferroni): judging
/// 50 replicas must not multiply false alarms by 50. Pure: no I/O.
///
/// # Errors
/// [`FleetError::Empty`] when no memory query found a series; [`FleetError::NoQuery`],
/// [`FleetError::BadWindow`].
pub fn assess(c: &JudgeConfig, f: &Fetched) -> Result<FleetReport, FleetError> {
    check(c)?;
    let mut notes = Vec::new();
    if c.queries.requests.is_some() && c.request_marks.is_none() && f.requests.is_empty() {
        notes.push("the request counter matched no series: judged per hour only".to_owned());
    }
    let on = &c.queries.on;
    let mut segments = Vec::new();
    for (kind, q, found) in &f.memory {
        if found.is_empty() {
            notes.push(format!("`{q}` matched no series"));
        }
        for s in found {
            let own = c.request_marks.as_ref().map(|m| monitor::counter_at(s, m));
            let counter = own
                .as_ref()
                .or_else(|| series::matching(&s.labels, &f.requests, on));
            let room = match kind {
                MemoryKind::Host => {
                    series::matching(&s.labels, &f.limits, on).map(|l| (l, Headroom::Limit))
                }
                MemoryKind::Gpu => {
                    series::matching(&s.labels, &f.gpu_free, on).map(|l| (l, Headroom::Free))
                }
            };
            for seg in series::segments(s, counter, room, c.window.step) {
                segments.push((*kind, q.clone(), seg));
            }
        }
    }
    if segments.is_empty() {
        return Err(FleetError::Empty {
            queries: c
                .queries
                .memory
                .iter()
                .map(|m| format!("`{}`", m.query))
                .collect::<Vec<_>>()
                .join(", "),
            from: report::rfc3339(c.window.start),
            to: report::rfc3339(c.window.end),
        });
    }
    let alpha = (1.0 - c.thresholds.confidence) / segments.len() as f64;
    let rows = segments
        .into_iter()
        .map(|(kind, query, seg)| {
            let input = seg.request_series(kind);
            let verdict = analysis::analyze_at(std::slice::from_ref(&input), &c.thresholds, alpha);
            FleetRow::new(kind, query, &seg, input, verdict)
        })
        .collect();
    Ok(FleetReport::new(c, alpha, rows, notes))
}

/// [`fetch`] then [`assess`]: read every query over the window and judge each memory series.
///
/// # Errors
/// [`FleetError`]: Prometheus unreachable or rejecting a query, or no memory series at all.
pub async fn judge(c: &JudgeConfig) -> Result<FleetReport, FleetError> {
    assess(c, &fetch(c).await?)
}
