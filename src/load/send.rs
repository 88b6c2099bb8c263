//! Sending one [`Request`] the way its [`Delivery`] says, and judging the answer against its
//! [`Expect`]ation.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::source::{AbortAt, Delivery, Expect, Request};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// Answered as planned (2xx; an abort request that finished before the abort reached it).
    #[default]
    Ok,
    /// Refused as it had to be (the 4xx a rejection kind expects).
    Rejected,
    /// Ended by `/abort_request`, as planned.
    Aborted,
    /// Dropped by the client mid-stream, as planned.
    Disconnected,
    /// Anything else: counted by the error-rate guard.
    Failed,
}

impl RequestOutcome {
    /// Went to plan (everything but [`Failed`](Self::Failed)).
    pub fn as_planned(self) -> bool {
        self != RequestOutcome::Failed
    }
}

/// What one delivery came to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delivered {
    pub(crate) status: Option<u16>,
    pub(crate) outcome: RequestOutcome,
    /// Why it failed (or, for a planned outcome that is worth saying, e.g. the abort's answer).
    pub(crate) error: Option<String>,
}

impl Delivered {
    fn failed(status: Option<u16>, why: String) -> Self {
        Self {
            status,
            outcome: RequestOutcome::Failed,
            error: Some(why),
        }
    }
}

/// Sends `request` to `base_url` and reads the answer as its delivery says.
pub(crate) async fn deliver(
    client: &reqwest::Client,
    base_url: &str,
    api_key: Option<&str>,
    request: &Request,
) -> Delivered {
    let url = format!("{base_url}{}", request.path);
    let mut builder = if request.get {
        client.get(url)
    } else {
        client.post(url).json(&request.body)
    };
    if let Some(key) = api_key {
        builder = builder.bearer_auth(key);
    }
    let abort = |all: bool| {
        let body = if all {
            json!({"abort_all": true})
        } else {
            json!({"rid": request.rid.clone().unwrap_or_default()})
        };
        let mut b = client.post(format!("{base_url}/abort_request")).json(&body);
        if let Some(key) = api_key {
            b = b.bearer_auth(key);
        }
        b
    };
    match request.delivery {
        Delivery::Abort {
            at: AbortAt::Sent,
            all,
        } => {
            // The request goes out first, the abort after it — again every few milliseconds
            // until the request answers: SGLang ignores an abort for a request id it has not
            // registered yet (the request is still being tokenized), so one early abort is
            // often lost, and an abort of a finished request is a no-op.
            let mut main = tokio::spawn(builder.send());
            let mut aborted = Ok(());
            let response = loop {
                tokio::select! {
                    r = &mut main => break r,
                    () = tokio::time::sleep(std::time::Duration::from_millis(ABORT_DELAY_MS)) => {
                        let answer = send_abort(abort(all)).await;
                        if aborted.is_ok() {
                            aborted = answer;
                        }
                    }
                }
            };
            let response = match response {
                Ok(r) => r,
                Err(e) => return Delivered::failed(None, format!("the request task failed: {e}")),
            };
            match response {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let json = wants_json(request, &resp);
                    let body = resp.bytes().await.unwrap_or_default();
                    with_abort_answer(judge_whole(request.expect, status, &body, json), aborted)
                }
                Err(e) => Delivered::failed(None, super::driver::describe_reqwest(&e)),
            }
        }
        _ => match builder.send().await {
            Ok(resp) => read(resp, request, abort).await,
            Err(e) => Delivered::failed(None, super::driver::describe_reqwest(&e)),
        },
    }
}

/// Milliseconds between sending an `abort-queued` request and its first abort, and between
/// the aborts that follow until it answers.
const ABORT_DELAY_MS: u64 = 5;

