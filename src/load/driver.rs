//! The driver: sends the workload's requests on schedule and marks each on the tracker.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::images::ImageSet;
use super::{Api, DriverConfig, LoadError, Workload, build_request, schedule};
use crate::tracker::{MemoryTracker, Phase};

/// What happened to one request. Failures are data, not errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Index within its phase.
    pub index: u64,
    /// Warm-up or measured.
    pub phase: Phase,
    /// Start, in ms on the tracker's clock.
    pub start_ms: u64,
    /// Time to the full response, in ms.
    pub latency_ms: f64,
    /// HTTP status, when a response came.
    pub status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Images sent with it.
    pub images: u32,
}

impl RequestRecord {
    /// True for a 2xx response.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Counts and latencies over a run's requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSummary {
    /// Requests sent (warm-up included).
    pub sent: u64,
    /// 2xx responses.
    pub ok: u64,
    /// Everything else.
    pub failed: u64,
    /// `failed / sent`.
    pub error_rate: f64,
    /// Median latency of successful requests, ms.
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile latency of successful requests, ms.
    pub latency_p95_ms: Option<f64>,
    /// First failure seen.
    pub first_error: Option<String>,
}

/// Summarize request records.
pub fn summarize(records: &[RequestRecord]) -> RequestSummary {
    let sent = records.len() as u64;
    let ok = records.iter().filter(|r| r.ok()).count() as u64;
    let mut lat: Vec<f64> = records
        .iter()
        .filter(|r| r.ok())
        .map(|r| r.latency_ms)
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct =
        |p: f64| (!lat.is_empty()).then(|| lat[((lat.len() - 1) as f64 * p).round() as usize]);
    RequestSummary {
        sent,
        ok,
        failed: sent - ok,
        error_rate: if sent == 0 {
            0.0
        } else {
            (sent - ok) as f64 / sent as f64
        },
        latency_p50_ms: pct(0.5),
        latency_p95_ms: pct(0.95),
        first_error: records
            .iter()
            .filter(|r| !r.ok())
            .min_by_key(|r| r.start_ms)
            .map(describe_failure),
    }
}

fn describe_failure(r: &RequestRecord) -> String {
    match (&r.error, r.status) {
        (Some(e), _) => e.clone(),
        (None, Some(s)) => format!("HTTP {s}"),
        (None, None) => "no response".into(),
    }
}

/// The outcome of driving a workload: the records always, an error when the run is unusable.
#[derive(Debug)]
pub struct Driven {
    /// Every request sent, in start order.
    pub records: Vec<RequestRecord>,
    /// Why the run is unusable (too many failures, server gone).
    pub error: Option<LoadError>,
    /// Model name used for OpenAI requests.
    pub model: String,
}

/// Consecutive connection failures after which the server is taken for dead.
const GONE_AFTER: usize = 3;

/// Send `config.warmup_requests` warm-up then `config.num_requests` measured requests to
/// `base_url`, marking each completion on `tracker`.
pub async fn drive(
    base_url: &str,
    workload: &Workload,
    config: &DriverConfig,
    tracker: &MemoryTracker,
    images: Option<&ImageSet>,
) -> Driven {
    let client = match reqwest::Client::builder()
        .timeout(config.request_timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return Driven {
                records: Vec::new(),
                error: Some(LoadError::Client(e)),
                model: String::new(),
            };
        }
    };
    let model = match &config.model {
        Some(m) => m.clone(),
        None => discover_model(&client, base_url, config).await,
    };
    let mut records = Vec::new();
    for (phase, count) in [
        (Phase::Warmup, config.warmup_requests),
        (Phase::Measure, config.num_requests),
    ] {
        if count == 0 {
            continue;
        }
        let gone = run_phase(
            &client,
            base_url,
            workload,
            config,
            &model,
            tracker,
            images,
            phase,
            count,
            &mut records,
        )
        .await;
        if let Some(error) = gone {
            return Driven {
                records,
                error: Some(error),
                model,
            };
        }
    }
    let summary = summarize(&records);
    let error = (summary.error_rate > config.max_error_rate).then(|| LoadError::TooManyFailures {
        failed: summary.failed,
        total: summary.sent,
        rate: summary.error_rate * 100.0,
        limit: config.max_error_rate * 100.0,
        first_error: summary.first_error.unwrap_or_default(),
    });
    Driven {
        records,
        error,
        model,
    }
}

async fn discover_model(client: &reqwest::Client, base_url: &str, config: &DriverConfig) -> String {
    if config.api != Api::OpenAi {
        return "default".into();
    }
    let found = async {
        let mut req = client.get(format!("{base_url}/v1/models"));
        if let Some(key) = &config.api_key {
            req = req.bearer_auth(key.expose());
        }
        let v: serde_json::Value = req.send().await.ok()?.json().await.ok()?;
        v["data"][0]["id"].as_str().map(str::to_owned)
    };
    found.await.unwrap_or_else(|| "default".into())
}

