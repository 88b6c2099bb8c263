//! The engine's own view of its memory, around the run: its accounting read idle before the
//! load and again once the load is over (no request in flight, a short settle wait, before the
//! cooldown's cache flush: SGLang's `/flush_cache` resets its KV allocator, which would give
//! leaked slots back), its log's memory checks, and how both change the run's outcome. The
//! judgement is [`crate::analysis::logical`]'s.

use std::time::{Duration, Instant};

use super::ScenarioError;
use crate::analysis::logical::{self, IdleAccounting};
use crate::error::Error;
use crate::fixture::ExitInfo;
use crate::report::{Report, RunOutcome};
use crate::tracker::idle::{self, IdleReading};

/// Longest wait after the last request for the accounting to return to idle: `/v1/loads` and
/// vLLM's gauges are fresh at idle.
pub(super) const SETTLE_WAIT: Duration = Duration::from_secs(3);
/// The same for SGLang's `/metrics` gauges, which hold the last logged batch's numbers until the
/// idle scheduler republishes them, 30 s after its last log line.
pub(super) const SGLANG_METRICS_SETTLE_WAIT: Duration = Duration::from_secs(35);
/// Time between readings of the settle wait.
const SETTLE_POLL: Duration = Duration::from_millis(250);

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))
}

/// The accounting before the load (the server idle, just started), with what `/v1/loads`
/// answered when the reading is not from there: `Err` says why there is none.
pub(super) async fn before(base_url: &str) -> Result<(IdleReading, Option<String>), String> {
    idle::probe(&client()?, base_url).await.map_err(|e| e.0)
}

/// The accounting once the load is over, judged against `before`: read until every quantity is
/// back at its idle value, at most [`SETTLE_WAIT`].
pub(super) async fn after(
    base_url: &str,
    before: &Result<(IdleReading, Option<String>), String>,
    requests: u64,
) -> IdleAccounting {
    let (before, fallback) = match before {
        Ok((b, fallback)) => (b, fallback),
        Err(why) => {
            return IdleAccounting::unavailable(format!(
                "not available: the server has no KV accounting to check ({why})"
            ));
        }
    };
    let client = match client() {
        Ok(c) => c,
        Err(why) => return IdleAccounting::unavailable(format!("not available: {why}")),
    };
    let wait = if before.source == "/metrics (sglang)" {
        SGLANG_METRICS_SETTLE_WAIT
    } else {
        SETTLE_WAIT
    };
    let t0 = Instant::now();
    let mut settle = Vec::new();
    let mut failed: Option<String>;
    loop {
        match idle::probe_again(&client, base_url, &before.source).await {
            Ok(r) => {
                failed = None;
                let done = logical::is_settled(before, &r);
                settle.push(r);
                if done {
                    break;
                }
            }
            // A busy or dying server: keep asking until the wait is over.
            Err(why) => failed = Some(why.0),
        }
        if t0.elapsed() + SETTLE_POLL > wait {
            break;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
    let mut a = logical::accounting(before, &settle, requests, t0.elapsed().as_millis() as u64);
    let notes: Vec<String> = [
        fallback
            .as_ref()
            .map(|why| format!("read from {} because {why}", before.source)),
        failed.map(|why| format!("a reading after the load failed: {why}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !notes.is_empty() {
        a.note = Some(notes.join("; "));
    }
    a
}

/// The run's outcome with the engine's own checks: a leak of the accounting or a memory check
/// in the log makes a pass or an undecided run a leak.
pub(super) fn apply(report: &mut Report) {
    if !matches!(report.outcome, RunOutcome::Pass | RunOutcome::Inconclusive) {
        return;
    }
    if logical::engine_findings(report.idle_accounting.as_ref(), report.log_watch.as_ref())
        .is_some()
    {
        report.outcome = RunOutcome::Leak;
    }
}

/// The error of a run whose server died: the engine's memory check when its log has one (the
/// check is what killed it, as SGLang's idle leak check does), else the bare exit.
pub(super) fn exited(
    report: &Report,
    status: ExitInfo,
    oom: Option<String>,
    during: Option<Box<Error>>,
) -> Error {
    match report
        .log_watch
        .as_ref()
        .and_then(|l| Some((l.first()?, l)))
    {
        Some((first, log)) => ScenarioError::EngineCheckFailed {
            finding: logical::log_reason(first, log.total_matches),
            status,
            during,
        }
        .into(),
        None => ScenarioError::ServerExited {
            status,
            oom,
            during,
        }
        .into(),
    }
}