/// The abort call's own answer: `Err` when the server has no (working) `/abort_request`.
async fn send_abort(b: reqwest::RequestBuilder) -> Result<(), String> {
    match b.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.bytes().await.unwrap_or_default();
            Err(format!(
                "POST /abort_request answered HTTP {status}: {}",
                snippet(&body)
            ))
        }
        Err(e) => Err(format!(
            "POST /abort_request failed: {}",
            super::driver::describe_reqwest(&e)
        )),
    }
}

fn with_abort_answer(d: Delivered, aborted: Result<(), String>) -> Delivered {
    match aborted {
        Ok(()) => d,
        // An abort the server refused is a failure whatever the request did.
        Err(why) => Delivered::failed(d.status, why),
    }
}

async fn read<F>(mut resp: reqwest::Response, request: &Request, abort: F) -> Delivered
where
    F: Fn(bool) -> reqwest::RequestBuilder,
{
    let status = resp.status().as_u16();
    let streamed = !matches!(request.delivery, Delivery::Whole);
    if !streamed || !(200..300).contains(&status) {
        let json = wants_json(request, &resp);
        return match resp.bytes().await {
            Ok(body) => judge_whole(request.expect, status, &body, json),
            Err(e) => Delivered::failed(
                Some(status),
                format!(
                    "reading the response failed: {}",
                    super::driver::describe_reqwest(&e)
                ),
            ),
        };
    }
    let mut events = Events::default();
    let mut abort_sent: Option<Result<(), String>> = None;

    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => events.feed(&bytes),
            Ok(None) => break,
            Err(e) => {
                return Delivered::failed(
                    Some(status),
                    format!(
                        "the stream broke after {} events: {}",
                        events.count,
                        super::driver::describe_reqwest(&e)
                    ),
                );
            }
        }
        match request.delivery {
            Delivery::Disconnect { after_events } if events.count >= after_events => {
                // Dropping the response closes the connection: the client is gone.
                drop(resp);
                return Delivered {
                    status: Some(status),
                    outcome: RequestOutcome::Disconnected,
                    error: None,
                };
            }
            Delivery::Abort { all, .. } if events.count >= 1 && abort_sent.is_none() => {
                abort_sent = Some(send_abort(abort(all)).await);
            }
            _ => {}
        }
    }
    let outcome = if let Some(why) = events.error.take() {
        if events.aborted && request.expect == Expect::Aborted {
            RequestOutcome::Aborted
        } else if events.error_code.is_some_and(|c| (400..500).contains(&c))
            && request.expect == Expect::Rejected
        {
            // SGLang's native stream refuses inside a 200 stream: an error event with the code.
            RequestOutcome::Rejected
        } else {
            return Delivered::failed(Some(status), format!("the stream carried an error: {why}"));
        }
    } else if !events.done && events.count == 0 {
        return Delivered::failed(Some(status), "the stream ended without an event".into());
    } else if events.aborted {
        match request.expect {
            Expect::Aborted => RequestOutcome::Aborted,
            _ => {
                return Delivered::failed(
                    Some(status),
                    "the stream ended aborted, though nothing aborted it".into(),
                );
            }
        }
    } else {
        match request.expect {
            Expect::Rejected => {
                return Delivered::failed(
                    Some(status),
                    format!("HTTP {status}: the server accepted a request it must reject"),
                );
            }
            _ => RequestOutcome::Ok,
        }
    };
    let d = Delivered {
        status: Some(status),
        outcome,
        error: None,
    };
    match abort_sent {
        Some(a) => with_abort_answer(d, a),
        None => d,
    }
}

/// Server-sent events seen so far: how many, whether `[DONE]` came, whether an event said the
/// request was aborted, the first error event.
#[derive(Debug, Default)]
struct Events {
    pending: Vec<u8>,
    count: u32,
    done: bool,
    aborted: bool,
    error: Option<String>,
    error_code: Option<u16>,
}

