//! The driver: sends the workload's requests on schedule and marks each on the tracker. Memory
//! does not grow with the run: finished requests go to the [`RequestLog`] (counters, a latency
//! histogram, the records file) as they finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::images::ImageSet;
use super::log::RequestLog;
use super::schedule::Schedule;
use super::send::{RequestOutcome, deliver};
use super::source::{RequestContext, SharedSource};
use super::{Api, DriverConfig, LoadError, Workload};
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
    /// Images sent with it.
    pub images: u32,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Its kind (`plain`, `stream`, `abort`, … or a custom workload's label).
    #[serde(default = "plain")]
    pub kind: String,
    /// How it ended.
    #[serde(default)]
    pub outcome: RequestOutcome,
}

fn plain() -> String {
    "plain".into()
}

impl RequestRecord {
    /// Went to plan: answered, or refused, aborted or dropped as its kind meant it to be.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.outcome.as_planned()
    }

    /// No answer at all: refused, unreachable or timed out (the server may be gone).
    pub fn no_answer(&self) -> bool {
        self.status.is_none()
            && self
                .error
                .as_deref()
                .is_some_and(|e| e.contains("connect") || e == "timed out")
    }

    /// The failure in a phrase.
    pub fn describe_failure(&self) -> String {
        match (&self.error, self.status) {
            (Some(e), _) => e.clone(),
            (None, Some(s)) => format!("HTTP {s}"),
            (None, None) => "no response".into(),
        }
    }
}

/// How many requests a phase sends, or for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// This many requests.
    Count(u64),
    /// Requests on schedule until this much time has passed.
    For(Duration),
}

/// Consecutive requests without an answer after which the server is taken for dead.
const GONE_AFTER: usize = 3;
/// With a time-bounded plan, the error guard waits for this many requests before it judges.
const GUARD_MIN_SENT: u64 = 100;

/// Sends a workload's requests to one server, phase after phase (a phase may be driven again:
/// its request indices continue).
#[derive(Debug)]
pub struct Driver<'a> {
    client: reqwest::Client,
    base_url: &'a str,
    source: SharedSource,
    config: &'a DriverConfig,
    images: Option<&'a ImageSet>,
    model: String,
    context_length: Option<u64>,
    /// Tells this run's request ids apart from another run's on the same server.
    tag: String,
    /// Requests sent so far, every phase: the index of prompts and images (never repeated).
    global: u64,
    /// Requests sent so far per phase: the next index within the phase.
    sent_in: std::collections::HashMap<Phase, u64>,
    /// Seeds the arrival schedule of each phase run.
    runs: u64,
    /// Requests the run is planned to send in all (see [`expect_total`](Self::expect_total)).
    expected: u64,
    /// Stops sending and waiting when cancelled (see [`with_cancel`](Self::with_cancel)).
    cancel: CancellationToken,
}

