//! `/metrics` in Prometheus text format with SGLang's metric names and `model_name` label.

use std::fmt::Write;

/// The values `/metrics` shows, read from the server state at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MetricsSnapshot {
    /// Requests being answered now.
    pub running_reqs: u64,
    /// Tokens held by running requests.
    pub used_tokens: u64,
    /// `used_tokens / max_total_num_tokens`.
    pub token_usage: f64,
    /// Image-cache hit rate (the reference server's only prefix-like cache).
    pub cache_hit_rate: f64,
    /// Requests waiting (always 0: requests are never queued).
    pub queue_reqs: u64,
    /// Token capacity.
    pub max_total_num_tokens: u64,
    /// Prompt tokens over all requests.
    pub prompt_tokens_total: u64,
    /// Generated tokens over all requests.
    pub generation_tokens_total: u64,
    /// Finished generate requests.
    pub requests_total: u64,
}

/// Renders the snapshot. Counters carry their `_total` name in the TYPE line too, which every
/// Prometheus text parser accepts.
pub(crate) fn render(model_name: &str, m: &MetricsSnapshot) -> String {
    let gauges: [(&str, &str, f64); 6] = [
        (
            "sglang:num_running_reqs",
            "The number of running requests.",
            m.running_reqs as f64,
        ),
        (
            "sglang:num_used_tokens",
            "The number of used tokens.",
            m.used_tokens as f64,
        ),
        ("sglang:token_usage", "The token usage.", m.token_usage),
        (
            "sglang:cache_hit_rate",
            "The prefix cache hit rate.",
            m.cache_hit_rate,
        ),
        (
            "sglang:num_queue_reqs",
            "The number of requests in the waiting queue.",
            m.queue_reqs as f64,
        ),
        (
            "sglang:max_total_num_tokens",
            "Maximum total number of tokens.",
            m.max_total_num_tokens as f64,
        ),
    ];
    let counters: [(&str, &str, u64); 3] = [
        (
            "sglang:prompt_tokens_total",
            "Number of prefill tokens processed.",
            m.prompt_tokens_total,
        ),
        (
            "sglang:generation_tokens_total",
            "Number of generation tokens processed.",
            m.generation_tokens_total,
        ),
        (
            "sglang:num_requests_total",
            "Number of requests processed.",
            m.requests_total,
        ),
    ];
    let label = model_name.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    // Writing to a String cannot fail.
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        let _ = writeln!(out, "{name}{{model_name=\"{label}\"}} {value}");
    }
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let _ = writeln!(out, "{name}{{model_name=\"{label}\"}} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parses_with_sglang_names() {
        let snapshot = MetricsSnapshot {
            running_reqs: 1,
            used_tokens: 12,
            token_usage: 12.0 / 4096.0,
            cache_hit_rate: 0.5,
            queue_reqs: 0,
            max_total_num_tokens: 4096,
            prompt_tokens_total: 30,
            generation_tokens_total: 40,
            requests_total: 5,
        };
        let text = render("reference", &snapshot);
        // prometheus-parse 0.2 matches names with `\w+` and so cannot read SGLang's `sglang:`
        // names at all: check the exposition format by hand instead.
        let value = |name: &str| -> f64 {
            let mut typed = false;
            let mut found = None;
            for line in text.lines() {
                if line == format!("# TYPE {name} gauge")
                    || line == format!("# TYPE {name} counter")
                {
                    typed = true;
                }
                if let Some(rest) =
                    line.strip_prefix(&format!("{name}{{model_name=\"reference\"}} "))
                {
                    found = rest.parse().ok();
                }
            }
            assert!(typed, "{name} has no TYPE line in\n{text}");
            found.unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        };
        assert_eq!(value("sglang:num_running_reqs"), 1.0);
        assert_eq!(value("sglang:num_used_tokens"), 12.0);
        assert_eq!(value("sglang:cache_hit_rate"), 0.5);
        assert_eq!(value("sglang:num_queue_reqs"), 0.0);
        assert_eq!(value("sglang:max_total_num_tokens"), 4096.0);
        assert_eq!(value("sglang:prompt_tokens_total"), 30.0);
        assert_eq!(value("sglang:generation_tokens_total"), 40.0);
        assert_eq!(value("sglang:num_requests_total"), 5.0);
        assert!((value("sglang:token_usage") - 12.0 / 4096.0).abs() < 1e-12);
    }
}