impl Events {
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = find_event_end(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..end.0 + end.1).collect();
            self.event(&event[..end.0]);
        }
    }

    fn event(&mut self, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let data: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n");
        if data.is_empty() {
            return;
        }
        self.count += 1;
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        match serde_json::from_str::<Value>(&data) {
            Ok(v) => {
                if says_aborted(&v) {
                    self.aborted = true;
                }
                if let Some(e) = v.get("error")
                    && !e.is_null()
                    && self.error.is_none()
                {
                    self.error = Some(snippet(e.to_string().as_bytes()));
                    self.error_code = e
                        .get("code")
                        .and_then(Value::as_u64)
                        .and_then(|c| u16::try_from(c).ok());
                }
            }
            Err(_) => {
                if data.to_ascii_lowercase().contains("abort") {
                    self.aborted = true;
                }
            }
        }
    }
}

/// The end of the first complete event in `buf`: (its length, the separator's).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Whether a response or event says its request was aborted: SGLang's
/// `meta_info.finish_reason.type == "abort"`, an OpenAI `finish_reason: "abort"`, or an error
/// whose message says so.
fn says_aborted(v: &Value) -> bool {
    let reason_is_abort = |r: &Value| {
        r.as_str() == Some("abort") || r.get("type").and_then(Value::as_str) == Some("abort")
    };
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    items.into_iter().any(|v| {
        v.pointer("/meta_info/finish_reason")
            .is_some_and(reason_is_abort)
            || v.get("choices").and_then(Value::as_array).is_some_and(|c| {
                c.iter()
                    .any(|c| c.get("finish_reason").is_some_and(reason_is_abort))
            })
            || v.get("error")
                .is_some_and(|e| e.to_string().to_ascii_lowercase().contains("abort"))
            || v.get("message")
                .and_then(Value::as_str)
                .is_some_and(|m| m.to_ascii_lowercase().contains("abort"))
    })
}

