//! The SGLang HTTP subset: routes, request parsing and response shapes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as Shared};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::generation::{Ended, generate};
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
        .route("/generate", axum::routing::post(generate_route))
        .route("/abort_request", axum::routing::post(abort_request))
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
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            super::faults::layer,
        ))
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

async fn health(Shared(state): Shared<AppState>) -> StatusCode {
    StatusCode::from_u16(state.args.health_status).unwrap_or(StatusCode::OK)
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

async fn models(Shared(state): Shared<AppState>) -> axum::Json<Value> {
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": MODEL, "object": "model", "created": unix_now(), "owned_by": "sglang-memtest",
            "max_model_len": state.args.context_length,
        }],
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

/// A request counted as running (SGLang's `num_running_reqs`, its KV tokens in use) until
/// dropped, whichever way it ends.
struct Running {
    state: AppState,
    tokens: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.state.running.fetch_sub(1, Ordering::Relaxed);
        self.state
            .used_tokens
            .fetch_sub(self.tokens, Ordering::Relaxed);
    }
}

/// A refused request: HTTP 400, and the `--leak-bytes-per-rejected` it keeps.
async fn reject(state: &AppState, message: impl std::fmt::Display) -> Response {
    state.paths.rejected.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = state
        .keep_for_path(state.args.leak_bytes_per_rejected)
        .await
    {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    error(StatusCode::BAD_REQUEST, message)
}

/// Runs the shared part of both generate routes up to the tokens: the planted failures, the
/// context check, the per-request leaks. `Ok` carries the request id, the usage and the running
/// request's guard.
async fn admit(state: &AppState, work: &Work) -> Result<(u64, Vec<Usage>, Running), Response> {
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
    if let Err(message) = work.check_context(state.args.context_length) {
        return Err(reject(state, message).await);
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
    let running = Running {
        state: Arc::clone(state),
        tokens,
    };
    match state.plant(work.images.clone()).await {
        Ok(()) => {}
        Err(PlantError::Image(e)) => return Err(reject(state, e).await),
        Err(PlantError::Server(e)) => {
            tracing::warn!(error = %e, "request failed");
            return Err(error(StatusCode::INTERNAL_SERVER_ERROR, e));
        }
    }
    Ok((id, usage, running))
}

/// Book-keeping of a request whose tokens were all generated.
fn finished(state: &AppState, usage: &[Usage]) {
    let finished = state.finished.fetch_add(1, Ordering::Relaxed) + 1;
    state.request_finished(finished);
    for u in usage {
        state.prompt_tokens.fetch_add(u.prompt, Ordering::Relaxed);
        state
            .generation_tokens
            .fetch_add(u.completion, Ordering::Relaxed);
    }
}

/// The leak and count of an error path, after a generation ended.
async fn ended(state: &AppState, how: Ended, stream: bool) {
    let bytes = match how {
        Ended::Aborted => {
            state.paths.aborted.fetch_add(1, Ordering::Relaxed);
            state.args.leak_bytes_per_abort
        }
        Ended::Gone => {
            state.paths.disconnected.fetch_add(1, Ordering::Relaxed);
            state.args.leak_bytes_per_disconnect
        }
        Ended::Finished if stream => {
            state.paths.streamed.fetch_add(1, Ordering::Relaxed);
            state.args.leak_bytes_per_stream
        }
        Ended::Finished => 0,
    };
    if let Err(e) = state.keep_for_path(bytes).await {
        tracing::warn!(error = %e, "planting an error-path leak failed");
    }
}

fn token_delay(state: &AppState) -> Duration {
    Duration::from_micros(state.args.token_delay_us)
}

/// Which route answers: the event and answer shapes differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Native,
    Chat,
}

/// SGLang's finish reason of a native answer.
fn native_finish(how: Ended, tokens: u64) -> Value {
    match how {
        Ended::Aborted | Ended::Gone => json!({"type": "abort", "message": "Abort request"}),
        Ended::Finished => json!({"type": "length", "length": tokens}),
    }
}

fn chat_finish(how: Ended) -> &'static str {
    match how {
        Ended::Aborted | Ended::Gone => "abort",
        Ended::Finished => "length",
    }
}

