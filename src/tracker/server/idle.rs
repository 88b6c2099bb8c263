//! The server's own accounting at idle: KV tokens held and requests running, read once before the
//! load and again once it is over (see [`crate::analysis::logical`] for the judgement).
//!
//! A KV pool preallocated at startup (SGLang's `--mem-fraction-static`, vLLM's
//! `--gpu-memory-utilization`) does not grow when KV slots are never given back: no memory metric
//! sees that leak, only the engine's own counters do. Sources, first that answers:
//!
//! 1. Each engine's JSON route ([`Engine::idle_route`](crate::engine::Engine::idle_route)):
//!    SGLang's `GET /v1/loads`.
//! 2. `GET /metrics`, read by the first engine whose gauges it has
//!    ([`Engine::idle_from_metrics`](crate::engine::Engine::idle_from_metrics)): SGLang's, else
//!    vLLM's.
//!
//! The engines' files say what each reads; the types are `engine::idle`'s, named here too.

use std::time::Duration;

use reqwest::StatusCode;

use super::parse::normalize_line;
use crate::engine::ENGINES;
pub use crate::engine::idle::{Expect, IdleReading, IdleValue};
use crate::engine::idle::{IdleRoute, MetricsPage};
pub use crate::engine::sglang::{KV_TOKENS, LOADS, RUNNING_REQS};
pub use crate::engine::vllm::{KV_CACHE_USAGE, REQUESTS_RUNNING};

/// Per-request timeout of a probe: a stuck server must not stall the run, but a busy one may be
/// slow (a real SGLang on two loaded cores took over 2 s to answer `/v1/loads` at times).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of `/v1/loads` that failed without an answer (timeout, connection) before `/metrics`.
const LOADS_TRIES: u32 = 3;

/// The accounting of a `/metrics` page, as the first engine of [`ENGINES`] whose gauges it has
/// reads it; `None` when none has.
pub(crate) fn parse_metrics(text: &str) -> Option<IdleReading> {
    let gauges = super::parse::parse_metrics(text);
    let gauge = |m: &str| gauges.iter().find(|r| r.metric == m).map(|r| r.v);
    let lines = text.lines().map(|l| Ok(normalize_line(l)));
    let scrape =
        prometheus_parse::Scrape::parse(lines).unwrap_or_else(|_| prometheus_parse::Scrape {
            docs: Default::default(),
            samples: Vec::new(),
        });
    let page = MetricsPage {
        gauge: &gauge,
        scrape: &scrape,
    };
    ENGINES.iter().find_map(|e| e.idle_from_metrics(&page))
}

/// The engines' JSON routes, in [`ENGINES`]' order.
fn routes() -> impl Iterator<Item = IdleRoute> {
    ENGINES.iter().filter_map(|e| e.idle_route())
}

/// Outcome of one GET.
enum Got {
    Body(String),
    Status(StatusCode),
    Failed(String),
}

async fn get(client: &reqwest::Client, url: &str) -> Got {
    match client.get(url).timeout(PROBE_TIMEOUT).send().await {
        Ok(r) if r.status().is_success() => match r.text().await {
            Ok(t) => Got::Body(t),
            Err(e) => Got::Failed(e.to_string()),
        },
        Ok(r) => Got::Status(r.status()),
        Err(e) => Got::Failed(crate::util::error_chain(&e)),
    }
}

fn said(path: &str, got: &Got, why: Option<&str>) -> String {
    match (got, why) {
        (_, Some(why)) => format!("{path}: {why}"),
        (Got::Status(s), None) => format!("{path} answered HTTP {}", s.as_u16()),
        (Got::Failed(e), None) => format!("{path} failed ({e})"),
        (Got::Body(_), None) => format!("{path} had no accounting gauges"),
    }
}

