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
use serde_json::{Value, json};

use super::requests::{Work, fake_text, parse_chat, parse_generate};
use super::state::{PlantError, State, TOKEN_CAPACITY};

/// Model name the server reports everywhere.
pub(crate) const MODEL: &str = "reference";

/// Requests carry base64 images; axum's 2 MB default would refuse ordinary photos.
const BODY_LIMIT: usize = 256 << 20;

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
    if !state.args.no_loads_endpoint {
        router = router.route("/v1/loads", get(loads));
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

async fn loads(Shared(state): Shared<AppState>) -> axum::Json<Value> {
    axum::Json(state.loads())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    let finished = state.finished.fetch_add(1, Ordering::Relaxed) + 1;
    state.request_finished(finished);
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
