//! The engines' `/metrics` (each engine's gauges are in its file under `engine/`) and SGLang's
//! `/get_server_info`, parsed into readings.

use std::collections::BTreeMap;

use crate::engine::{ENGINES, Fold};
use crate::tracker::Reading;
use crate::util::GIB;

/// `server.<quantity>@rank:<i>`, e.g. `server.mem.kvcache@rank:0`.
fn server_rank(quantity: &str, rank: usize) -> String {
    format!("server.{quantity}@rank:{rank}")
}

/// Labels whose values repeat one engine's numbers: every tensor/pipeline/expert rank of one
/// engine may report the same gauge (with `--enable-metrics-for-all-schedulers`, and
/// `max_total_num_tokens` on every TP rank), so such series are merged by max, not summed.
const REPLICA_LABELS: &[&str] = &["tp_rank", "pp_rank", "moe_ep_rank", "attn_tp_rank"];

/// Rewrites `sglang:name` to `sglang_name` (and `vllm:name` to `vllm_name`) in sample, HELP and
/// TYPE lines: prometheus-parse 0.2 matches names with `\w+`, which has no `:`, and would drop
/// every SGLang and vLLM sample silently.
pub(super) fn normalize_line(line: &str) -> String {
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed.strip_prefix('#') {
        // `# HELP name doc` / `# TYPE name kind`: only the third token is a name.
        let mut parts = rest.trim_start().splitn(2, char::is_whitespace);
        let (kw, tail) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if kw == "HELP" || kw == "TYPE" {
            let tail = tail.trim_start();
            let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
            return format!("# {kw} {}{}", tail[..end].replace(':', "_"), &tail[end..]);
        }
        return line.to_string();
    }
    let end = trimmed
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(trimmed.len());
    format!("{}{}", trimmed[..end].replace(':', "_"), &trimmed[end..])
}

/// Parses SGLang's or vLLM's `/metrics` (Prometheus text) into readings. Unknown or malformed lines are
/// skipped; a gauge absent from the text gives no reading.
pub(super) fn parse_metrics(text: &str) -> Vec<Reading> {
    let lines = text.lines().map(|l| Ok(normalize_line(l)));
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // Each engine's gauges (`engine::sglang`, `engine::vllm`), in the registry's order.
    for g in ENGINES.iter().flat_map(|e| e.gauges()) {
        let (name, metric, fold) = (g.prometheus, g.metric, g.fold);
        // engine (labels without replica labels) -> max over its replicas.
        let mut engines: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
        for s in &scrape.samples {
            if s.metric != name {
                continue;
            }
            let v = match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v)
                | prometheus_parse::Value::Counter(v) => v,
                _ => continue,
            };
            if !v.is_finite() {
                continue;
            }
            let mut key: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|(k, _)| !REPLICA_LABELS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            key.sort();
            engines
                .entry(key)
                .and_modify(|m| *m = m.max(v))
                .or_insert(v);
        }
        if engines.is_empty() {
            continue;
        }
        let sum: f64 = engines.values().sum();
        out.push(match fold {
            Fold::Sum => Reading::count(metric, sum.max(0.0).round() as u64),
            Fold::Mean => Reading::ratio(metric, sum / engines.len() as f64),
        });
    }
    out
}

/// GiB as SGLang reports them, to bytes; `None` for negative or non-numbers (the weight figure is
/// a difference of free memory and can dip below zero when other processes free memory). SGLang
/// reports these in GiB (`get_available_gpu_memory` divides by `1 << 30`, the KV pool by
/// `1024**3`, both rounded to 2 decimals), although its log lines say "GB".
fn gib_to_bytes(v: &serde_json::Value) -> Option<u64> {
    let g = v.as_f64()?;
    (g.is_finite() && g >= 0.0).then(|| (g * GIB).round() as u64)
}