/// The outcome of a whole (non-streamed) answer.
/// Whether a successful answer must be JSON: the generation routes always answer JSON, and so
/// does anything that says `application/json`.
fn wants_json(request: &Request, resp: &reqwest::Response) -> bool {
    let route = request.path.split('?').next().unwrap_or_default();
    matches!(
        route,
        "/generate" | "/v1/chat/completions" | "/v1/completions"
    ) || resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

/// `json`: a successful answer must be a JSON document (an empty body never counts as one).
fn judge_whole(expect: Expect, status: u16, body: &[u8], json: bool) -> Delivered {
    let ok = (200..300).contains(&status);
    let client_error = (400..500).contains(&status);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let aborted = parsed.as_ref().map_or_else(
        || {
            String::from_utf8_lossy(body)
                .to_ascii_lowercase()
                .contains("abort")
        },
        says_aborted,
    );
    let planned = |outcome| Delivered {
        status: Some(status),
        outcome,
        error: None,
    };
    let failed = |why: String| Delivered::failed(Some(status), why);
    // A 200 that carries nothing, or garbage where JSON was due, did not generate anything: a
    // server that answers like that must not pass as a clean one.
    let empty = body.iter().all(u8::is_ascii_whitespace);
    match expect {
        Expect::Success if ok && empty && json => failed(format!(
            "HTTP {status} with an empty body: the server answered without generating anything"
        )),
        Expect::Success if ok && json && parsed.is_none() => failed(format!(
            "HTTP {status} with a body that is not JSON: {}",
            snippet(body)
        )),
        Expect::Success if ok => planned(RequestOutcome::Ok),
        Expect::Success if matches!(status, 401 | 403) => failed(format!(
            "HTTP {status}: {} (the server wants another API key: set --api-key / MEMTEST_API_KEY)",
            snippet(body)
        )),
        Expect::Success => failed(format!("HTTP {status}: {}", snippet(body))),
        Expect::Rejected if client_error => planned(RequestOutcome::Rejected),
        Expect::Rejected if ok => failed(format!(
            "HTTP {status}: the server accepted a request it must reject"
        )),
        Expect::Rejected => failed(format!(
            "HTTP {status} where a rejection (4xx) was expected: {}",
            snippet(body)
        )),
        Expect::Status(s) if s == status && ok => planned(RequestOutcome::Ok),
        Expect::Status(s) if s == status => planned(RequestOutcome::Rejected),
        Expect::Status(s) => failed(format!(
            "HTTP {status} where {s} was expected: {}",
            snippet(body)
        )),
        Expect::Aborted if aborted && (ok || client_error) => planned(RequestOutcome::Aborted),
        Expect::Aborted if ok => planned(RequestOutcome::Ok),
        Expect::Aborted => failed(format!("HTTP {status}: {}", snippet(body))),
    }
}

pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_counted_across_chunks() {
        let mut e = Events::default();
        e.feed(b"data: {\"text\": \"a\"}\n");
        assert_eq!(e.count, 0);
        e.feed(b"\ndata: {\"text\": \"ab\"}\r\n\r\ndata: [DONE]\n\n");
        assert_eq!((e.count, e.done, e.aborted), (3, true, false));
    }

    #[test]
    fn a_native_stream_refusal_is_a_rejection() {
        let mut e = Events::default();
        e.feed(
            b"data: {\"error\": {\"message\": \"too long\", \"code\": 400}}\n\ndata: [DONE]\n\n",
        );
        assert_eq!((e.error_code, e.count), (Some(400), 2));
    }

    #[test]
    fn aborts_are_recognised_on_both_routes() {
        let mut e = Events::default();
        e.feed(b"data: {\"text\": \"a\", \"meta_info\": {\"finish_reason\": {\"type\": \"abort\"}}}\n\n");
        assert!(e.aborted);
        assert!(says_aborted(
            &json!({"choices": [{"finish_reason": "abort"}]})
        ));
        assert!(says_aborted(
            &json!({"error": {"message": "Request aborted."}})
        ));
        assert!(!says_aborted(
            &json!({"choices": [{"finish_reason": "length"}]})
        ));
    }

    #[test]
    fn whole_answers_are_judged_by_the_expectation() {
        let j = |e, s, b: &str| judge_whole(e, s, b.as_bytes(), true).outcome;
        assert_eq!(j(Expect::Success, 200, "{}"), RequestOutcome::Ok);
        assert_eq!(j(Expect::Success, 400, "{}"), RequestOutcome::Failed);
        assert_eq!(j(Expect::Rejected, 400, "{}"), RequestOutcome::Rejected);
        assert_eq!(j(Expect::Rejected, 200, "{}"), RequestOutcome::Failed);
        assert_eq!(j(Expect::Rejected, 500, "{}"), RequestOutcome::Failed);
        assert_eq!(j(Expect::Status(404), 404, ""), RequestOutcome::Rejected);
        let aborted = r#"{"meta_info": {"finish_reason": {"type": "abort"}}}"#;
        assert_eq!(j(Expect::Aborted, 200, aborted), RequestOutcome::Aborted);
        assert_eq!(j(Expect::Aborted, 200, "{}"), RequestOutcome::Ok);
        assert_eq!(j(Expect::Aborted, 500, aborted), RequestOutcome::Failed);
        let d = judge_whole(Expect::Rejected, 200, b"{}", true);
        assert!(d.error.is_some_and(|e| e.contains("must reject")));
        // A 200 that carries nothing, or not the JSON it owes, is a failure, not a pass.
        let d = judge_whole(Expect::Success, 200, b"", true);
        assert!(d.error.is_some_and(|e| e.contains("empty body")));
        assert_eq!(
            judge_whole(Expect::Success, 200, b"", false).outcome,
            RequestOutcome::Ok,
            "a custom route (GET /health) may answer nothing"
        );
        let d = judge_whole(Expect::Success, 200, b"{\"text\": ", true);
        assert!(d.error.is_some_and(|e| e.contains("not JSON")));
        assert_eq!(
            judge_whole(Expect::Success, 200, b"plain text", false).outcome,
            RequestOutcome::Ok,
            "a custom route may answer text"
        );
    }
}
