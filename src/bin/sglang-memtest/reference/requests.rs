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

/// Sampling parameters SGLang's `SamplingParams` takes (a subset; anything else is refused, as
/// SGLang refuses an unexpected keyword argument).
const SAMPLING_PARAMS: [&str; 22] = [
    "max_new_tokens",
    "min_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "n",
    "stop",
    "stop_token_ids",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "ignore_eos",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "no_stop_trim",
    "json_schema",
    "regex",
    "ebnf",
    "structural_tag",
    "custom_params",
    "sampling_seed",
];

/// `response_format` types the OpenAI route takes.
const RESPONSE_FORMATS: [&str; 4] = ["text", "json_object", "json_schema", "structural_tag"];

#[derive(Deserialize)]
struct GenerateRequest {
    text: Option<Value>,
    #[serde(default)]
    sampling_params: serde_json::Map<String, Value>,
    #[serde(default)]
    image_data: Value,
    #[serde(default)]
    stream: bool,
    rid: Option<Value>,
}

/// What a parsed request asks for: prompts (one per answer), images, tokens to generate, and
/// how to answer.
pub(crate) struct Work {
    pub(crate) prompts: Vec<String>,
    pub(crate) images: Vec<String>,
    pub(crate) max_tokens: u64,
    /// Answers per prompt (`n`).
    pub(crate) n: u64,
    /// Server-sent events instead of one answer.
    pub(crate) stream: bool,
    /// The client's request id, for `/abort_request`.
    pub(crate) rid: Option<String>,
}

impl Work {
    /// Prompt tokens (words, and one per image) of the longest prompt.
    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.prompts
            .iter()
            .map(|p| p.split_whitespace().count() as u64)
            .max()
            .unwrap_or(0)
            + self.images.len() as u64
    }

    /// Refuses what does not fit `context` tokens, in SGLang's words.
    pub(crate) fn check_context(&self, context: u64) -> Result<(), String> {
        let prompt = self.prompt_tokens();
        if prompt >= context {
            return Err(format!(
                "The input ({prompt} tokens) is longer than the model's context length ({context} tokens)."
            ));
        }
        if prompt + self.max_tokens > context {
            return Err(format!(
                "Requested token count exceeds the model's maximum context length of {context} tokens. You requested a total of {} tokens: {prompt} tokens from the input messages and {} tokens for the completion. Please reduce the number of tokens in the input messages or the completion to fit within the limit.",
                prompt + self.max_tokens,
                self.max_tokens
            ));
        }
        Ok(())
    }
}

fn rid(value: Option<Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s),
        Value::Array(items) => items.first().and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
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
    if let Some(unknown) = req
        .sampling_params
        .keys()
        .find(|k| !SAMPLING_PARAMS.contains(&k.as_str()))
    {
        return Err(format!(
            "SamplingParams.__init__() got an unexpected keyword argument '{unknown}'"
        ));
    }
    let number = |key: &str, default: u64| match req.sampling_params.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("`sampling_params.{key}` must be a whole number, got {v}")),
    };
    let max_tokens = number("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)?;
    let n = number("n", 1)?.max(1);
    Ok((
        Work {
            prompts,
            images,
            max_tokens,
            n,
            stream: req.stream,
            rid: rid(req.rid),
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
    n: Option<u64>,
    #[serde(default)]
    stream: bool,
    rid: Option<Value>,
    response_format: Option<Value>,
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
    if let Some(format) = &req.response_format {
        let kind = format
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !RESPONSE_FORMATS.contains(&kind) {
            return Err(format!(
                "response_format.type must be one of {}, got {kind:?}",
                RESPONSE_FORMATS.join(", ")
            ));
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
            n: req.n.unwrap_or(1).max(1),
            stream: req.stream,
            rid: rid(req.rid),
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
        let err = parse_generate(br#"{"text": "a", "sampling_params": {"nope": 1}}"#)
            .err()
            .unwrap_or_default();
        assert!(err.contains("unexpected keyword argument 'nope'"), "{err}");
        let (work, _) = parse_generate(
            br#"{"text": "a b c", "stream": true, "rid": "r1", "sampling_params": {"n": 2, "temperature": 0}}"#,
        )
        .expect("parse");
        assert_eq!(
            (work.stream, work.rid.as_deref(), work.n),
            (true, Some("r1"), 2)
        );
    }

    #[test]
    fn the_context_is_checked_in_sglangs_words() {
        let (work, _) =
            parse_generate(br#"{"text": "a b c d", "sampling_params": {"max_new_tokens": 4}}"#)
                .expect("parse");
        assert!(work.check_context(100).is_ok());
        let long = work.check_context(4).err().unwrap_or_default();
        assert!(
            long.contains("longer than the model's context length"),
            "{long}"
        );
        let over = work.check_context(6).err().unwrap_or_default();
        assert!(
            over.contains("exceeds the model's maximum context length"),
            "{over}"
        );
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
        assert!(parse_chat(br#"{"messages": [], "response_format": {"type": "nope"}}"#).is_err());
    }
}
