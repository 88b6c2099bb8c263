//! Parsing `/generate` and `/v1/chat/completions` bodies, and the fake completion text.

use serde::Deserialize;
use serde_json::Value;

use super::http::MODEL;

/// Default `max_new_tokens` (SGLang's) and `max_tokens` for chat (kept small).
const DEFAULT_MAX_NEW_TOKENS: u64 = 128;
const DEFAULT_CHAT_MAX_TOKENS: u64 = 16;

/// Words the fake completions cycle through.
const WORDS: [&str; 8] = ["the", "quick", "brown", "fox", "jumps", "over", "a", "dog"];

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
pub(crate) struct Work {
    pub(crate) prompts: Vec<String>,
    pub(crate) images: Vec<String>,
    pub(crate) max_tokens: u64,
}

pub(crate) fn parse_generate(body: &[u8]) -> Result<(Work, bool), String> {
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

pub(crate) fn parse_chat(body: &[u8]) -> Result<(Work, String), String> {
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