/// `route`, parsed; `Err` says what it answered. An attempt that got no answer at all
/// (timeout, connection) is tried again, up to `tries` in all.
async fn read_route(
    client: &reqwest::Client,
    base: &str,
    route: IdleRoute,
    tries: u32,
) -> Result<IdleReading, String> {
    let path = route.path;
    let mut got = get(client, &format!("{base}{path}")).await;
    for _ in 1..tries {
        if !matches!(got, Got::Failed(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        got = get(client, &format!("{base}{path}")).await;
    }
    let why = match &got {
        Got::Body(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) => match (route.parse)(&json) {
                Ok(r) => return Ok(r),
                Err(why) => Some(why.0),
            },
            Err(e) => Some(format!("{path} is not JSON ({e}): {}", snippet(text))),
        },
        _ => None,
    };
    Err(said(path, &got, why.as_deref()))
}

/// `/metrics`, parsed; `Err` says what it answered.
async fn read_metrics(client: &reqwest::Client, base: &str) -> Result<IdleReading, String> {
    let got = get(client, &format!("{base}/metrics")).await;
    if let Got::Body(text) = &got
        && let Some(r) = parse_metrics(text)
    {
        return Ok(r);
    }
    let why = matches!(got, Got::Body(_)).then(|| {
        let (names, hints): (Vec<&str>, Vec<&str>) = ENGINES
            .iter()
            .filter_map(|e| Some((e.display_name(), e.idle_metrics_hint()?)))
            .unzip();
        format!(
            "no {} KV/running-request gauges ({})",
            names.join(" or "),
            hints.join(", ")
        )
    });
    Err(said("/metrics", &got, why.as_deref()))
}

/// The start of a body, for an error message.
fn snippet(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Why the server's accounting could not be read: what each endpoint answered, in one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAvailable(pub String);

/// Reads the server's accounting: the engines' JSON routes (`/v1/loads`), else `/metrics`. With
/// the reading comes, when it is not from a route, what the routes answered.
///
/// # Errors
/// Why neither gave it, in one sentence naming both answers.
pub async fn probe(
    client: &reqwest::Client,
    base_url: &str,
) -> Result<(IdleReading, Option<String>), NotAvailable> {
    let base = base_url.trim_end_matches('/');
    let mut answers = Vec::new();
    for route in routes() {
        match read_route(client, base, route, LOADS_TRIES).await {
            Ok(r) => return Ok((r, None)),
            Err(why) => answers.push(why),
        }
    }
    let loads = (!answers.is_empty()).then(|| answers.join("; "));
    match read_metrics(client, base).await {
        Ok(r) => Ok((r, loads)),
        Err(metrics) => Err(NotAvailable(match loads {
            Some(loads) => format!("{loads}; {metrics}"),
            None => metrics,
        })),
    }
}

/// Reads the accounting again from the source an earlier reading came from (`reading.source`),
/// so that values of one source are never judged against another's.
///
/// # Errors
/// What the source answered, or that it now serves another engine's gauges.
pub async fn probe_again(
    client: &reqwest::Client,
    base_url: &str,
    source: &str,
) -> Result<IdleReading, NotAvailable> {
    let base = base_url.trim_end_matches('/');
    let r = if let Some(route) = routes().find(|r| r.path == source) {
        read_route(client, base, route, 1).await
    } else {
        read_metrics(client, base).await
    }
    .map_err(NotAvailable)?;
    if r.source == source {
        Ok(r)
    } else {
        Err(NotAvailable(format!(
            "the accounting now comes from {}, not {source}",
            r.source
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sglang::parse_loads;
    use crate::tracker::Unit;

    /// `/v1/loads` of a real SGLang 0.5.23 (tiny-llama on the CPU engine) at idle, trimmed of the
    /// sections the probe does not read.
    const LOADS: &str = r#"{"timestamp": "2026-12-01T13:52:36.929595+00:00", "version": "0.5.23",
        "accelerator": null, "num_accelerators": 1, "loads": [{"timestamp": 1796133156.7493567,
        "dp_rank": 0, "num_running_reqs": 0, "num_waiting_reqs": 0, "num_waiting_uncached_tokens": 0,
        "num_used_tokens": 0, "num_total_tokens": 0, "num_active_tokens": 0,
        "num_prealloc_ready_tokens": 0, "max_total_num_tokens": 65536, "max_running_requests": 4096,
        "token_usage": 0.0, "gen_throughput": 0.0, "cache_hit_rate": 0.0, "utilization": 0.0,
        "memory": {"weight_gb": 0.004, "kv_cache_gb": 0.031, "graph_gb": 0.0, "token_capacity": 65536},
        "queues": {"waiting": 0, "grammar": 0, "paused": 0, "retracted": 0, "prealloc_ready": 0}}]}"#;

    #[test]
    fn loads_of_a_real_server_parse() {
        let json: serde_json::Value = serde_json::from_str(LOADS).expect("JSON");
        let r = parse_loads(&json).expect("parsed");
        assert_eq!(r.source, "/v1/loads");
        let kv = r.get(KV_TOKENS).expect("kv");
        assert_eq!(
            (kv.value, kv.capacity, kv.expect),
            (0.0, Some(65536.0), Expect::Baseline)
        );
        let running = r.get(RUNNING_REQS).expect("running");
        assert_eq!((running.value, running.expect), (0.0, Expect::Zero));
    }

    #[test]
    fn loads_sum_over_dp_ranks_and_refuse_other_shapes() {
        let two = serde_json::json!({"loads": [
            {"num_used_tokens": 10, "num_running_reqs": 1, "max_total_num_tokens": 100},
            {"num_used_tokens": 5, "num_running_reqs": 0, "max_total_num_tokens": 100},
        ]});
        let r = parse_loads(&two).expect("parsed");
        assert_eq!(
            r.get(KV_TOKENS).map(|v| (v.value, v.capacity)),
            Some((15.0, Some(200.0)))
        );
        assert_eq!(r.get(RUNNING_REQS).map(|v| v.value), Some(1.0));
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"loads": []}),
            serde_json::json!({"loads": [{"num_running_reqs": 0}]}),
            serde_json::json!({"loads": [{"num_used_tokens": "x", "num_running_reqs": 0}]}),
            serde_json::json!({"loads": [{"num_used_tokens": -1, "num_running_reqs": 0}]}),
            serde_json::json!([1, 2]),
        ] {
            assert!(parse_loads(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sglang_metrics_are_the_fallback() {
        let r = parse_metrics(crate::tracker::server::samples::METRICS).expect("parsed");
        assert_eq!(r.source, "/metrics (sglang)");
        assert_eq!(
            r.get(KV_TOKENS).map(|v| (v.value, v.capacity)),
            Some((1234.0, Some(61702.0)))
        );
        assert_eq!(r.get(RUNNING_REQS).map(|v| v.value), Some(3.0));
    }

    /// vLLM 0.32's names and labels as its CPU build serves them (docs/vllm-cpu-facts.md).
    #[test]
    fn vllm_metrics_give_usage_and_running_with_blocks() {
        let text = r#"# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="/m/tiny-llama"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="/m/tiny-llama"} 0.0012
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="128",cache_dtype="auto",enable_prefix_caching="True",engine="0",num_gpu_blocks="16384"} 1.0
"#;
        let r = parse_metrics(text).expect("parsed");
        assert_eq!(r.source, "/metrics (vllm)");
        let usage = r.get(KV_CACHE_USAGE).expect("usage");
        assert_eq!(
            (usage.unit, usage.value, usage.capacity),
            (Unit::Ratio, 0.0012, Some(16384.0))
        );
        assert_eq!(r.get(REQUESTS_RUNNING).map(|v| v.value), Some(0.0));
    }

    #[test]
    fn pages_without_accounting_give_nothing() {
        assert!(parse_metrics("").is_none());
        assert!(parse_metrics("process_resident_memory_bytes 1e9\n").is_none());
        assert!(parse_metrics("vllm:num_requests_running 0\n").is_none());
        assert!(parse_metrics("sglang:num_used_tokens 3\n").is_none());
        assert!(parse_metrics("<html>\u{0}{{{").is_none());
    }
}
