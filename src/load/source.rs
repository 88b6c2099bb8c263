//! Where requests come from: a [`RequestSource`] turns the index of a request into the
//! [`Request`] to send — route, body, the status to expect, and how to deliver it (read whole,
//! streamed, dropped mid-stream, aborted). The shipped scenarios' requests are one source among
//! others ([`Standard`]); a contributor's fourth scenario is a closure
//! ([`Workload::custom`](super::Workload::custom)).

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::images::{EncodedImage, ImageError, ImageSet};
use super::kind::{Mix, RequestKind};
use super::{Api, LoadError};
use crate::tracker::Phase;

/// What a [`RequestSource`] knows when it builds request `index`.
#[derive(Debug)]
pub struct RequestContext<'a> {
    /// The request's index over the whole run (warm-up included): never repeated, so a prompt
    /// or image derived from it is unique.
    pub index: u64,
    /// Warm-up or measured.
    pub phase: Phase,
    /// The request's index within its phase (measured requests count from 0).
    pub phase_index: u64,
    /// The API the scenario was configured with.
    pub api: Api,
    /// The model name to put in OpenAI requests (`/v1/models`' first, or the configured one).
    pub model: &'a str,
    /// Tokens to generate per request (the `max_new_tokens` knob).
    pub max_new_tokens: u32,
    /// The image placeholder of native `/generate` image prompts.
    pub image_token: &'a str,
    /// The model's context length in tokens, when the server said it or it was configured.
    pub context_length: Option<u64>,
    /// A request id unique to this request (`memtest-<run>-<index>`), for SGLang's `rid`.
    pub rid: String,
    pub(crate) images: Option<&'a ImageSet>,
}

impl RequestContext<'_> {
    /// The scenario's unique text prompt for this request.
    pub fn prompt(&self) -> String {
        super::prompt(self.index, false)
    }

    /// The scenario's images for this request (`images_per_request` of them).
    ///
    /// # Errors
    /// [`ImageError::NoImages`] when the workload has no images.
    pub fn scenario_images(&self) -> Result<Vec<EncodedImage>, ImageError> {
        self.images
            .ok_or(ImageError::NoImages)?
            .for_request(self.index)
    }

    /// `n` images for this request (unique per request and position unless the scenario
    /// repeats them).
    ///
    /// # Errors
    /// [`ImageError::NoImages`] when the workload was not given images
    /// ([`Workload::custom_with_images`](super::Workload::custom_with_images)).
    pub fn images(&self, n: u32) -> Result<Vec<EncodedImage>, ImageError> {
        self.images
            .ok_or(ImageError::NoImages)?
            .for_request_n(self.index, n)
    }
}

/// How the driver sends a request and reads its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Send, read the whole answer.
    Whole,
    /// Read a stream of server-sent events to its end.
    Stream,
    /// Read this many events of a stream, then drop the connection.
    Disconnect {
        /// Events read before the client goes away.
        after_events: u32,
    },
    /// End the request through `POST /abort_request` (SGLang's) while it runs.
    Abort {
        /// When the abort is sent.
        at: AbortAt,
        /// `{"abort_all": true}` instead of the request's `rid`.
        all: bool,
    },
}

/// When an abort is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortAt {
    /// Right after the request went out, before any answer (the request is queued or still
    /// being tokenized).
    Sent,
    /// After the first streamed event (the request is running).
    FirstEvent,
}

/// The answer a request must get to count as going to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Any 2xx.
    Success,
    /// Any 4xx: the server must refuse it. A 2xx or a 5xx is a failure.
    Rejected,
    /// Exactly this status.
    Status(u16),
    /// The request may be aborted or may have finished first: a 2xx (aborted or complete), or
    /// the 4xx/499 some servers answer an aborted request with.
    Aborted,
}