/// Generates the whole answer (abortable), then answers at once.
async fn answer_whole(
    state: AppState,
    work: Work,
    route: Route,
    model: String,
    batch: bool,
) -> Response {
    let (id, usage, running) = match admit(&state, &work).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let registration = state.paths.register(work.rid.clone());
    let how = generate(
        work.max_tokens,
        token_delay(&state),
        &registration.flag,
        |_| async { true },
    )
    .await;
    drop(registration);
    drop(running);
    if how == Ended::Finished {
        finished(&state, &usage);
    }
    ended(&state, how, false).await;
    let done = if how == Ended::Finished {
        work.max_tokens
    } else {
        0
    };
    let text = fake_text(done);
    match route {
        Route::Native => {
            let mut answers: Vec<Value> = usage
                .iter()
                .flat_map(|u| std::iter::repeat_n(u, usize::try_from(work.n).unwrap_or(1)))
                .enumerate()
                .map(|(i, u)| {
                    json!({
                        "text": text,
                        "meta_info": {
                            "id": format!("reference-{id}-{i}"),
                            "prompt_tokens": u.prompt,
                            "completion_tokens": done,
                            "cached_tokens": 0,
                            "finish_reason": native_finish(how, done),
                        },
                    })
                })
                .collect();
            if batch || answers.len() > 1 {
                axum::Json(Value::Array(answers)).into_response()
            } else {
                axum::Json(answers.pop().unwrap_or(Value::Null)).into_response()
            }
        }
        Route::Chat => {
            let prompt = usage.first().map_or(0, |u| u.prompt);
            let choices: Vec<Value> = (0..work.n)
                .map(|i| {
                    json!({
                        "index": i,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": chat_finish(how),
                    })
                })
                .collect();
            axum::Json(json!({
                "id": format!("chatcmpl-reference-{id}"),
                "object": "chat.completion",
                "created": unix_now(),
                "model": model,
                "choices": choices,
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": done * work.n,
                    "total_tokens": prompt + done * work.n,
                },
            }))
            .into_response()
        }
    }
}

/// Streams the answer as server-sent events, one per token, then `[DONE]`; an abort ends the
/// stream with an `abort` finish reason; a client that goes away stops the generation.
async fn answer_stream(state: AppState, work: Work, route: Route, model: String) -> Response {
    let (id, usage, running) = match admit(&state, &work).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(4);
    tokio::spawn(async move {
        let registration = state.paths.register(work.rid.clone());
        let prompt = usage.first().map_or(0, |u| u.prompt);
        let event = |i: u64, finish: Option<Ended>| -> String {
            let data = match route {
                Route::Native => json!({
                    "text": fake_text(i),
                    "meta_info": {
                        "id": format!("reference-{id}"),
                        "prompt_tokens": prompt,
                        "completion_tokens": i,
                        "finish_reason": finish.map(|h| native_finish(h, i)),
                    },
                }),
                Route::Chat => json!({
                    "id": format!("chatcmpl-reference-{id}"),
                    "object": "chat.completion.chunk",
                    "created": unix_now(),
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "delta": if finish.is_some() { json!({}) } else { json!({"content": format!("{} ", fake_text(1))}) },
                        "finish_reason": finish.map(chat_finish),
                    }],
                }),
            };
            format!("data: {data}\n\n")
        };
        let how = generate(
            work.max_tokens,
            token_delay(&state),
            &registration.flag,
            |i| {
                let tx = tx.clone();
                let e = event(i + 1, None);
                async move { tx.send(e).await.is_ok() }
            },
        )
        .await;
        drop(registration);
        let how = if how != Ended::Gone {
            let last = if how == Ended::Finished {
                work.max_tokens
            } else {
                0
            };
            let closing = [event(last, Some(how)), "data: [DONE]\n\n".to_owned()];
            let mut gone = false;
            for e in closing {
                gone = gone || tx.send(e).await.is_err();
            }
            if gone { Ended::Gone } else { how }
        } else {
            how
        };
        drop(running);
        if how == Ended::Finished {
            finished(&state, &usage);
        }
        ended(&state, how, true).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(Bytes::from(e)), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

async fn generate_route(Shared(state): Shared<AppState>, body: Bytes) -> Response {
    let (work, batch) = match parse_generate(&body) {
        Ok(parsed) => parsed,
        Err(message) => return reject(&state, message).await,
    };
    if work.stream {
        answer_stream(state, work, Route::Native, MODEL.to_owned()).await
    } else {
        answer_whole(state, work, Route::Native, MODEL.to_owned(), batch).await
    }
}

async fn chat(Shared(state): Shared<AppState>, body: Bytes) -> Response {
    let (work, model) = match parse_chat(&body) {
        Ok(parsed) => parsed,
        Err(message) => return reject(&state, message).await,
    };
    if work.stream {
        answer_stream(state, work, Route::Chat, model).await
    } else {
        answer_whole(state, work, Route::Chat, model, false).await
    }
}

/// SGLang's `/abort_request`: `{"rid": …}` or `{"abort_all": true}`; 200 whether or not a
/// request of that id was running (as SGLang).
async fn abort_request(Shared(state): Shared<AppState>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    let all = v.get("abort_all").and_then(Value::as_bool).unwrap_or(false);
    let rid = v.get("rid").and_then(Value::as_str);
    if !all && rid.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "give `rid` (the request's id) or `abort_all: true`",
        );
    }
    let n = state.paths.abort(rid, all);
    tracing::debug!(rid, all, aborted = n, "abort_request");
    StatusCode::OK.into_response()
}