/// Parses `/get_server_info` (or `/server_info`): one set of readings per entry of
/// `internal_states` (one per data-parallel rank). `weight` and `cuda_graph` are missing in some
/// versions; older builds without `internal_states` give `max_total_num_tokens` at the top level.
pub(super) fn parse_server_info(json: &serde_json::Value) -> Vec<Reading> {
    let mut out = Vec::new();
    let Some(states) = json.get("internal_states").and_then(|s| s.as_array()) else {
        if let Some(n) = json.get("max_total_num_tokens").and_then(|v| v.as_u64()) {
            out.push(Reading::count(server_rank("token_capacity", 0), n));
        }
        return out;
    };
    for (rank, state) in states.iter().enumerate() {
        let Some(mem) = state.get("memory_usage") else {
            continue;
        };
        for key in ["weight", "kvcache", "cuda_graph"] {
            if let Some(b) = mem.get(key).and_then(gib_to_bytes) {
                out.push(Reading::bytes(server_rank(&format!("mem.{key}"), rank), b));
            }
        }
        let cap = mem
            .get("token_capacity")
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)));
        if let Some(n) = cap {
            out.push(Reading::count(server_rank("token_capacity", rank), n));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::Unit;
    use crate::tracker::server::samples::{METRICS, server_info};

    fn find<'a>(rs: &'a [Reading], metric: &str) -> Option<&'a Reading> {
        rs.iter().find(|r| r.metric == metric)
    }

    #[test]
    fn metrics_parse_sglang_names_with_colons() {
        let rs = parse_metrics(METRICS);
        let v = |m: &str| find(&rs, m).map(|r| (r.unit, r.v));
        assert_eq!(v("server.num_running_reqs"), Some((Unit::Count, 3.0)));
        assert_eq!(v("server.num_queue_reqs"), Some((Unit::Count, 1.0)));
        assert_eq!(v("server.num_used_tokens"), Some((Unit::Count, 1234.0)));
        assert_eq!(v("server.token_usage"), Some((Unit::Ratio, 0.02)));
        assert_eq!(v("server.cache_hit_rate"), Some((Unit::Ratio, 0.25)));
        // Two TP ranks of one engine report the same pool: not doubled.
        assert_eq!(
            v("server.max_total_num_tokens"),
            Some((Unit::Count, 61702.0))
        );
        assert_eq!(rs.len(), 6, "{rs:?}");
    }

    #[test]
    fn metrics_accept_underscore_prefix_and_fold_over_dp_ranks() {
        let text = "sglang_num_running_reqs{dp_rank=\"0\",tp_rank=\"0\"} 2\n\
                    sglang_num_running_reqs{dp_rank=\"1\",tp_rank=\"0\"} 5\n\
                    sglang_token_usage{dp_rank=\"0\"} 0.2\n\
                    sglang_token_usage{dp_rank=\"1\"} 0.4\n";
        let rs = parse_metrics(text);
        assert_eq!(find(&rs, "server.num_running_reqs").map(|r| r.v), Some(7.0));
        let usage = find(&rs, "server.token_usage")
            .map(|r| r.v)
            .unwrap_or(f64::NAN);
        assert!((usage - 0.3).abs() < 1e-12, "{usage}");
    }

    #[test]
    fn metrics_read_vllm_names() {
        let text = "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
                    # TYPE vllm:num_requests_running gauge\n\
                    vllm:num_requests_running{engine=\"0\",model_name=\"/m/vl\"} 1.0\n\
                    vllm:num_requests_waiting{engine=\"0\",model_name=\"/m/vl\"} 0.0\n\
                    # TYPE vllm:kv_cache_usage_perc gauge\n\
                    vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"/m/vl\"} 0.25\n\
                    # HELP vllm:mm_cache_queries Multi-modal cache queries.\n\
                    # TYPE vllm:mm_cache_queries counter\n\
                    vllm:mm_cache_queries_total{engine=\"0\",model_name=\"/m/vl\"} 10.0\n\
                    # TYPE vllm:mm_cache_queries_created gauge\n\
                    vllm:mm_cache_queries_created{engine=\"0\",model_name=\"/m/vl\"} 1.76e9\n\
                    vllm:mm_cache_hits_total{engine=\"0\",model_name=\"/m/vl\"} 5.0\n\
                    vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"/m/vl\"} 260.0\n\
                    vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"/m/vl\"} 0.0\n";
        let rs = parse_metrics(text);
        let v = |m: &str| find(&rs, m).map(|r| (r.unit, r.v));
        assert_eq!(v("server.num_running_reqs"), Some((Unit::Count, 1.0)));
        assert_eq!(v("server.num_queue_reqs"), Some((Unit::Count, 0.0)));
        assert_eq!(v("server.token_usage"), Some((Unit::Ratio, 0.25)));
        assert_eq!(v("server.mm_cache_queries"), Some((Unit::Count, 10.0)));
        assert_eq!(v("server.mm_cache_hits"), Some((Unit::Count, 5.0)));
        assert_eq!(v("server.prefix_cache_queries"), Some((Unit::Count, 260.0)));
        assert_eq!(v("server.prefix_cache_hits"), Some((Unit::Count, 0.0)));
        assert_eq!(rs.len(), 7, "{rs:?}");
    }

    #[test]
    fn metrics_skip_garbage_and_missing_gauges() {
        assert!(parse_metrics("").is_empty());
        assert!(parse_metrics("<html>not found</html>\n\u{0}\u{ff}{{{").is_empty());
        let rs = parse_metrics("sglang:num_running_reqs NaN\nsglang:num_queue_reqs{a=\"b\"} x\n");
        assert!(rs.is_empty(), "{rs:?}");
        // Only what is present.
        let rs = parse_metrics("sglang:num_queue_reqs 4\n");
        assert_eq!(rs, vec![Reading::count("server.num_queue_reqs", 4)]);
    }

    #[test]
    fn server_info_memory_is_gib_to_bytes_per_rank() {
        let rs = parse_server_info(&server_info());
        let v = |m: &str| find(&rs, m).map(|r| (r.unit, r.v));
        assert_eq!(
            v("server.mem.weight@rank:0"),
            Some((Unit::Bytes, (15.52f64 * GIB).round()))
        );
        assert_eq!(
            v("server.mem.kvcache@rank:0"),
            Some((Unit::Bytes, (3.3f64 * GIB).round()))
        );
        assert_eq!(
            v("server.mem.cuda_graph@rank:0"),
            Some((Unit::Bytes, (0.35f64 * GIB).round()))
        );
        assert_eq!(
            v("server.token_capacity@rank:0"),
            Some((Unit::Count, 61702.0))
        );
        // Older builds: no weight/cuda_graph.
        assert_eq!(v("server.mem.weight@rank:1"), None);
        assert_eq!(
            v("server.mem.kvcache@rank:1"),
            Some((Unit::Bytes, (3.3f64 * GIB).round()))
        );
        assert_eq!(rs.len(), 6);
    }

    #[test]
    fn server_info_tolerates_other_shapes() {
        assert!(parse_server_info(&serde_json::json!({})).is_empty());
        assert!(parse_server_info(&serde_json::json!([1, 2])).is_empty());
        let odd = serde_json::json!({"internal_states": [{"memory_usage": {"weight": -0.01, "kvcache": "x"}}, 5]});
        assert!(parse_server_info(&odd).is_empty());
        let old = serde_json::json!({"max_total_num_tokens": 4096, "version": "0.4.0"});
        assert_eq!(
            parse_server_info(&old),
            vec![Reading::count("server.token_capacity@rank:0", 4096)]
        );
    }

    #[test]
    fn normalize_touches_only_names() {
        assert_eq!(
            normalize_line("sglang:a{x=\"a:b\"} 1"),
            "sglang_a{x=\"a:b\"} 1"
        );
        assert_eq!(
            normalize_line("# TYPE sglang:a gauge"),
            "# TYPE sglang_a gauge"
        );
        assert_eq!(
            normalize_line("# HELP sglang:a The a: thing."),
            "# HELP sglang_a The a: thing."
        );
        assert_eq!(normalize_line("# a comment: yes"), "# a comment: yes");
    }
}
