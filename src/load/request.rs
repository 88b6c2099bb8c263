//! Request bodies of the shipped scenarios: one function builds every kind on both routes, so
//! the kinds differ only in what they are meant to exercise.

use serde_json::{Value, json};

use super::images::EncodedImage;
use super::kind::RequestKind;
use super::source::{AbortAt, Expect, Request, RequestContext, Standard};
use super::{Api, LoadError};
use crate::tracker::Phase;

const TOPICS: [&str; 12] = [
    "the printing press",
    "tidal energy",
    "the history of chess",
    "coral reefs",
    "the first vaccines",
    "volcanic islands",
    "the silk road",
    "sourdough bread",
    "radio astronomy",
    "glaciers",
    "the steam engine",
    "honey bees",
];

/// Short words that are one token in the common tokenizers (a long prompt of them has about
/// as many tokens as words).
const FILLER: [&str; 16] = [
    "the", "and", "of", "to", "in", "is", "it", "on", "as", "at", "by", "we", "or", "an", "be",
    "so",
];

/// Tokens the streamed kinds generate at least, so that a disconnect or an abort lands while
/// the request still runs.
const STREAM_MIN_TOKENS: u32 = 64;
/// Events read before a `disconnect` request drops its connection.
const DISCONNECT_AFTER: u32 = 2;
/// Images in a `multi-image` request.
const MULTI_IMAGES: u32 = 3;
/// Sizes a `mixed-sizes` request cycles through.
pub(crate) const MIXED_SIZES: [(u32, u32); 4] = [(64, 64), (224, 160), (448, 448), (800, 600)];

/// The prompt of request `index`: unique per request, so prefix caches cannot make every request
/// look the same.
pub fn prompt(index: u64, with_images: bool) -> String {
    let topic = TOPICS[(index % TOPICS.len() as u64) as usize];
    if with_images {
        format!("Request {index}: describe this image in one sentence, then relate it to {topic}.")
    } else {
        format!("Request {index}: write two sentences about {topic}.")
    }
}

/// A unique prompt of about `words` tokens.
fn long_prompt(index: u64, words: u64) -> String {
    let mut s = format!("Request {index}:");
    for i in 0..words {
        s.push(' ');
        s.push_str(FILLER[((i ^ index) % FILLER.len() as u64) as usize]);
    }
    s
}

/// Bytes no image decoder reads, base64-encoded properly: the server must decode the base64,
/// try the image and refuse it.
fn bad_image_url(index: u64) -> String {
    use base64::Engine as _;
    let junk = format!("memtest {index}: these bytes are not an image");
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(junk)
    )
}

/// The ordinary request of `index` on `api`: a prompt, its images, `max_new_tokens`.
fn body(api: Api, ctx: &RequestContext<'_>, text: &str, images: &[String], tokens: u32) -> Value {
    match api {
        Api::Native => {
            let mut body = json!({
                "sampling_params": {"temperature": 0, "max_new_tokens": tokens},
            });
            if images.is_empty() {
                body["text"] = Value::String(text.to_owned());
            } else {
                // The native route does not apply the chat template: the model's image
                // placeholder must already be in the text, once per image.
                let placeholders = ctx.image_token.repeat(images.len());
                body["text"] = Value::String(format!("{placeholders}{text}"));
                body["image_data"] = if images.len() == 1 {
                    Value::String(images[0].clone())
                } else {
                    images.iter().cloned().map(Value::String).collect()
                };
            }
            body
        }
        Api::OpenAi => {
            let content = if images.is_empty() {
                Value::String(text.to_owned())
            } else {
                let mut parts: Vec<Value> = images
                    .iter()
                    .map(|url| json!({"type": "image_url", "image_url": {"url": url}}))
                    .collect();
                parts.push(json!({"type": "text", "text": text}));
                Value::Array(parts)
            };
            json!({
                "model": ctx.model,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": tokens,
                "temperature": 0,
            })
        }
    }
}

fn path(api: Api) -> &'static str {
    match api {
        Api::Native => "/generate",
        Api::OpenAi => "/v1/chat/completions",
    }
}

/// Sets a sampling setting where the route takes it: in `sampling_params` (native) or at the
/// top level (OpenAI, under `openai_key`).
fn set_sampling(api: Api, body: &mut Value, native_key: &str, openai_key: &str, v: Value) {
    match api {
        Api::Native => body["sampling_params"][native_key] = v,
        Api::OpenAi => body[openai_key] = v,
    }
}

fn context(ctx: &RequestContext<'_>, kind: RequestKind) -> Result<u64, LoadError> {
    ctx.context_length.ok_or(LoadError::ContextLengthUnknown {
        kind: kind.as_str(),
    })
}

