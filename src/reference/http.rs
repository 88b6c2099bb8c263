//! The SGLang HTTP subset: routes, request parsing and response shapes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as Shared};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::state::{PlantError, State, TOKEN_CAPACITY};

/// Model name the server reports everywhere.
pub(crate) const MODEL: &str = "reference";

/// Requests carry base64 images; axum's 2 MB default would refuse ordinary photos.
const BODY_LIMIT: usize = 256 << 20;

/// Default `max_new_tokens` (SGLang's) and `max_tokens` for chat (kept small).
const DEFAULT_MAX_NEW_TOKENS: u64 = 128;
const DEFAULT_CHAT_MAX_TOKENS: u64 = 16;

/// Words the fake completions cycle through.
const WORDS: [&str; 8] = ["the", "quick", "brown", "fox", "jumps", "over", "a", "dog"];

type AppState = Arc<State>;

/// The router for `state`; `/metrics` only with `--enable-metrics`.
pub(crate) fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/health", get(health))
        .route("/health_generate", get(health))
        .route("/get_model_info", get(model_info))
        .route("/model_info", get(model_info))
        .route("/get_server_info", get(server_info))
        .route("/server_info", get(server_info))
        .route("/generate", axum::routing::post(generate))
        .route("/v1/chat/completions", axum::routing::post(chat))
        .route("/v1/models", get(models))
        .route("/flush_cache", get(flush_cache).post(flush_cache));
    if state.args.enable_metrics {
        router = router.route("/metrics", get(metrics));
    }
    router
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = json!({
        "object": "error",
        "error": {"message": message.to_string(), "code": status.as_u16()},
        "message": message.to_string(),
        "code": status.as_u16(),
    });
    (status, axum::Json(body)).into_response()
}

async fn health() -> StatusCode {
    StatusCode::OK
}

async fn model_info() -> axum::Json<Value> {
    axum::Json(json!({
        "model_path": MODEL,
        "tokenizer_path": MODEL,
        "is_generation": true,
        "preferred_sampling_params": null,
        "weight_version": "default",
    }))
}

async fn server_info(Shared(state): Shared<AppState>) -> Response {
    let mut info = match serde_json::to_value(&state.args) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    info.insert("model_path".into(), json!(MODEL));
    info.insert(
        "version".into(),
        json!(format!("reference-{}", env!("CARGO_PKG_VERSION"))),
    );
    info.insert(
        "internal_states".into(),
        json!([{"memory_usage": {"weight": 0.0, "kvcache": 0.0, "token_capacity": TOKEN_CAPACITY}}]),
    );
    info.insert("reference".into(), state.live());
    axum::Json(Value::Object(info)).into_response()
}

async fn models() -> axum::Json<Value> {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": unix_now(), "owned_by": "sglang-memtest"}],
    }))
}

