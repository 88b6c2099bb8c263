//! Load generation: what each request carries ([`Workload`], its kinds in a [`Mix`], or a
//! contributor's own [`RequestSource`]), how requests are paced ([`DriverConfig`]), and a
//! plain record per request ([`RequestRecord`]).
//!
//! Failures are recorded, not thrown; the run as a whole becomes an error only when the share
//! of failed requests passes [`DriverConfig::max_error_rate`]. A request that is refused,
//! aborted or dropped because its kind means it to be is not a failure: its status is checked
//! ([`Expect`]) and counted on its own.

mod driver;
pub mod images;
mod kind;
mod log;
mod request;
mod schedule;
mod send;
mod source;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use driver::describe_reqwest;
pub use driver::{Driver, Plan, RequestRecord, error_guard};
pub use images::{ImageConfig, ImageFormat, ImageMode, ImageSource};
pub use kind::{DEFAULT_BLOCK, Mix, RequestKind};
pub use log::{KindCounts, KindSequence, RequestLog, RequestSummary, read_records};
pub use request::prompt;
pub use schedule::{Arrival, Schedule, schedule};
pub use send::RequestOutcome;
pub use source::{
    AbortAt, Delivery, Expect, Request, RequestContext, RequestSource, SharedSource, Standard,
};

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
    /// The run was cancelled ([`Driver::with_cancel`]: Ctrl-C, SIGTERM, or the server died).
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
    /// A request kind needs the model's context length and neither the server nor the
    /// configuration gave it.
    #[error(
        "the {kind} requests need the model's context length, which the server did not say (no max_model_len in /v1/models, no context_length in /get_server_info): set --context-length / MEMTEST_CONTEXT_LENGTH"
    )]
    ContextLengthUnknown {
        /// The kind that needs it.
        kind: &'static str,
    },
    /// A custom workload could not build a request.
    #[error("the workload could not build request {index}: {message}")]
    Build {
        /// The request's index.
        index: u64,
        /// What went wrong.
        message: String,
    },
    /// A workload read back from a report: its requests cannot be made again.
    #[error(
        "the custom workload {0:?} was read back from a report: it has no request source to run"
    )]
    Recorded(String),
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

/// What each request carries: one of the shipped scenarios' (whose kinds the
/// [`DriverConfig::mix`] chooses), or a contributor's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Workload {
    /// Text prompts, unique per request.
    Text,
    /// Text prompts sent to a VLM (no image processing).
    VlmText,
    /// Prompts with images.
    VlmImage(ImageConfig),
    /// Requests a [`RequestSource`] makes (the mix does not apply).
    Custom(CustomWorkload),
}

impl Workload {
    /// The `--test-type` name: `text`, `vlm-text`, `vlm-image`, or `custom`.
    pub fn test_type(&self) -> &'static str {
        match self {
            Workload::Text => "text",
            Workload::VlmText => "vlm-text",
            Workload::VlmImage(_) => "vlm-image",
            Workload::Custom(_) => "custom",
        }
    }

    /// Whether the requests need a VLM: text sent to one, or images (a `vlm-image` workload's
    /// or a custom workload's).
    pub fn needs_vlm(&self) -> bool {
        matches!(self, Workload::VlmText) || self.images().is_some()
    }

    /// A contributor's workload: `make` builds the request for each index.
    ///
    /// ```
    /// use serde_json::json;
    /// use sglang_memtest::load::{Request, RequestContext, Workload};
    ///
    /// let embeddings = Workload::custom("embeddings", |ctx: &RequestContext<'_>| {
    ///     Request::post("/v1/embeddings", json!({"model": ctx.model, "input": ctx.prompt()}))
    ///         .kind("embeddings")
    /// });
    /// assert_eq!(embeddings.test_type(), "custom");
    /// ```
    pub fn custom<F>(name: impl Into<String>, make: F) -> Self
    where
        F: Fn(&RequestContext<'_>) -> Request + Send + Sync + 'static,
    {
        Self::from_source(name, source::FnSource(make))
    }

    /// [`custom`](Self::custom) whose requests may carry images
    /// ([`RequestContext::images`]).
    pub fn custom_with_images<F>(name: impl Into<String>, images: ImageConfig, make: F) -> Self
    where
        F: Fn(&RequestContext<'_>) -> Request + Send + Sync + 'static,
    {
        let mut w = Self::custom(name, make);
        if let Workload::Custom(c) = &mut w {
            c.images = Some(images);
        }
        w
    }

    /// A workload of any [`RequestSource`].
    pub fn from_source(name: impl Into<String>, source: impl RequestSource + 'static) -> Self {
        Workload::Custom(CustomWorkload {
            name: name.into(),
            images: None,
            source: Some(SharedSource(std::sync::Arc::new(source))),
        })
    }

    /// The images the requests carry, if any.
    pub fn images(&self) -> Option<&ImageConfig> {
        match self {
            Workload::VlmImage(c) => Some(c),
            Workload::Custom(c) => c.images.as_ref(),
            _ => None,
        }
    }

    /// The source of the requests: the shipped kinds of `mix`, or the custom source.
    pub fn source(&self, mix: &Mix) -> SharedSource {
        match self {
            Workload::Custom(c) => c
                .source
                .clone()
                .unwrap_or_else(|| SharedSource(std::sync::Arc::new(Recorded(c.name.clone())))),
            other => SharedSource(std::sync::Arc::new(Standard {
                with_images: matches!(other, Workload::VlmImage(_)),
                mix: mix.clone(),
            })),
        }
    }
}

/// A shipped workload by its `--test-type` name (`text`, `vlm-text`, `vlm-image`: the default
/// [`ImageConfig`]); a custom workload has no name to parse.
impl std::str::FromStr for Workload {
    type Err = crate::util::Invalid;

    fn from_str(s: &str) -> Result<Self, crate::util::Invalid> {
        match s {
            "text" => Ok(Workload::Text),
            "vlm-text" => Ok(Workload::VlmText),
            "vlm-image" => Ok(Workload::VlmImage(ImageConfig::default())),
            _ => Err(crate::util::Invalid(format!(
                "unknown test type {s:?}: use one of text, vlm-text, vlm-image"
            ))),
        }
    }
}

/// A contributor's workload: a name, its images, and the [`RequestSource`] (absent when read
/// back from a report).
#[derive(Clone, Serialize, Deserialize)]
pub struct CustomWorkload {
    /// Its name (`embeddings`, `json-outputs`).
    pub name: String,
    /// Images its requests may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageConfig>,
    #[serde(skip)]
    source: Option<SharedSource>,
}

impl std::fmt::Debug for CustomWorkload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomWorkload")
            .field("name", &self.name)
            .field("images", &self.images)
            .field("runnable", &self.source.is_some())
            .finish()
    }
}

impl PartialEq for CustomWorkload {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.images == other.images
    }
}

/// The source of a custom workload read back from a report: it cannot make requests.
struct Recorded(String);

impl RequestSource for Recorded {
    fn request(&self, _: &RequestContext<'_>) -> Result<Request, LoadError> {
        Err(LoadError::Recorded(self.0.clone()))
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
    /// Which kinds of request the shipped workloads send (all `plain` by default).
    #[serde(default, skip_serializing_if = "is_plain")]
    pub mix: Mix,
    /// The model's context length in tokens (`None`: asked of the server), for the kinds that
    /// fill or overflow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
}

fn is_plain(mix: &Mix) -> bool {
    *mix == Mix::plain()
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
            mix: Mix::plain(),
            context_length: None,
        }
    }
}
