//! Server source: SGLang's own numbers (`/metrics`, `/get_server_info`) on the same timeline.
//!
//! They explain memory rather than measure it: a KV cache that fills (`server.token_usage`)
//! or requests that pile up (`server.num_queue_reqs`) look like growth in the GPU and host
//! series. Everything here is best effort: an endpoint that is not served is noted once and
//! retried rarely; errors are counted; the poller never panics.

pub mod idle;
mod parse;
#[cfg(test)]
mod samples;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::watch;

use super::timeline::SourceStatus;
use super::{Reading, Store};
use parse::{parse_metrics, parse_server_info};

/// Name of this source in the timeline.
const SOURCE: &str = "server";
/// Per-request limit: a stuck server must not stall the timeline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an endpoint that is not served is left alone.
const ABSENT_RETRY: Duration = Duration::from_secs(30);
/// `/get_server_info` reports static allocations: read it on the first tick and every Nth after.
const INFO_EVERY: u64 = 10;

const METRICS_ABSENT: &str = "/metrics not served (start SGLang with --enable-metrics to record token usage; vLLM serves it always)";
const INFO_ABSENT: &str = "/get_server_info and /server_info not served (no weight/KV cache sizes)";

/// Whether an endpoint is worth asking this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// Not asked yet.
    Untried,
    /// Answered at least once.
    Working,
    /// Not served (404 or unreachable before any success): ask again after the instant.
    Absent(Instant),
}

impl Endpoint {
    fn due(self, now: Instant) -> bool {
        !matches!(self, Endpoint::Absent(at) if now < at)
    }
}

/// Outcome of one GET.
enum Fetch {
    Ok(String),
    /// 404: the route does not exist in this build or configuration.
    NotServed,
    /// Any other failure: status, timeout, connection.
    Failed,
}

struct Poller {
    base: String,
    client: reqwest::Client,
    store: Store,
    metrics: Endpoint,
    info: Endpoint,
    /// `/get_server_info`, or `/server_info` once the first was not served.
    info_path: &'static str,
    /// Next tick at which the server info is due.
    info_next: u64,
    tick: u64,
    available: bool,
    errors: u64,
    notes: Vec<&'static str>,
}

impl Poller {
    async fn get(&self, path: &str) -> Fetch {
        let url = format!("{}{path}", self.base);
        let resp = match self.client.get(url).timeout(REQUEST_TIMEOUT).send().await {
            Ok(r) => r,
            Err(_) => return Fetch::Failed,
        };
        match resp.status() {
            StatusCode::NOT_FOUND => Fetch::NotServed,
            s if s.is_success() => match resp.text().await {
                Ok(t) => Fetch::Ok(t),
                Err(_) => Fetch::Failed,
            },
            _ => Fetch::Failed,
        }
    }

    /// Writes the status; `set_source` replaces the entry, so the error count travels with it.
    fn publish(&self) {
        let note = (!self.notes.is_empty()).then(|| self.notes.join("; "));
        self.store.set_source(SourceStatus {
            name: SOURCE.into(),
            available: self.available,
            note,
            errors: self.errors,
        });
    }

    fn note(&mut self, note: &'static str) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
            self.publish();
        }
    }

    fn unnote(&mut self, note: &'static str) {
        if self.notes.contains(&note) {
            self.notes.retain(|n| *n != note);
            self.publish();
        }
    }

    fn error(&mut self) {
        self.errors += 1;
        self.store.source_errors(SOURCE, 1);
    }

    fn push(&mut self, readings: Vec<Reading>) {
        if readings.is_empty() {
            return;
        }
        self.store.push(self.store.now_us(), readings);
        if !self.available {
            self.available = true;
            self.publish();
        }
    }

    async fn poll_metrics(&mut self) {
        if !self.metrics.due(Instant::now()) {
            return;
        }
        match self.get("/metrics").await {
            Fetch::Ok(text) => {
                self.metrics = Endpoint::Working;
                self.unnote(METRICS_ABSENT);
                self.push(parse_metrics(&text));
            }
            Fetch::Failed if self.metrics == Endpoint::Working => self.error(),
            // 404, or no answer before any success: not served here; note once, ask rarely.
            Fetch::NotServed | Fetch::Failed => {
                self.metrics = Endpoint::Absent(Instant::now() + ABSENT_RETRY);
                self.note(METRICS_ABSENT);
            }
        }
    }

    async fn poll_info(&mut self) {
        if self.tick < self.info_next || !self.info.due(Instant::now()) {
            return;
        }
        let mut fetched = self.get(self.info_path).await;
        if matches!(fetched, Fetch::NotServed) && self.info_path == "/get_server_info" {
            // Newer builds renamed it; remember the one that answers.
            self.info_path = "/server_info";
            fetched = self.get(self.info_path).await;
        }
        match fetched {
            Fetch::Ok(text) => {
                self.info = Endpoint::Working;
                self.info_next = self.tick + INFO_EVERY;
                self.unnote(INFO_ABSENT);
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(json) => self.push(parse_server_info(&json)),
                    Err(_) => self.error(),
                }
            }
            Fetch::Failed if self.info == Endpoint::Working => {
                self.info_next = self.tick + INFO_EVERY;
                self.error();
            }
            Fetch::NotServed | Fetch::Failed => {
                // Ask both names again on the next attempt.
                self.info_path = "/get_server_info";
                self.info = Endpoint::Absent(Instant::now() + ABSENT_RETRY);
                self.note(INFO_ABSENT);
            }
        }
    }
}

/// Polls the server every `interval` until `stop` turns true (or its sender is dropped); pushes
/// readings into `store`; records the source status ("server").
pub(crate) async fn poll(
    base_url: String,
    client: reqwest::Client,
    store: Store,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut p = Poller {
        base: base_url.trim_end_matches('/').to_string(),
        client,
        store,
        metrics: Endpoint::Untried,
        info: Endpoint::Untried,
        info_path: "/get_server_info",
        info_next: 0,
        tick: 0,
        available: false,
        errors: 0,
        notes: Vec::new(),
    };
    p.publish();
    // A zero interval would spin.
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let work = async {
            ticker.tick().await;
            p.poll_metrics().await;
            p.poll_info().await;
            p.tick += 1;
        };
        tokio::select! {
            // Stop wins even in the middle of a request.
            biased;
            _ = stop.wait_for(|s| *s) => break,
            () = work => {}
        }
    }
}
