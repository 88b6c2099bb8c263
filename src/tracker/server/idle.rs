//! The server's own accounting at idle: KV tokens held and requests running, read once before the
//! load and again once it is over (see [`crate::analysis::logical`] for the judgement).
//!
//! A KV pool preallocated at startup (SGLang's `--mem-fraction-static`, vLLM's
//! `--gpu-memory-utilization`) does not grow when KV slots are never given back: no memory metric
//! sees that leak, only the engine's own counters do. Sources, first that answers:
//!
//! 1. SGLang's `GET /v1/loads`: `loads[].num_used_tokens`, `num_running_reqs`,
//!    `max_total_num_tokens` per data-parallel rank, summed. Fresh at idle: the scheduler
//!    publishes its load snapshot whenever it goes idle.
//! 2. `GET /metrics`: SGLang's `sglang:num_used_tokens` / `sglang:num_running_reqs` (updated when
//!    the scheduler logs or goes idle), or vLLM's `vllm:kv_cache_usage_perc` (a fraction of the
//!    KV blocks, despite its name) / `vllm:num_requests_running`, with `vllm:cache_config_info`'s
//!    `num_gpu_blocks` label as the capacity.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::parse::normalize_line;
use crate::tracker::Unit;

/// SGLang's KV tokens in use (`num_used_tokens`).
pub const KV_TOKENS: &str = "server.kv_tokens@idle";
/// SGLang's running requests (`num_running_reqs`).
pub const RUNNING_REQS: &str = "server.running_reqs@idle";
/// vLLM's share of KV blocks in use (`vllm:kv_cache_usage_perc`, 0..1).
pub const KV_CACHE_USAGE: &str = "server.kv_cache_usage@idle";
/// vLLM's running requests (`vllm:num_requests_running`).
pub const REQUESTS_RUNNING: &str = "server.requests_running@idle";

/// Per-request timeout of a probe: a stuck server must not stall the run, but a busy one may be
/// slow (a real SGLang on two loaded cores took over 2 s to answer `/v1/loads` at times).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of `/v1/loads` that failed without an answer (timeout, connection) before `/metrics`.
const LOADS_TRIES: u32 = 3;

/// What an idle value must return to once the load is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Its value before the load (KV in use: a radix cache's evictable tokens are not counted).
    Baseline,
    /// Zero (requests running with none in flight).
    Zero,
}

/// One quantity of the server's accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleValue {
    /// `server.kv_tokens@idle`, `server.running_reqs@idle`, `server.kv_cache_usage@idle`,
    /// `server.requests_running@idle`.
    pub metric: String,
    /// `count` (tokens, requests) or `ratio` (vLLM's KV usage).
    pub unit: Unit,
    /// The value read.
    pub value: f64,
    /// What it is out of: the KV pool's tokens (SGLang) or blocks (vLLM), when the server says.
    #[serde(default)]
    pub capacity: Option<f64>,
    /// What it must return to.
    pub expect: Expect,
}

/// One reading of the server's accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleReading {
    /// `/v1/loads`, `/metrics (sglang)` or `/metrics (vllm)`.
    pub source: String,
    /// The quantities read.
    pub values: Vec<IdleValue>,
}

impl IdleReading {
    /// The value of `metric`.
    pub fn get(&self, metric: &str) -> Option<&IdleValue> {
        self.values.iter().find(|v| v.metric == metric)
    }
}

fn value(metric: &str, unit: Unit, value: f64, capacity: Option<f64>, expect: Expect) -> IdleValue {
    IdleValue {
        metric: metric.to_owned(),
        unit,
        value,
        capacity,
        expect,
    }
}

