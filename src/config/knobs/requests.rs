//! The knobs of what is sent: the requests, and the images of `vlm-image`.

use std::path::PathBuf;

use super::parse::{SECS_DAY, fraction, image_size, nonempty, seconds, whole};
use super::{Group, Knob, KnobKind, set_generated};
use crate::load::{Api, Arrival, ImageFormat, ImageMode, ImageSource};
use crate::util::Secret;

pub(super) static REQUESTS: &[Knob] = &[
    Knob {
        name: "num_requests",
        env: "MEMTEST_NUM_REQUESTS",
        flag: Some("num-requests"),
        value_name: "N",
        default: "100 (50 for vlm_image)",
        help: "Measured requests.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.num_requests = whole(
                v,
                3,
                100_000_000,
                "a request count (3 at least for a trend; 100 is usual)",
            )?;
            Ok(())
        },
    },
    Knob {
        name: "max_requests",
        env: "MEMTEST_MAX_REQUESTS",
        flag: Some("max-requests"),
        value_name: "N",
        default: "4 × num_requests",
        help: "Budget of measured requests: when a metric is still undecided at num_requests, more are sent in batches of num_requests/2 until every judged metric is decided (a certain leak stops the run before num_requests). Equal to num_requests: a fixed length.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.max_requests = Some(whole(v, 3, 400_000_000, "a request count")?);
            c.max_requests_set = c.applying.clone();
            Ok(())
        },
    },
    Knob {
        name: "warmup_requests",
        env: "MEMTEST_WARMUP_REQUESTS",
        flag: Some("warmup-requests"),
        value_name: "N",
        default: "5",
        help: "Requests sent first and not measured (with a --mix: at least one of each kind, in turn).",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.warmup_requests = whole(v, 0, 1_000_000, "a request count")?;
            Ok(())
        },
    },
    Knob {
        name: "request_interval",
        env: "MEMTEST_REQUEST_INTERVAL",
        flag: Some("request-interval"),
        value_name: "SECONDS",
        default: "0.1 (0.2 for vlm_image)",
        help: "Time between request starts.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.interval = seconds(v, 0.0, 3600.0)?;
            Ok(())
        },
    },
    Knob {
        name: "request_rate",
        env: "MEMTEST_REQUEST_RATE",
        flag: Some("request-rate"),
        value_name: "PER_SECOND",
        default: "none: request_interval",
        help: "Requests started per second (sets the interval to 1/RATE; the mean gap with --arrival poisson).",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            let rate = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && (0.001..=100_000.0).contains(r))
                .ok_or_else(|| "requests per second, from 0.001 to 100000".to_owned())?;
            c.driver.interval = std::time::Duration::from_secs_f64(1.0 / rate);
            Ok(())
        },
    },
    Knob {
        name: "arrival",
        env: "MEMTEST_ARRIVAL",
        flag: Some("arrival"),
        value_name: "constant|poisson",
        default: "constant",
        help: "How request starts are spaced: evenly, or a seeded Poisson process (as SGLang's bench_serving).",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.arrival = match v.trim() {
                "constant" => Arrival::Constant,
                "poisson" => Arrival::Poisson,
                _ => return Err("constant or poisson".into()),
            };
            Ok(())
        },
    },
    Knob {
        name: "duration",
        env: "MEMTEST_DURATION",
        flag: Some("duration"),
        value_name: "DURATION",
        default: "none: num_requests",
        help: "Measure for this long instead of a request count (a soak), e.g. 2h or 90m; judged per request and per hour.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.duration = Some(seconds(v, 1.0, 30.0 * SECS_DAY)?);
            Ok(())
        },
    },
    Knob {
        name: "idle",
        env: "MEMTEST_IDLE",
        flag: Some("idle"),
        value_name: "DURATION",
        default: "none",
        help: "After the measured requests, this long with no request at all; memory that grows then grows with time (timers, collectors), judged per hour.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.idle = Some(seconds(v, 1.0, 30.0 * SECS_DAY)?);
            Ok(())
        },
    },
    Knob {
        name: "concurrency",
        env: "MEMTEST_CONCURRENCY",
        flag: Some("concurrency"),
        value_name: "N",
        default: "1",
        help: "Requests in flight at most.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.concurrency = whole(v, 1, 4096, "a number of requests in flight")? as usize;
            Ok(())
        },
    },
    Knob {
        name: "max_new_tokens",
        env: "MEMTEST_MAX_NEW_TOKENS",
        flag: Some("max-new-tokens"),
        value_name: "N",
        default: "32",
        help: "Tokens generated per request.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.max_new_tokens = whole(v, 1, 1_000_000, "a token count")? as u32;
            Ok(())
        },
    },
    Knob {
        name: "api",
        env: "MEMTEST_API",
        flag: Some("api"),
        value_name: "openai|native",
        default: "openai",
        help: "openai (/v1/chat/completions) or native (SGLang's /generate).",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.api = match v.trim() {
                "openai" => Api::OpenAi,
                "native" => Api::Native,
                _ => return Err("openai or native".into()),
            };
            c.api_setting = c.applying.clone();
            Ok(())
        },
    },
    Knob {
        name: "mix",
        env: "MEMTEST_MIX",
        flag: Some("mix"),
        value_name: "KIND=W,...",
        default: "plain",
        help: "Request kinds by weight, plain taking the rest: stream, disconnect, abort, abort-queued, abort-all, reject-long-prompt, reject-max-tokens, reject-bad-image, reject-unknown-param, long-prompt, n, logprobs, multi-turn, multi-image, mixed-sizes; or error-paths. E.g. stream=0.3,abort=0.1. Rejections are expected (their 4xx checked), not failures; the report gives the growth per kind.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.mix = v.parse().map_err(|e: crate::util::Invalid| e.0)?;
            c.mix_set = c.applying.clone();
            Ok(())
        },
    },
    Knob {
        name: "context_length",
        env: "MEMTEST_CONTEXT_LENGTH",
        flag: Some("context-length"),
        value_name: "TOKENS",
        default: "asked of the server",
        help: "The model's context length, for the kinds that fill or overflow it (long-prompt, reject-long-prompt, reject-max-tokens).",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.context_length = Some(whole(v, 16, 100_000_000, "a token count")?);
            Ok(())
        },
    },
    Knob {
        name: "api_key",
        env: "MEMTEST_API_KEY",
        flag: Some("api-key"),
        value_name: "KEY",
        default: "none",
        help: "Sent as a bearer token; never logged or written into a report.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.api_key = Some(Secret::new(nonempty(v, "a key")?));
            Ok(())
        },
    },
    Knob {
        name: "max_error_rate",
        env: "MEMTEST_MAX_ERROR_RATE",
        flag: Some("max-error-rate"),
        value_name: "F",
        default: "0.01",
        help: "Share of failed requests above which the run is an error, never a pass.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.max_error_rate = fraction(v, 0.0, 1.0)?;
            Ok(())
        },
    },
    Knob {
        name: "request_timeout",
        env: "MEMTEST_REQUEST_TIMEOUT",
        flag: Some("request-timeout"),
        value_name: "SECONDS",
        default: "120",
        help: "Per-request timeout; a request that times out counts as failed.",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.request_timeout = seconds(v, 0.1, SECS_DAY)?;
            Ok(())
        },
    },
    Knob {
        name: "image_token",
        env: "MEMTEST_IMAGE_TOKEN",
        flag: Some("image-token"),
        value_name: "TEXT",
        default: "<|vision_start|><|image_pad|><|vision_end|>",
        help: "Image placeholder for --api native image requests (the native route does not apply the chat template).",
        kind: KnobKind::Value,
        group: Group::Requests,
        apply: |c, v| {
            c.driver.image_token = nonempty(v, "the model's image placeholder")?;
            Ok(())
        },
    },
    // ---- images ----
    Knob {
        name: "image_size",
        env: "MEMTEST_IMAGE_SIZE",
        flag: Some("image-size"),
        value_name: "WxH",
        default: "448x448",
        help: "Size of the generated images.",
        kind: KnobKind::Value,
        group: Group::Images,
        apply: |c, v| {
            let (w, h) = image_size(v)?;
            set_generated(c, |width, height, _| (*width, *height) = (w, h));
            Ok(())
        },
    },
    Knob {
        name: "image_format",
        env: "MEMTEST_IMAGE_FORMAT",
        flag: Some("image-format"),
        value_name: "png|jpeg",
        default: "png",
        help: "Encoding of the generated images.",
        kind: KnobKind::Value,
        group: Group::Images,
        apply: |c, v| {
            let f = match v.trim().to_ascii_lowercase().as_str() {
                "png" => ImageFormat::Png,
                "jpeg" | "jpg" => ImageFormat::Jpeg,
                _ => return Err("png or jpeg".into()),
            };
            set_generated(c, |_, _, format| *format = f);
            Ok(())
        },
    },
    Knob {
        name: "images_per_request",
        env: "MEMTEST_IMAGES_PER_REQUEST",
        flag: Some("images-per-request"),
        value_name: "N",
        default: "1",
        help: "Images in each request.",
        kind: KnobKind::Value,
        group: Group::Images,
        apply: |c, v| {
            let n = whole(v, 1, 64, "a number of images")? as u32;
            if let Some(images) = c.images_mut() {
                images.per_request = n;
            }
            Ok(())
        },
    },
    Knob {
        name: "image_mode",
        env: "MEMTEST_IMAGE_MODE",
        flag: Some("image-mode"),
        value_name: "unique|repeated",
        default: "unique",
        help: "unique (repeated images hit caches and hide leaks) or repeated (to compare against cache hits).",
        kind: KnobKind::Value,
        group: Group::Images,
        apply: |c, v| {
            let mode = match v.trim() {
                "unique" => ImageMode::Unique,
                "repeated" => ImageMode::Repeated,
                _ => return Err("unique or repeated".into()),
            };
            if let Some(images) = c.images_mut() {
                images.mode = mode;
            }
            Ok(())
        },
    },
    Knob {
        name: "image_dir",
        env: "MEMTEST_IMAGE_DIR",
        flag: Some("image-dir"),
        value_name: "DIR",
        default: "none: generated images",
        help: "Send the PNG/JPEG files of this folder instead (made unique per request unless repeated).",
        kind: KnobKind::Value,
        group: Group::Images,
        apply: |c, v| {
            let dir = PathBuf::from(nonempty(v, "a folder of images")?);
            if let Some(images) = c.images_mut() {
                images.source = ImageSource::Files(vec![dir]);
            }
            Ok(())
        },
    },
];
