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
    /// Resident bytes of each process of the server: `(pid, role, bytes)`, the server itself
    /// first (`tokenizer_manager`, as SGLang's launcher), then its children by role.
    pub processes: Vec<(u32, String, u64)>,
}

/// Resident bytes of `pid` from `/proc/PID/statm` (`None` when it is gone).
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * procfs::page_size())
}

/// The role label of a child titled like SGLang's processes (`sglang::scheduler_TP0` →
/// `scheduler_TP0`).
pub(crate) fn role_of(title: &str) -> String {
    title.strip_prefix("sglang::").unwrap_or(title).to_owned()
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
    // One series per process, labelled as a client library's process collector would be if
    // every process of the tree exported its own: `pid` and `role` tell them apart.
    let name = "process_resident_memory_bytes";
    if !m.processes.is_empty() {
        let _ = writeln!(
            out,
            "# HELP {name} Resident memory size in bytes.\n# TYPE {name} gauge"
        );
    }
    for (pid, role, bytes) in &m.processes {
        let _ = writeln!(out, "{name}{{pid=\"{pid}\",role=\"{role}\"}} {bytes}");
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
            processes: vec![
                (7, "tokenizer_manager".into(), 4096),
                (8, role_of("sglang::scheduler"), 8192),
            ],
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
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("process_resident_memory_bytes{pid=\"8\",role=\"scheduler\"} 8192\n"),
            "{text}"
        );
        assert!(resident_bytes(std::process::id()).is_some_and(|b| b > 0));
    }
}