/// One request to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Its kind, for the per-kind counts and the attribution of growth (`plain`, `stream`, or a
    /// contributor's own label such as `embeddings`).
    pub kind: String,
    /// `POST` with [`body`](Self::body), or `GET` without.
    pub get: bool,
    /// Path on the server, e.g. `/v1/embeddings`.
    pub path: String,
    /// JSON body (POST).
    pub body: Value,
    /// The status that counts as going to plan.
    pub expect: Expect,
    /// How it is delivered.
    pub delivery: Delivery,
    /// The request id the server knows it by (SGLang's `rid`), needed to abort it.
    pub rid: Option<String>,
    /// Images it carries (counted in the report).
    pub images: u32,
}

impl Request {
    /// `POST path` with `body`, expecting a 2xx, read whole; kind `plain`.
    pub fn post(path: impl Into<String>, body: Value) -> Self {
        Self {
            kind: RequestKind::Plain.as_str().to_owned(),
            get: false,
            path: path.into(),
            body,
            expect: Expect::Success,
            delivery: Delivery::Whole,
            rid: None,
            images: 0,
        }
    }

    /// `GET path`, expecting a 2xx.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            get: true,
            ..Self::post(path, Value::Null)
        }
    }

    /// Labels the request (per-kind counts and attribution).
    #[must_use]
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = kind.into();
        self
    }

    /// The answer that counts as going to plan.
    #[must_use]
    pub fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    /// Read as a stream of server-sent events (the body should ask for one: `"stream": true`).
    #[must_use]
    pub fn streamed(mut self) -> Self {
        self.delivery = Delivery::Stream;
        self
    }

    /// Drop the connection after `events` streamed events.
    #[must_use]
    pub fn disconnect_after(mut self, events: u32) -> Self {
        self.delivery = Delivery::Disconnect {
            after_events: events,
        };
        self
    }

    /// Abort it through `/abort_request` at `at` (`all`: every request on the server), by the
    /// request id `rid`, which is also put in the body.
    #[must_use]
    pub fn aborted(mut self, at: AbortAt, all: bool, rid: impl Into<String>) -> Self {
        let rid = rid.into();
        if let Value::Object(map) = &mut self.body {
            map.insert("rid".into(), Value::String(rid.clone()));
        }
        self.rid = Some(rid);
        self.delivery = Delivery::Abort { at, all };
        self.expect = Expect::Aborted;
        self
    }

    /// Counts `n` images in the report.
    #[must_use]
    pub fn with_images(mut self, n: u32) -> Self {
        self.images = n;
        self
    }
}

/// Makes the request of each index. Implement it, or pass a closure to
/// [`Workload::custom`](super::Workload::custom).
pub trait RequestSource: Send + Sync {
    /// The request for `ctx.index`.
    ///
    /// # Errors
    /// A request that cannot be built ends the run as an error, with this message.
    fn request(&self, ctx: &RequestContext<'_>) -> Result<Request, LoadError>;
}

/// A closure as a [`RequestSource`].
pub(crate) struct FnSource<F>(pub(crate) F);

impl<F> RequestSource for FnSource<F>
where
    F: Fn(&RequestContext<'_>) -> Request + Send + Sync,
{
    fn request(&self, ctx: &RequestContext<'_>) -> Result<Request, LoadError> {
        Ok((self.0)(ctx))
    }
}

/// A shared source (cheap to clone).
#[derive(Clone)]
pub struct SharedSource(pub(crate) Arc<dyn RequestSource>);

impl fmt::Debug for SharedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RequestSource")
    }
}

/// The shipped scenarios' requests: text, text to a VLM, or images, in the kinds of a [`Mix`].
#[derive(Debug, Clone)]
pub struct Standard {
    /// Whether requests carry images (`vlm-image`).
    pub with_images: bool,
    /// Which kind each request is.
    pub mix: Mix,
}

impl RequestSource for Standard {
    fn request(&self, ctx: &RequestContext<'_>) -> Result<Request, LoadError> {
        super::request::build(self, ctx)
    }
}
