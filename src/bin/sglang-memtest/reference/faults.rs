//! Faults a real server can have, on demand, for the bad-input catalogue: a health check that
//! never passes, answers that are empty or not JSON, a slow answer, an API key, and a process
//! that escapes the server's process group (`setsid` and a double fork, as a daemonizing helper
//! does).

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State as Shared};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ReferenceError;
use super::state::State;

/// What the generate routes answer instead of their JSON (`--answer`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// The normal JSON answer.
    Normal,
    /// HTTP 200 whose body is cut JSON (`{"text": "`), labelled application/json.
    MalformedJson,
    /// HTTP 200 with an empty body.
    Empty,
}

/// The routes a fault applies to: the generation routes.
fn generates(path: &str) -> bool {
    matches!(path, "/generate" | "/v1/chat/completions")
}

/// Applies `--api-key`, `--request-delay-ms` and `--answer` around every route.
pub(crate) async fn layer(Shared(state): Shared<Arc<State>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if let Some(key) = &state.args.api_key
        && !matches!(path.as_str(), "/health" | "/health_generate" | "/metrics")
    {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": "Unauthorized"})),
            )
                .into_response();
        }
    }
    if !generates(&path) {
        return next.run(req).await;
    }
    if state.args.request_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(state.args.request_delay_ms)).await;
    }
    let answer = next.run(req).await;
    if !answer.status().is_success() {
        return answer;
    }
    match state.args.answer {
        Answer::Normal => answer,
        Answer::MalformedJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from(r#"{"text": ""#),
        )
            .into_response(),
        Answer::Empty => (StatusCode::OK, Body::empty()).into_response(),
    }
}

/// Starts the escaping process (`--escape-child`): an intermediate `reference-escape` that calls
/// `setsid` (a new session and process group), starts `reference-escape --stay` and exits at
/// once, so the grandchild has left the server's group and lost its parent.
pub(crate) async fn escape_child() -> Result<u32, ReferenceError> {
    let spawn_err = |source| ReferenceError::SpawnChild {
        index: 0,
        title: "sglang::escaped".to_owned(),
        source,
    };
    let exe = std::env::current_exe().map_err(spawn_err)?;
    let out = tokio::process::Command::new(exe)
        .arg("reference-escape")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .map_err(spawn_err)?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| ReferenceError::ChildProtocol {
            index: 0,
            pid: 0,
            message: format!(
                "the escaping process did not print its pid ({})",
                out.status
            ),
        })
}

/// The main of `reference-escape`: with `stay`, sleep until killed; without, leave the group
/// (`setsid`), start the one that stays and print its pid.
pub fn run_escape(stay: bool) -> Result<(), ReferenceError> {
    if stay {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    nix::unistd::setsid().map_err(|source| ReferenceError::Setsid { source })?;
    let exe = std::env::current_exe().map_err(|source| ReferenceError::SpawnChild {
        index: 0,
        title: "sglang::escaped".to_owned(),
        source,
    })?;
    // No pipe of the server's stays open in it: it is a daemon, not a child.
    let child = std::process::Command::new(exe)
        .arg0("sglang::escaped")
        .args(["reference-escape", "--stay"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| ReferenceError::SpawnChild {
            index: 0,
            title: "sglang::escaped".to_owned(),
            source,
        })?;
    println!("{}", child.id());
    Ok(())
}
