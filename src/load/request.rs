//! Request bodies: one function builds every route's JSON, so the workloads stay comparable.

use serde_json::{Value, json};

use super::images::EncodedImage;
use super::{Api, DriverConfig};

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

/// The HTTP path and JSON body of request `index`.
pub fn build_request(
    api: Api,
    config: &DriverConfig,
    model: &str,
    index: u64,
    images: &[EncodedImage],
) -> (&'static str, Value) {
    let text = prompt(index, !images.is_empty());
    let sampling = json!({"temperature": 0, "max_new_tokens": config.max_new_tokens});
    match api {
        Api::Native => {
            let mut body = json!({"sampling_params": sampling});
            if images.is_empty() {
                body["text"] = Value::String(text);
            } else {
                // The native route does not apply the chat template: the model's image
                // placeholder must already be in the text, once per image.
                let placeholders = config.image_token.repeat(images.len());
                body["text"] = Value::String(format!("{placeholders}{text}"));
                let urls: Vec<Value> = images.iter().map(|i| Value::String(i.data_url())).collect();
                body["image_data"] = if urls.len() == 1 {
                    urls[0].clone()
                } else {
                    Value::Array(urls)
                };
            }
            ("/generate", body)
        }
        Api::OpenAi => {
            let content = if images.is_empty() {
                Value::String(text)
            } else {
                let mut parts: Vec<Value> = images
                    .iter()
                    .map(|i| json!({"type": "image_url", "image_url": {"url": i.data_url()}}))
                    .collect();
                parts.push(json!({"type": "text", "text": text}));
                Value::Array(parts)
            };
            let body = json!({
                "model": model,
                "messages": [{"role": "user", "content": content}],
                "max_tokens": config.max_new_tokens,
                "temperature": 0,
            });
            ("/v1/chat/completions", body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_unique() {
        assert_ne!(prompt(1, false), prompt(13, false));
        assert!(prompt(3, true).contains("image"));
    }

    #[test]
    fn native_text_body() {
        let (path, body) = build_request(Api::Native, &DriverConfig::default(), "m", 2, &[]);
        assert_eq!(path, "/generate");
        assert_eq!(body["sampling_params"]["max_new_tokens"], 32);
        assert!(
            body["text"]
                .as_str()
                .is_some_and(|t| t.contains("Request 2"))
        );
        assert!(body.get("image_data").is_none());
    }

    #[test]
    fn openai_text_body() {
        let (path, body) = build_request(Api::OpenAi, &DriverConfig::default(), "m", 0, &[]);
        assert_eq!(path, "/v1/chat/completions");
        assert_eq!(body["model"], "m");
        assert!(body["messages"][0]["content"].is_string());
    }
}