impl<'a> Driver<'a> {
    /// A driver for `base_url`: builds the HTTP client and, for the OpenAI API, asks the server
    /// which model it serves.
    ///
    /// # Errors
    /// [`LoadError::Client`] when the HTTP client cannot be built.
    pub async fn connect(
        base_url: &'a str,
        workload: &'a Workload,
        config: &'a DriverConfig,
        images: Option<&'a ImageSet>,
    ) -> Result<Self, LoadError> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(LoadError::Client)?;
        let model = match &config.model {
            Some(m) => m.clone(),
            None => discover_model(&client, base_url, config).await,
        };
        let context_length = match config.context_length {
            Some(n) => Some(n),
            None => discover_context_length(&client, base_url, config).await,
        };
        let source = workload.source(&config.mix);
        let tag = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
                ^ u128::from(std::process::id())
        );
        Ok(Self {
            client,
            base_url,
            source,
            config,
            images,
            model,
            context_length,
            tag,
            global: 0,
            sent_in: std::collections::HashMap::new(),
            runs: 0,
            expected: 0,
            cancel: CancellationToken::new(),
        })
    }

    /// Stop when `cancel` is cancelled (Ctrl-C, SIGTERM, the server died): no new request is
    /// sent, waits for the next send time, a free slot or answers in flight end at once, and
    /// [`run`](Self::run) returns [`LoadError::Interrupted`].
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Requests the whole run is planned to send, when it sends them in several [`run`](Self::run)s
    /// (the looks of an adaptive run): the failure guard allows `max_error_rate` of this many,
    /// not of the first batch alone.
    pub fn expect_total(&mut self, n: u64) {
        self.expected = n;
    }

    /// The model name OpenAI requests carry.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The model's context length, as configured or as the server said it.
    pub fn context_length(&self) -> Option<u64> {
        self.context_length
    }

    /// Send `plan`'s requests of `phase`, marking each completion on `tracker` and recording it
    /// in `log`. Stops early, with the error, when the server is gone, when more requests failed
    /// than the guard allows for the whole run, or when cancelled.
    ///
    /// # Errors
    /// [`LoadError::ServerGone`], [`LoadError::TooManyFailures`], [`LoadError::Interrupted`],
    /// [`LoadError::Images`].
    pub async fn run(
        &mut self,
        phase: Phase,
        plan: Plan,
        tracker: &MemoryTracker,
        log: &mut RequestLog,
    ) -> Result<(), LoadError> {
        let config = self.config;
        let cancel = self.cancel.clone();
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let start = Instant::now();
        let seed = config.seed ^ self.runs.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.runs += 1;
        let schedule = Schedule::new(config.interval, config.arrival, seed);
        let mut tasks: JoinSet<RequestRecord> = JoinSet::new();
        let first_index = self.sent_in.get(&phase).copied().unwrap_or(0);
        let expected = self.expected;
        let planned_total = |log: &RequestLog, sent_here: u64| match plan {
            Plan::Count(n) => {
                (log.summary().sent.max(1) + n.saturating_sub(sent_here)).max(expected)
            }
            Plan::For(_) => log.summary().sent,
        };
        let mut sent_here = 0u64;
        let mut outcome = Ok(());
        for at in schedule {
            match plan {
                Plan::Count(n) if sent_here >= n => break,
                Plan::For(d) if at >= d => break,
                _ => {}
            }
            tokio::select! {
                () = tokio::time::sleep_until((start + at).into()) => {}
                () = cancel.cancelled() => break,
            }
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                () = cancel.cancelled() => break,
            };
            // Reap what finished, to notice a dead server early.
            while let Some(Ok(r)) = tasks.try_join_next() {
                log.record(&r);
            }
            if log.consecutive_no_answer() >= GONE_AFTER || cancel.is_cancelled() {
                break;
            }
            // Once more requests failed than the guard allows for the whole run, the outcome
            // is known: stop instead of waiting out every timeout.
            let summary = log.summary();
            let planned = planned_total(log, sent_here);
            let judged = matches!(plan, Plan::Count(_)) || summary.sent >= GUARD_MIN_SENT;
            if judged
                && summary.failed >= 1
                && summary.failed as f64 > config.max_error_rate * planned as f64
            {
                tasks.abort_all();
                outcome = Err(LoadError::TooManyFailures {
                    failed: summary.failed,
                    total: summary.sent,
                    rate: summary.failed as f64 / planned.max(1) as f64 * 100.0,
                    limit: config.max_error_rate * 100.0,
                    first_error: summary.first_error.unwrap_or_default(),
                });
                break;
            }
            let index = first_index + sent_here;
            let global = self.global;
            // Prompts, images and kinds use a global index: no two requests of the run share
            // an image, and warm-up requests go through every kind too.
            let ctx = RequestContext {
                index: global,
                phase,
                phase_index: index,
                api: config.api,
                model: &self.model,
                max_new_tokens: config.max_new_tokens,
                image_token: &config.image_token,
                context_length: self.context_length,
                rid: format!("memtest-{}-{global}", self.tag),
                images: self.images,
            };
            let request = match self.source.0.request(&ctx) {
                Ok(r) => r,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            let client = self.client.clone();
            let base_url = self.base_url.to_owned();
            let api_key = config.api_key.as_ref().map(|k| k.expose().to_owned());
            let start_ms = tracker.now_ms();
            let marker = tracker.marker();
            self.global += 1;
            sent_here += 1;
            tasks.spawn(async move {
                let t0 = Instant::now();
                let done = deliver(&client, &base_url, api_key.as_deref(), &request).await;
                let latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
                marker.mark(index, phase);
                drop(permit);
                RequestRecord {
                    index,
                    phase,
                    start_ms,
                    latency_ms,
                    status: done.status,
                    images: request.images,
                    error: done.error,
                    kind: request.kind,
                    outcome: done.outcome,
                }
            });
        }
        self.sent_in.insert(phase, first_index + sent_here);
        loop {
            let joined = tokio::select! {
                // Finished requests first: only those still in flight are abandoned.
                biased;
                j = tasks.join_next() => j,
                () = cancel.cancelled() => {
                    tasks.abort_all();
                    None
                }
            };
            match joined {
                None => break,
                Some(Ok(r)) => log.record(&r),
                Some(Err(_)) => {}
            }
        }
        outcome?;
        let summary = log.summary();
        if log.consecutive_no_answer() >= GONE_AFTER {
            return Err(LoadError::ServerGone {
                completed: summary.ok,
                last_error: summary.first_error.unwrap_or_default(),
            });
        }
        if cancel.is_cancelled() {
            return Err(LoadError::Interrupted {
                completed: summary.ok,
            });
        }
        Ok(())
    }
}

/// The error the whole run's failures amount to, if they pass the guard.
pub fn error_guard(log: &RequestLog, config: &DriverConfig) -> Option<LoadError> {
    let s = log.summary();
    (s.error_rate > config.max_error_rate).then(|| LoadError::TooManyFailures {
        failed: s.failed,
        total: s.sent,
        rate: s.error_rate * 100.0,
        limit: config.max_error_rate * 100.0,
        first_error: s.first_error.unwrap_or_default(),
    })
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

/// The model's context length in tokens: `/v1/models`' `max_model_len` (vLLM), else
/// `/get_server_info`'s `context_length` or `max_req_input_len` (SGLang), else
/// `/get_model_info`'s `context_length`.
async fn discover_context_length(
    client: &reqwest::Client,
    base_url: &str,
    config: &DriverConfig,
) -> Option<u64> {
    let get = |path: &'static str| {
        let mut req = client
            .get(format!("{base_url}{path}"))
            .timeout(std::time::Duration::from_secs(10));
        if let Some(key) = &config.api_key {
            req = req.bearer_auth(key.expose());
        }
        async move {
            let v: serde_json::Value = req.send().await.ok()?.json().await.ok()?;
            Some(v)
        }
    };
    if let Some(v) = get("/v1/models").await
        && let Some(n) = v["data"][0]["max_model_len"].as_u64()
    {
        return Some(n);
    }
    // SGLang 0.5: `context_length` is the launch argument (null unless given); the prompt
    // limit it enforces is `max_req_input_len` (the context less a few tokens).
    if let Some(v) = get("/get_server_info").await
        && let Some(n) = v["context_length"]
            .as_u64()
            .or_else(|| v["max_req_input_len"].as_u64())
    {
        return Some(n);
    }
    get("/get_model_info").await?["context_length"].as_u64()
}

pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("could not connect: {}", crate::util::error_chain(e))
    } else {
        crate::util::error_chain(e)
    }
}