fn urls(images: &[EncodedImage]) -> Vec<String> {
    images.iter().map(EncodedImage::data_url).collect()
}

/// Request `ctx.index` of a shipped scenario: its kind from the mix, its body for the API.
pub(crate) fn build(source: &Standard, ctx: &RequestContext<'_>) -> Result<Request, LoadError> {
    let kind = match ctx.phase {
        // The warm-up goes through every kind in turn, so each kind's first-time costs (new
        // shapes, a lazily built code path) fall before the baseline.
        Phase::Warmup => source.mix.warmup_kind(ctx.phase_index),
        _ => source.mix.kind_of(ctx.phase_index),
    };
    let api = ctx.api;
    let tokens = ctx.max_new_tokens;
    let images = match kind {
        _ if !source.with_images => Vec::new(),
        RequestKind::MultiImage => urls(&ctx.images(MULTI_IMAGES)?),
        RequestKind::MixedSizes => {
            let (w, h) = MIXED_SIZES[(ctx.index % MIXED_SIZES.len() as u64) as usize];
            let set = ctx.images.ok_or(super::images::ImageError::NoImages)?;
            vec![set.image_sized(ctx.index, w, h)?.data_url()]
        }
        _ => urls(&ctx.scenario_images()?),
    };
    let n_images = images.len() as u32;
    let text = prompt(ctx.index, !images.is_empty());
    let plain = |text: &str, images: &[String], tokens: u32| body(api, ctx, text, images, tokens);
    let stream_tokens = tokens.max(STREAM_MIN_TOKENS);
    let streaming = |tokens: u32| {
        let mut b = plain(&text, &images, tokens);
        b["stream"] = Value::Bool(true);
        b
    };
    let req = |b: Value| Request::post(path(api), b).with_images(n_images);
    let request = match kind {
        RequestKind::Plain => req(plain(&text, &images, tokens)),
        RequestKind::Stream => req(streaming(tokens)).streamed(),
        RequestKind::Disconnect => req(streaming(stream_tokens)).disconnect_after(DISCONNECT_AFTER),
        RequestKind::Abort => {
            req(streaming(stream_tokens)).aborted(AbortAt::FirstEvent, false, &ctx.rid)
        }
        RequestKind::AbortAll => {
            req(streaming(stream_tokens)).aborted(AbortAt::FirstEvent, true, &ctx.rid)
        }
        RequestKind::AbortQueued => {
            req(plain(&text, &images, stream_tokens)).aborted(AbortAt::Sent, false, &ctx.rid)
        }
        RequestKind::RejectLongPrompt => {
            let n = context(ctx, kind)?;
            let long = long_prompt(ctx.index, 2 * n + 16);
            req(plain(&long, &images, tokens)).expect(Expect::Rejected)
        }
        RequestKind::RejectMaxTokens => {
            let n = context(ctx, kind)?;
            let over = u32::try_from(n + 16).unwrap_or(u32::MAX);
            req(plain(&text, &images, over)).expect(Expect::Rejected)
        }
        RequestKind::RejectBadImage => {
            let bad = vec![bad_image_url(ctx.index)];
            let text = prompt(ctx.index, true);
            Request::post(path(api), plain(&text, &bad, tokens))
                .with_images(1)
                .expect(Expect::Rejected)
        }
        RequestKind::RejectUnknownParam => {
            let mut b = plain(&text, &images, tokens);
            // Native: SGLang's SamplingParams takes keyword arguments only it knows. OpenAI:
            // an unknown `response_format` type is validated by the request model.
            match api {
                Api::Native => b["sampling_params"]["memtest_no_such_param"] = json!(1),
                Api::OpenAi => b["response_format"] = json!({"type": "memtest_no_such_format"}),
            }
            req(b).expect(Expect::Rejected)
        }
        RequestKind::LongPrompt => {
            let n = context(ctx, kind)?;
            let words = n.saturating_sub(u64::from(tokens)) / 2;
            req(plain(&long_prompt(ctx.index, words), &images, tokens))
        }
        RequestKind::N => {
            let mut b = plain(&text, &images, tokens);
            set_sampling(api, &mut b, "n", "n", json!(2));
            req(b)
        }
        RequestKind::Logprobs => {
            let mut b = plain(&text, &images, tokens);
            match api {
                Api::Native => {
                    b["return_logprob"] = json!(true);
                    b["top_logprobs_num"] = json!(5);
                }
                Api::OpenAi => {
                    b["logprobs"] = json!(true);
                    b["top_logprobs"] = json!(5);
                }
            }
            req(b)
        }
        RequestKind::MultiTurn => req(multi_turn(api, ctx, &text, &images, tokens)),
        RequestKind::MultiImage | RequestKind::MixedSizes => req(plain(&text, &images, tokens)),
    };
    Ok(request.kind(kind.as_str()))
}