async fn flush_cache(Shared(state): Shared<AppState>) -> Response {
    match state.flush().await {
        Ok(()) => (StatusCode::OK, "Cache flushed.").into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn metrics(Shared(state): Shared<AppState>) -> Response {
    let text = super::metrics::render(MODEL, &state.metrics());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `max_new_tokens` words of deterministic text.
pub(crate) fn fake_text(tokens: u64) -> String {
    let n = usize::try_from(tokens).unwrap_or(usize::MAX);
    WORDS
        .iter()
        .cycle()
        .take(n)
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Collects image strings from `str | [str] | [[str]] | null`.
fn collect_images(value: &Value, out: &mut Vec<String>) -> Result<(), String> {
    match value {
        Value::Null => Ok(()),
        Value::String(s) => {
            out.push(s.clone());
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| collect_images(v, out)),
        other => Err(format!(
            "`image_data` must be a string or a list of strings, got {other}"
        )),
    }
}

#[derive(Deserialize)]
struct SamplingParams {
    max_new_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct GenerateRequest {
    text: Option<Value>,
    sampling_params: Option<SamplingParams>,
    #[serde(default)]
    image_data: Value,
}

/// What a parsed request asks for: prompts (one per answer), images, tokens to generate.
struct Work {
    prompts: Vec<String>,
    images: Vec<String>,
    max_tokens: u64,
}

fn parse_generate(body: &[u8]) -> Result<(Work, bool), String> {
    let req: GenerateRequest = serde_json::from_slice(body)
        .map_err(|e| format!("invalid JSON body for /generate: {e}"))?;
    let (prompts, batch) = match req.text {
        Some(Value::String(s)) => (vec![s], false),
        Some(Value::Array(items)) => (
            items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(format!("`text` items must be strings, got {other}")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            true,
        ),
        Some(other) => {
            return Err(format!(
                "`text` must be a string or a list of strings, got {other}"
            ));
        }
        None => {
            return Err("`text` is required (the reference server does not take input_ids)".into());
        }
    };
    let mut images = Vec::new();
    collect_images(&req.image_data, &mut images)?;
    let max_tokens = req
        .sampling_params
        .and_then(|p| p.max_new_tokens)
        .unwrap_or(DEFAULT_MAX_NEW_TOKENS);
    Ok((
        Work {
            prompts,
            images,
            max_tokens,
        },
        batch,
    ))
}

#[derive(Deserialize)]
struct ChatMessage {
    content: Value,
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<ChatMessage>,
    model: Option<String>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
}

fn parse_chat(body: &[u8]) -> Result<(Work, String), String> {
    let req: ChatRequest = serde_json::from_slice(body)
        .map_err(|e| format!("invalid JSON body for /v1/chat/completions: {e}"))?;
    let mut text = Vec::new();
    let mut images = Vec::new();
    for message in &req.messages {
        match &message.content {
            Value::String(s) => text.push(s.clone()),
            Value::Null => {}
            Value::Array(parts) => {
                for part in parts {
                    match part.get("type").and_then(Value::as_str) {
                        Some("text") => text.push(
                            part.get("text")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned(),
                        ),
                        Some("image_url") => {
                            let url = part
                                .pointer("/image_url/url")
                                .and_then(Value::as_str)
                                .ok_or("an `image_url` part needs `image_url.url`")?;
                            images.push(url.to_owned());
                        }
                        other => return Err(format!("unsupported content part type {other:?}")),
                    }
                }
            }
            other => {
                return Err(format!(
                    "`content` must be a string or a list of parts, got {other}"
                ));
            }
        }
    }
    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(DEFAULT_CHAT_MAX_TOKENS);
    let model = req.model.unwrap_or_else(|| MODEL.to_owned());
    Ok((
        Work {
            prompts: vec![text.join("\n")],
            images,
            max_tokens,
        },
        model,
    ))
}

/// Token counts of one answered prompt.
struct Usage {
    prompt: u64,
    completion: u64,
}

/// Runs the shared part of both generate routes; `Ok` carries the request id and usage.
async fn run(state: &AppState, work: Work) -> Result<(u64, Vec<Usage>), Response> {
    let id = state.arrivals.fetch_add(1, Ordering::SeqCst);
    if let Some(limit) = state.args.crash_after
        && id >= limit
    {
        eprintln!(
            "reference server: crashing on purpose at generate request {} (--crash-after {limit})",
            id + 1
        );
        std::process::exit(1);
    }
    if state.should_fail() {
        return Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("planted failure (--error-rate {})", state.args.error_rate),
        ));
    }
    let usage: Vec<Usage> = work
        .prompts
        .iter()
        .map(|p| Usage {
            prompt: p.split_whitespace().count() as u64 + work.images.len() as u64,
            completion: work.max_tokens,
        })
        .collect();
    let tokens: u64 = usage.iter().map(|u| u.prompt + u.completion).sum();
    state.running.fetch_add(1, Ordering::Relaxed);
    state.used_tokens.fetch_add(tokens, Ordering::Relaxed);
    let planted = state.plant(work.images).await;
    state.running.fetch_sub(1, Ordering::Relaxed);
    state.used_tokens.fetch_sub(tokens, Ordering::Relaxed);
    match planted {
        Ok(()) => {}
        Err(PlantError::Image(e)) => return Err(error(StatusCode::BAD_REQUEST, e)),
        Err(PlantError::Server(e)) => {
            tracing::warn!(error = %e, "request failed");
            return Err(error(StatusCode::INTERNAL_SERVER_ERROR, e));
        }
    }
    state.finished.fetch_add(1, Ordering::Relaxed);
    for u in &usage {
        state.prompt_tokens.fetch_add(u.prompt, Ordering::Relaxed);
        state
            .generation_tokens
            .fetch_add(u.completion, Ordering::Relaxed);
    }
    Ok((id, usage))
}

async fn generate(Shared(state): Shared<AppState>, body: Bytes) -> Response {
    let (work, batch) = match parse_generate(&body) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let max_tokens = work.max_tokens;
    let (id, usage) = match run(&state, work).await {
        Ok(done) => done,
        Err(response) => return response,
    };
    let text = fake_text(max_tokens);
    let mut answers: Vec<Value> = usage
        .iter()
        .enumerate()
        .map(|(i, u)| {
            json!({
                "text": text,
                "meta_info": {
                    "id": format!("reference-{id}-{i}"),
                    "prompt_tokens": u.prompt,
                    "completion_tokens": u.completion,
                    "cached_tokens": 0,
                    "finish_reason": {"type": "length", "length": u.completion},
                },
            })
        })
        .collect();
    if batch {
        axum::Json(Value::Array(answers)).into_response()
    } else {
        axum::Json(answers.pop().unwrap_or(Value::Null)).into_response()
    }
}

async fn chat(Shared(state): Shared<AppState>, body: Bytes) -> Response {
    let (work, model) = match parse_chat(&body) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let max_tokens = work.max_tokens;
    let (id, usage) = match run(&state, work).await {
        Ok(done) => done,
        Err(response) => return response,
    };
    let (prompt, completion) = usage.first().map_or((0, 0), |u| (u.prompt, u.completion));
    axum::Json(json!({
        "id": format!("chatcmpl-reference-{id}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": fake_text(max_tokens)},
            "finish_reason": "length",
        }],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_text_has_the_asked_length() {
        assert_eq!(fake_text(0), "");
        assert_eq!(fake_text(3), "the quick brown");
        assert_eq!(fake_text(10).split(' ').count(), 10);
    }

    #[test]
    fn generate_bodies_parse() {
        let (work, batch) = parse_generate(
            br#"{"text": "hi there", "sampling_params": {"max_new_tokens": 4}, "image_data": ["a", "b"]}"#,
        )
        .expect("parse");
        assert!(!batch);
        assert_eq!(
            (work.prompts.len(), work.images.len(), work.max_tokens),
            (1, 2, 4)
        );
        let (work, batch) = parse_generate(br#"{"text": ["a", "b"]}"#).expect("parse");
        assert!(batch);
        assert_eq!(
            (work.prompts.len(), work.max_tokens),
            (2, DEFAULT_MAX_NEW_TOKENS)
        );
        assert!(parse_generate(b"{not json").is_err());
        assert!(parse_generate(br#"{"input_ids": [1]}"#).is_err());
        assert!(parse_generate(br#"{"text": "a", "image_data": 3}"#).is_err());
    }

    #[test]
    fn chat_bodies_parse() {
        let body = br#"{"model": "m", "max_tokens": 5, "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is it?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
            ]}]}"#;
        let (work, model) = parse_chat(body).expect("parse");
        assert_eq!(model, "m");
        assert_eq!(work.images, vec!["data:image/png;base64,AAAA".to_owned()]);
        assert_eq!(work.max_tokens, 5);
        assert!(parse_chat(br#"{"messages": [{"content": [{"type": "audio"}]}]}"#).is_err());
        assert!(parse_chat(br#"{"messages": 1}"#).is_err());
    }
}