#[expect(
    clippy::too_many_arguments,
    reason = "one private call site; a struct would only rename them"
)]
async fn run_phase(
    client: &reqwest::Client,
    base_url: &str,
    workload: &Workload,
    config: &DriverConfig,
    model: &str,
    tracker: &MemoryTracker,
    images: Option<&ImageSet>,
    phase: Phase,
    count: u64,
    records: &mut Vec<RequestRecord>,
) -> Option<LoadError> {
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let start = Instant::now();
    let mut tasks: JoinSet<RequestRecord> = JoinSet::new();
    let mut done: Vec<RequestRecord> = Vec::new();
    let mut consecutive_conn_errors = 0usize;
    let offset = if phase == Phase::Measure {
        config.warmup_requests
    } else {
        0
    };
    for (index, at) in schedule(count, config.interval).into_iter().enumerate() {
        let index = index as u64;
        tokio::select! {
            () = tokio::time::sleep_until((start + at).into()) => {}
            () = super::until_interrupted() => break,
        }
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = super::until_interrupted() => break,
        };
        // Reap what finished, to notice a dead server early.
        while let Some(Ok(r)) = tasks.try_join_next() {
            consecutive_conn_errors = track_conn_errors(consecutive_conn_errors, &r);
            done.push(r);
        }
        if consecutive_conn_errors >= GONE_AFTER || super::interrupted() {
            break;
        }
        // Once more requests failed than the guard allows for the whole run, the outcome is
        // known: stop instead of waiting out every timeout.
        let failed = records.iter().chain(&done).filter(|r| !r.ok()).count() as u64;
        let planned = config.warmup_requests + config.num_requests;
        if failed as f64 > config.max_error_rate * planned as f64 && failed >= 1 {
            let sent = (records.len() + done.len()) as u64;
            records.extend(std::mem::take(&mut done));
            tasks.abort_all();
            return Some(LoadError::TooManyFailures {
                failed,
                total: sent,
                rate: failed as f64 / planned as f64 * 100.0,
                limit: config.max_error_rate * 100.0,
                first_error: super::driver::summarize(records)
                    .first_error
                    .unwrap_or_default(),
            });
        }
        // Images use a global index so warm-up and measured requests never share an image.
        let imgs = match (workload, images) {
            (Workload::VlmImage(_), Some(set)) => match set.for_request(offset + index) {
                Ok(v) => v,
                Err(e) => return Some(LoadError::Images(e)),
            },
            _ => Vec::new(),
        };
        let (path, body) = build_request(config.api, config, model, offset + index, &imgs);
        let mut req = client.post(format!("{base_url}{path}")).json(&body);
        if let Some(key) = &config.api_key {
            req = req.bearer_auth(key.expose());
        }
        let start_ms = tracker.now_ms();
        let n_images = imgs.len() as u32;
        let marker = tracker.marker();
        tasks.spawn(async move {
            let t0 = Instant::now();
            let result = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // Read the whole body: the request is complete only when the answer is.
                    match resp.bytes().await {
                        Ok(_) if (200..300).contains(&status) => (Some(status), None),
                        Ok(body) => (
                            Some(status),
                            Some(format!("HTTP {status}: {}", snippet(&body))),
                        ),
                        Err(e) => (
                            Some(status),
                            Some(format!("reading the response failed: {e}")),
                        ),
                    }
                }
                Err(e) => (None, Some(describe_reqwest(&e))),
            };
            let latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
            marker.mark(index, phase);
            drop(permit);
            RequestRecord {
                index,
                phase,
                start_ms,
                latency_ms,
                status: result.0,
                error: result.1,
                images: n_images,
            }
        });
    }
    loop {
        let joined = tokio::select! {
            // Finished requests first: only those still in flight are abandoned.
            biased;
            j = tasks.join_next() => j,
            () = super::until_interrupted() => {
                // Requests still in flight are abandoned: the run ends as interrupted anyway.
                tasks.abort_all();
                None
            }
        };
        match joined {
            None => break,
            Some(Ok(r)) => {
                consecutive_conn_errors = track_conn_errors(consecutive_conn_errors, &r);
                done.push(r);
            }
            Some(Err(_)) => {}
        }
    }
    done.sort_by_key(|r| r.index);
    let gone = (consecutive_conn_errors >= GONE_AFTER).then(|| LoadError::ServerGone {
        completed: records.iter().chain(&done).filter(|r| r.ok()).count() as u64,
        last_error: done
            .iter()
            .rev()
            .find_map(|r| r.error.clone())
            .unwrap_or_default(),
    });
    records.extend(done);
    if gone.is_none() && super::interrupted() {
        return Some(LoadError::Interrupted {
            completed: records.iter().filter(|r| r.ok()).count() as u64,
        });
    }
    gone
}

/// Consecutive requests that got no answer at all (refused connections, time-outs).
fn track_conn_errors(count: usize, r: &RequestRecord) -> usize {
    if r.status.is_none()
        && r.error
            .as_deref()
            .is_some_and(|e| e.contains("connect") || e == "timed out")
    {
        count + 1
    } else {
        0
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("could not connect: {}", crate::util::error_chain(e))
    } else {
        crate::util::error_chain(e)
    }
}