/// Four turns: a system message, a question, an answer, a follow-up (with the images).
fn multi_turn(
    api: Api,
    ctx: &RequestContext<'_>,
    text: &str,
    images: &[String],
    tokens: u32,
) -> Value {
    let index = ctx.index;
    let first = format!(
        "Request {index}: name a use of {}.",
        TOPICS[(index % 12) as usize]
    );
    let answer = "One use is teaching: it makes a good example.";
    match api {
        Api::Native => {
            // No chat template on the native route: the turns as a transcript.
            let transcript = format!(
                "System: answer briefly.\nUser: {first}\nAssistant: {answer}\nUser: {text}\nAssistant:"
            );
            body(api, ctx, &transcript, images, tokens)
        }
        Api::OpenAi => {
            let mut b = body(api, ctx, text, images, tokens);
            let last = b["messages"][0].clone();
            b["messages"] = json!([
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": first},
                {"role": "assistant", "content": answer},
                last,
            ]);
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Mix;
    use crate::load::source::Delivery;

    fn ctx(api: Api, index: u64) -> RequestContext<'static> {
        RequestContext {
            index,
            phase: Phase::Measure,
            phase_index: index,
            api,
            model: "m",
            max_new_tokens: 32,
            image_token: "<img>",
            context_length: Some(100),
            rid: format!("rid-{index}"),
            images: None,
        }
    }

    fn one(kind: RequestKind, api: Api) -> Request {
        let source = Standard {
            with_images: false,
            mix: Mix::only(kind),
        };
        build(&source, &ctx(api, 7)).unwrap_or_else(|e| panic!("{kind}: {e}"))
    }

    #[test]
    fn prompts_are_unique() {
        assert_ne!(prompt(1, false), prompt(13, false));
        assert!(prompt(3, true).contains("image"));
    }

    #[test]
    fn plain_bodies() {
        let r = one(RequestKind::Plain, Api::Native);
        assert_eq!(r.path, "/generate");
        assert_eq!(r.body["sampling_params"]["max_new_tokens"], 32);
        assert!(
            r.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("Request 7"))
        );
        assert!(r.body.get("image_data").is_none());
        let r = one(RequestKind::Plain, Api::OpenAi);
        assert_eq!(r.path, "/v1/chat/completions");
        assert_eq!(r.body["model"], "m");
        assert!(r.body["messages"][0]["content"].is_string());
        assert_eq!((r.kind.as_str(), r.expect), ("plain", Expect::Success));
    }

    #[test]
    fn every_kind_builds_on_both_routes() {
        for api in [Api::Native, Api::OpenAi] {
            for kind in RequestKind::ALL.into_iter().filter(|k| !k.needs_images()) {
                let r = one(kind, api);
                assert_eq!(r.kind, kind.as_str());
                assert_eq!(r.expect == Expect::Rejected, kind.is_rejection(), "{kind}");
                let streams = r.body.get("stream") == Some(&Value::Bool(true));
                assert_eq!(
                    streams,
                    matches!(r.delivery, Delivery::Stream | Delivery::Disconnect { .. })
                        || matches!(
                            r.delivery,
                            Delivery::Abort {
                                at: AbortAt::FirstEvent,
                                ..
                            }
                        ),
                    "{kind} on {api:?}"
                );
                if kind.is_abort() {
                    assert_eq!(r.body["rid"], "rid-7", "{kind}");
                    assert_eq!(r.rid.as_deref(), Some("rid-7"));
                }
            }
        }
    }

    #[test]
    fn rejections_pass_the_context() {
        let r = one(RequestKind::RejectLongPrompt, Api::Native);
        let words = r.body["text"].as_str().map_or(0, |t| t.split(' ').count());
        assert!(words > 200, "{words} words for a context of 100");
        let r = one(RequestKind::RejectMaxTokens, Api::OpenAi);
        assert_eq!(r.body["max_tokens"], 116);
        let r = one(RequestKind::LongPrompt, Api::Native);
        let words = r.body["text"].as_str().map_or(0, |t| t.split(' ').count());
        assert!((30..60).contains(&words), "{words}");
        let r = one(RequestKind::RejectBadImage, Api::Native);
        assert!(
            r.body["image_data"]
                .as_str()
                .is_some_and(|u| u.starts_with("data:image/png;base64,"))
        );
    }

    #[test]
    fn kinds_that_need_the_context_say_so() {
        let source = Standard {
            with_images: false,
            mix: Mix::only(RequestKind::LongPrompt),
        };
        let mut c = ctx(Api::Native, 0);
        c.context_length = None;
        let err = build(&source, &c).unwrap_err().to_string();
        assert!(err.contains("context-length"), "{err}");
    }
}
