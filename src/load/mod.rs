//! Load generation: what each request carries ([`Workload`]), how requests are paced
//! ([`DriverConfig`]), and a plain record per request ([`RequestRecord`]).
//!
//! Failures are recorded, not thrown; the run as a whole becomes an error only when the share
//! of failed requests passes [`DriverConfig::max_error_rate`].

mod driver;
pub mod images;
mod log;
mod request;
mod schedule;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use driver::{Driver, Plan, RequestRecord, error_guard};
pub use images::{ImageConfig, ImageFormat, ImageMode, ImageSource};
pub use log::{RequestLog, RequestSummary, read_records};
pub use request::{build_request, prompt};
pub use schedule::{Arrival, Schedule, schedule};

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

static INTERRUPT_NOTIFY: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Ask every running driver to stop sending requests (e.g. on Ctrl-C); the run then ends as an
/// error and its report is still written. Drivers waiting (for the next send time, a free slot,
/// or answers still in flight) stop waiting at once.
pub fn interrupt() {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
    INTERRUPT_NOTIFY.notify_waiters();
}

/// Completes once [`interrupt`] has been called (at once if it already was).
pub async fn until_interrupted() {
    loop {
        let notified = INTERRUPT_NOTIFY.notified();
        tokio::pin!(notified);
        // Registered before the flag is checked, so a concurrent interrupt is never missed.
        notified.as_mut().enable();
        if interrupted() {
            return;
        }
        notified.await;
    }
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Errors driving requests.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// More requests failed than the guard allows: a run like this is never a pass.
    #[error(
        "{failed} of {total} requests failed ({rate:.1} %, above the {limit:.1} % allowed); first error: {first_error}"
    )]
    TooManyFailures {
        /// Failed requests.
        failed: u64,
        /// Requests sent.
        total: u64,
        /// Failure rate in percent.
        rate: f64,
        /// The allowed rate in percent.
        limit: f64,
        /// The first failure seen.
        first_error: String,
    },
    /// The server stopped answering altogether (it probably died).
    #[error("the server stopped answering after {completed} requests: {last_error}")]
    ServerGone {
        /// Requests that completed before.
        completed: u64,
        /// The last failure seen.
        last_error: String,
    },
    /// The run was interrupted (Ctrl-C or SIGTERM).
    #[error("interrupted after {completed} requests")]
    Interrupted {
        /// Requests that completed before.
        completed: u64,
    },
    /// The image workload could not be prepared.
    #[error("failed to prepare the images: {0}")]
    Images(#[from] images::ImageError),
    /// The HTTP client could not be built.
    #[error("failed to build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Which HTTP API the requests use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// SGLang's native `/generate`. Image requests need the model's image placeholder in the
    /// text (see [`DriverConfig::image_token`]).
    Native,
    /// OpenAI `/v1/chat/completions`: the server applies the chat template.
    #[value(name = "openai")]
    OpenAi,
}

/// What each request carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Workload {
    /// Text prompts, unique per request.
    Text,
    /// Text prompts sent to a VLM (no image processing).
    VlmText,
    /// Prompts with images.
    VlmImage(ImageConfig),
}

impl Workload {
    /// The `--test-type` name: `text`, `vlm-text` or `vlm-image`.
    pub fn test_type(&self) -> &'static str {
        match self {
            Workload::Text => "text",
            Workload::VlmText => "vlm-text",
            Workload::VlmImage(_) => "vlm-image",
        }
    }
}

/// How requests are paced and judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverConfig {
    /// Measured requests (default 100).
    pub num_requests: u64,
    /// Budget of measured requests when a metric is undecided at `num_requests` (`None`: 4 ×
    /// `num_requests`; equal to it: a fixed length). See [`adaptive`](crate::analysis::adaptive).
    #[serde(default)]
    pub max_requests: Option<u64>,
    /// Requests sent first and not measured (default 5).
    pub warmup_requests: u64,
    /// Time between request starts (default 100 ms, as the seed tool).
    #[serde(with = "crate::util::serde_ms")]
    pub interval: Duration,
    /// Requests in flight at most (default 1).
    pub concurrency: usize,
    /// Tokens generated per request (default 32).
    pub max_new_tokens: u32,
    /// Per-request timeout (default 120 s).
    #[serde(with = "crate::util::serde_ms")]
    pub request_timeout: Duration,
    /// Share of failed requests above which the run is an error (default 0.01).
    pub max_error_rate: f64,
    /// API used by the requests.
    pub api: Api,
    /// Model name sent in OpenAI requests (`None`: the first of `/v1/models`, else `default`).
    pub model: Option<String>,
    /// The image placeholder put in native `/generate` image prompts (Qwen2-VL's by default).
    pub image_token: String,
    /// Optional API key, sent as a bearer token; never serialized into a report.
    #[serde(skip)]
    pub api_key: Option<crate::util::Secret>,
    /// How request starts are spaced (`interval` apart, or a Poisson process with that mean).
    #[serde(default)]
    pub arrival: Arrival,
    /// Measure for this long instead of `num_requests` requests (a soak).
    #[serde(default, with = "crate::util::serde_opt_ms")]
    pub duration: Option<Duration>,
    /// After the measured requests, this long with no request at all (judged on its own).
    #[serde(default, with = "crate::util::serde_opt_ms")]
    pub idle: Option<Duration>,
    /// Seed of the arrival schedule.
    #[serde(default)]
    pub seed: u64,
}

/// The default budget of an adaptive run, in planned counts.
pub const DEFAULT_BUDGET_FACTOR: u64 = 4;

impl DriverConfig {
    /// Measured requests an adaptive run may send at most: `max_requests`, else
    /// [`DEFAULT_BUDGET_FACTOR`] × `num_requests` (never below `num_requests`).
    pub fn budget(&self) -> u64 {
        self.max_requests
            .unwrap_or(DEFAULT_BUDGET_FACTOR.saturating_mul(self.num_requests))
            .max(self.num_requests)
    }
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            num_requests: 100,
            max_requests: None,
            warmup_requests: 5,
            interval: Duration::from_millis(100),
            concurrency: 1,
            max_new_tokens: 32,
            request_timeout: Duration::from_secs(120),
            max_error_rate: 0.01,
            api: Api::OpenAi,
            model: None,
            image_token: "<|vision_start|><|image_pad|><|vision_end|>".into(),
            api_key: None,
            arrival: Arrival::Constant,
            duration: None,
            idle: None,
            seed: 0,
        }
    }
}