/// SGLang's `/v1/loads` body: `{"loads": [{"num_used_tokens": …, "num_running_reqs": …,
/// "max_total_num_tokens": …}, …]}`, one entry per data-parallel rank.
///
/// # Errors
/// A sentence saying what is missing.
pub(crate) fn parse_loads(json: &serde_json::Value) -> Result<IdleReading, String> {
    let loads = json
        .get("loads")
        .and_then(serde_json::Value::as_array)
        .ok_or("/v1/loads has no `loads` list")?;
    if loads.is_empty() {
        return Err("/v1/loads lists no scheduler".into());
    }
    let sum = |key: &str| -> Option<f64> {
        loads
            .iter()
            .map(|l| l.get(key).and_then(serde_json::Value::as_f64))
            .sum::<Option<f64>>()
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let used = sum("num_used_tokens").ok_or("/v1/loads has no numeric `num_used_tokens`")?;
    let running = sum("num_running_reqs").ok_or("/v1/loads has no numeric `num_running_reqs`")?;
    let capacity = sum("max_total_num_tokens");
    Ok(IdleReading {
        source: LOADS.into(),
        values: vec![
            value(KV_TOKENS, Unit::Count, used, capacity, Expect::Baseline),
            value(RUNNING_REQS, Unit::Count, running, None, Expect::Zero),
        ],
    })
}

/// The accounting gauges of a `/metrics` page: SGLang's, else vLLM's; `None` when it has
/// neither pair.
pub(crate) fn parse_metrics(text: &str) -> Option<IdleReading> {
    let sglang = super::parse::parse_metrics(text);
    let get = |m: &str| sglang.iter().find(|r| r.metric == m).map(|r| r.v);
    if let (Some(used), Some(running)) = (
        get("server.num_used_tokens"),
        get("server.num_running_reqs"),
    ) {
        return Some(IdleReading {
            source: "/metrics (sglang)".into(),
            values: vec![
                value(
                    KV_TOKENS,
                    Unit::Count,
                    used,
                    get("server.max_total_num_tokens"),
                    Expect::Baseline,
                ),
                value(RUNNING_REQS, Unit::Count, running, None, Expect::Zero),
            ],
        });
    }
    let vllm = VllmGauges::parse(text);
    let (usage, running) = (vllm.usage?, vllm.running?);
    Some(IdleReading {
        source: "/metrics (vllm)".into(),
        values: vec![
            value(
                KV_CACHE_USAGE,
                Unit::Ratio,
                usage,
                vllm.blocks,
                Expect::Baseline,
            ),
            value(REQUESTS_RUNNING, Unit::Count, running, None, Expect::Zero),
        ],
    })
}

/// vLLM's gauges, one series per engine (`engine="0"`, …): usage averaged, requests summed.
#[derive(Debug, Default)]
struct VllmGauges {
    usage: Option<f64>,
    running: Option<f64>,
    blocks: Option<f64>,
}

impl VllmGauges {
    fn parse(text: &str) -> Self {
        let lines = text.lines().map(|l| Ok(normalize_line(l)));
        let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
            return Self::default();
        };
        let mut usage: BTreeMap<String, f64> = BTreeMap::new();
        let mut running: BTreeMap<String, f64> = BTreeMap::new();
        let mut blocks: BTreeMap<String, f64> = BTreeMap::new();
        for s in &scrape.samples {
            let v = match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v)
                | prometheus_parse::Value::Counter(v) => v,
                _ => continue,
            };
            let engine = s.labels.get("engine").unwrap_or("").to_owned();
            match s.metric.as_str() {
                // `gpu_cache_usage_perc` before vLLM 0.10.
                "vllm_kv_cache_usage_perc" | "vllm_gpu_cache_usage_perc" if v.is_finite() => {
                    usage.insert(engine, v);
                }
                "vllm_num_requests_running" if v.is_finite() => {
                    running.insert(engine, v);
                }
                "vllm_cache_config_info" => {
                    if let Some(n) = s
                        .labels
                        .get("num_gpu_blocks")
                        .and_then(|b| b.parse::<f64>().ok())
                    {
                        blocks.insert(engine, n);
                    }
                }
                _ => {}
            }
        }
        let mean = |m: &BTreeMap<String, f64>| {
            (!m.is_empty()).then(|| m.values().sum::<f64>() / m.len() as f64)
        };
        let total = |m: &BTreeMap<String, f64>| (!m.is_empty()).then(|| m.values().sum::<f64>());
        Self {
            usage: mean(&usage),
            running: total(&running),
            blocks: total(&blocks),
        }
    }
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

/// Source name of `/v1/loads` readings.
pub const LOADS: &str = "/v1/loads";

/// `/v1/loads`, parsed; `Err` says what it answered. An attempt that got no answer at all
/// (timeout, connection) is tried again, up to `tries` in all.
async fn read_loads(
    client: &reqwest::Client,
    base: &str,
    tries: u32,
) -> Result<IdleReading, String> {
    let mut got = get(client, &format!("{base}{LOADS}")).await;
    for _ in 1..tries {
        if !matches!(got, Got::Failed(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        got = get(client, &format!("{base}{LOADS}")).await;
    }
    let why = match &got {
        Got::Body(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) => match parse_loads(&json) {
                Ok(r) => return Ok(r),
                Err(why) => Some(why),
            },
            Err(e) => Some(format!("{LOADS} is not JSON ({e}): {}", snippet(text))),
        },
        _ => None,
    };
    Err(said(LOADS, &got, why.as_deref()))
}

/// `/metrics`, parsed; `Err` says what it answered.
async fn read_metrics(client: &reqwest::Client, base: &str) -> Result<IdleReading, String> {
    let got = get(client, &format!("{base}/metrics")).await;
    if let Got::Body(text) = &got
        && let Some(r) = parse_metrics(text)
    {
        return Ok(r);
    }
    let why = matches!(got, Got::Body(_)).then_some(
        "no SGLang or vLLM KV/running-request gauges (sglang:num_used_tokens, vllm:kv_cache_usage_perc)",
    );
    Err(said("/metrics", &got, why))
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

/// Reads the server's accounting: `/v1/loads`, else `/metrics`. With the reading comes, when it
/// is not from `/v1/loads`, what `/v1/loads` answered.
///
/// # Errors
/// Why neither gave it, in one sentence naming both answers.
pub async fn probe(
    client: &reqwest::Client,
    base_url: &str,
) -> Result<(IdleReading, Option<String>), NotAvailable> {
    let base = base_url.trim_end_matches('/');
    let loads = match read_loads(client, base, LOADS_TRIES).await {
        Ok(r) => return Ok((r, None)),
        Err(why) => why,
    };
    match read_metrics(client, base).await {
        Ok(r) => Ok((r, Some(loads))),
        Err(metrics) => Err(NotAvailable(format!("{loads}; {metrics}"))),
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
    let r = if source == LOADS {
        read_loads(client, base, 1).await
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
