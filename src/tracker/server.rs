//! Server source: SGLang's own numbers (`/metrics`, `/get_server_info`) on the same timeline.
//!
//! They explain memory rather than measure it: a KV cache that fills (`server.token_usage`)
//! or requests that pile up (`server.num_queue_reqs`) look like growth in the GPU and host
//! series. Everything here is best effort: an endpoint that is not served is noted once and
//! retried rarely; errors are counted; the poller never panics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::watch;

use super::timeline::SourceStatus;
use super::{Reading, Store};

/// Name of this source in the timeline.
const SOURCE: &str = "server";
/// Per-request limit: a stuck server must not stall the timeline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an endpoint that is not served is left alone.
const ABSENT_RETRY: Duration = Duration::from_secs(30);
/// `/get_server_info` reports static allocations: read it on the first tick and every Nth after.
const INFO_EVERY: u64 = 10;
/// SGLang reports these in GiB (`get_available_gpu_memory` divides by `1 << 30`, the KV pool by
/// `1024**3`, both rounded to 2 decimals), although its log lines say "GB".
const GIB: f64 = (1u64 << 30) as f64;

const METRICS_ABSENT: &str =
    "/metrics not served (start SGLang with --enable-metrics to record token usage)";
const INFO_ABSENT: &str = "/get_server_info and /server_info not served (no weight/KV cache sizes)";

/// `server.<quantity>@rank:<i>`, e.g. `server.mem.kvcache@rank:0`.
fn server_rank(quantity: &str, rank: usize) -> String {
    format!("server.{quantity}@rank:{rank}")
}

/// How a gauge is folded over label sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fold {
    /// Counts add up over data-parallel ranks and models.
    Sum,
    /// Ratios are averaged (a sum of two 0.6 usages is not 1.2).
    Mean,
}

/// The SGLang gauges recorded: (name after the `sglang:`/`sglang_` prefix, our metric, fold).
/// Names from `python/sglang/srt/metrics/collector.py` (sgl-project/sglang, SchedulerMetricsCollector).
const GAUGES: &[(&str, &str, Fold)] = &[
    ("num_running_reqs", "server.num_running_reqs", Fold::Sum),
    ("num_queue_reqs", "server.num_queue_reqs", Fold::Sum),
    ("num_used_tokens", "server.num_used_tokens", Fold::Sum),
    (
        "max_total_num_tokens",
        "server.max_total_num_tokens",
        Fold::Sum,
    ),
    ("token_usage", "server.token_usage", Fold::Mean),
    ("cache_hit_rate", "server.cache_hit_rate", Fold::Mean),
];

/// Labels whose values repeat one engine's numbers: every tensor/pipeline/expert rank of one
/// engine may report the same gauge (with `--enable-metrics-for-all-schedulers`, and
/// `max_total_num_tokens` on every TP rank), so such series are merged by max, not summed.
const REPLICA_LABELS: &[&str] = &["tp_rank", "pp_rank", "moe_ep_rank", "attn_tp_rank"];

/// Rewrites `sglang:name` to `sglang_name` in sample, HELP and TYPE lines: prometheus-parse 0.2
/// matches names with `\w+`, which has no `:`, and would drop every SGLang sample silently.
fn normalize_line(line: &str) -> String {
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

/// Parses SGLang's `/metrics` (Prometheus text) into readings. Unknown or malformed lines are
/// skipped; a gauge absent from the text gives no reading.
fn parse_metrics(text: &str) -> Vec<Reading> {
    let lines = text.lines().map(|l| Ok(normalize_line(l)));
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for &(name, metric, fold) in GAUGES {
        // engine (labels without replica labels) -> max over its replicas.
        let mut engines: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
        for s in &scrape.samples {
            let bare = s.metric.strip_prefix("sglang_");
            if bare != Some(name) {
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
/// a difference of free memory and can dip below zero when other processes free memory).
fn gib_to_bytes(v: &serde_json::Value) -> Option<u64> {
    let g = v.as_f64()?;
    (g.is_finite() && g >= 0.0).then(|| (g * GIB).round() as u64)
}

/// Parses `/get_server_info` (or `/server_info`): one set of readings per entry of
/// `internal_states` (one per data-parallel rank). `weight` and `cuda_graph` are missing in some
/// versions; older builds without `internal_states` give `max_total_num_tokens` at the top level.
fn parse_server_info(json: &serde_json::Value) -> Vec<Reading> {
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

/// Whether an endpoint is worth asking this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// Not asked yet.
    Untried,
    /// Answered at least once.
    Working,
    /// Not served (404 or unreachable before any success): ask again after the instant.
    Absent(Instant),
}

impl Endpoint {
    fn due(self, now: Instant) -> bool {
        !matches!(self, Endpoint::Absent(at) if now < at)
    }
}

/// Outcome of one GET.
enum Fetch {
    Ok(String),
    /// 404: the route does not exist in this build or configuration.
    NotServed,
    /// Any other failure: status, timeout, connection.
    Failed,
}

struct Poller {
    base: String,
    client: reqwest::Client,
    store: Store,
    metrics: Endpoint,
    info: Endpoint,
    /// `/get_server_info`, or `/server_info` once the first was not served.
    info_path: &'static str,
    /// Next tick at which the server info is due.
    info_next: u64,
    tick: u64,
    available: bool,
    errors: u64,
    notes: Vec<&'static str>,
}

impl Poller {
    async fn get(&self, path: &str) -> Fetch {
        let url = format!("{}{path}", self.base);
        let resp = match self.client.get(url).timeout(REQUEST_TIMEOUT).send().await {
            Ok(r) => r,
            Err(_) => return Fetch::Failed,
        };
        match resp.status() {
            StatusCode::NOT_FOUND => Fetch::NotServed,
            s if s.is_success() => match resp.text().await {
                Ok(t) => Fetch::Ok(t),
                Err(_) => Fetch::Failed,
            },
            _ => Fetch::Failed,
        }
    }

    /// Writes the status; `set_source` replaces the entry, so the error count travels with it.
    fn publish(&self) {
        let note = (!self.notes.is_empty()).then(|| self.notes.join("; "));
        self.store.set_source(SourceStatus {
            name: SOURCE.into(),
            available: self.available,
            note,
            errors: self.errors,
        });
    }

    fn note(&mut self, note: &'static str) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
            self.publish();
        }
    }

    fn unnote(&mut self, note: &'static str) {
        if self.notes.contains(&note) {
            self.notes.retain(|n| *n != note);
            self.publish();
        }
    }

    fn error(&mut self) {
        self.errors += 1;
        self.store.source_errors(SOURCE, 1);
    }

    fn push(&mut self, readings: Vec<Reading>) {
        if readings.is_empty() {
            return;
        }
        self.store.push(self.store.now_us(), readings);
        if !self.available {
            self.available = true;
            self.publish();
        }
    }

    async fn poll_metrics(&mut self) {
        if !self.metrics.due(Instant::now()) {
            return;
        }
        match self.get("/metrics").await {
            Fetch::Ok(text) => {
                self.metrics = Endpoint::Working;
                self.unnote(METRICS_ABSENT);
                self.push(parse_metrics(&text));
            }
            Fetch::Failed if self.metrics == Endpoint::Working => self.error(),
            // 404, or no answer before any success: not served here; note once, ask rarely.
            Fetch::NotServed | Fetch::Failed => {
                self.metrics = Endpoint::Absent(Instant::now() + ABSENT_RETRY);
                self.note(METRICS_ABSENT);
            }
        }
    }

    async fn poll_info(&mut self) {
        if self.tick < self.info_next || !self.info.due(Instant::now()) {
            return;
        }
        let mut fetched = self.get(self.info_path).await;
        if matches!(fetched, Fetch::NotServed) && self.info_path == "/get_server_info" {
            // Newer builds renamed it; remember the one that answers.
            self.info_path = "/server_info";
            fetched = self.get(self.info_path).await;
        }
        match fetched {
            Fetch::Ok(text) => {
                self.info = Endpoint::Working;
                self.info_next = self.tick + INFO_EVERY;
                self.unnote(INFO_ABSENT);
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(json) => self.push(parse_server_info(&json)),
                    Err(_) => self.error(),
                }
            }
            Fetch::Failed if self.info == Endpoint::Working => {
                self.info_next = self.tick + INFO_EVERY;
                self.error();
            }
            Fetch::NotServed | Fetch::Failed => {
                // Ask both names again on the next attempt.
                self.info_path = "/get_server_info";
                self.info = Endpoint::Absent(Instant::now() + ABSENT_RETRY);
                self.note(INFO_ABSENT);
            }
        }
    }
}

/// Polls the server every `interval` until `stop` turns true (or its sender is dropped); pushes
/// readings into `store`; records the source status ("server").
pub(crate) async fn poll(
    base_url: String,
    client: reqwest::Client,
    store: Store,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut p = Poller {
        base: base_url.trim_end_matches('/').to_string(),
        client,
        store,
        metrics: Endpoint::Untried,
        info: Endpoint::Untried,
        info_path: "/get_server_info",
        info_next: 0,
        tick: 0,
        available: false,
        errors: 0,
        notes: Vec::new(),
    };
    p.publish();
    // A zero interval would spin.
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let work = async {
            ticker.tick().await;
            p.poll_metrics().await;
            p.poll_info().await;
            p.tick += 1;
        };
        tokio::select! {
            // Stop wins even in the middle of a request.
            biased;
            _ = stop.wait_for(|s| *s) => break,
            () = work => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode as AxumStatus;
    use axum::routing::get;

    use super::*;
    use crate::tracker::Unit;

    /// Shape of a real SGLang `/metrics` page: names and help texts from
    /// sgl-project/sglang `python/sglang/srt/metrics/collector.py`; labels (`engine_type`,
    /// `model_name`, `moe_ep_rank`, `pp_rank`, `tp_rank`) and one-line-per-TP-rank gauges as in
    /// SGLang scrapes quoted by 0glabs/0g-serving-broker (`inference/.../overload` tests) and
    /// redai-infra/Relax (`admission_coordinator` tests).
    const METRICS: &str = r#"# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{engine_type="unified",model_name="Qwen/Qwen2.5-VL-7B-Instruct",moe_ep_rank="0",pp_rank="0",tp_rank="0"} 3.0
# HELP sglang:num_used_tokens The number of used tokens.
# TYPE sglang:num_used_tokens gauge
sglang:num_used_tokens{engine_type="unified",model_name="Qwen/Qwen2.5-VL-7B-Instruct",moe_ep_rank="0",pp_rank="0",tp_rank="0"} 1234.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{engine_type="unified",model_name="Qwen/Qwen2.5-VL-7B-Instruct",moe_ep_rank="0",pp_rank="0",tp_rank="0"} 0.02
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{engine_type="unified",model_name="Qwen/Qwen2.5-VL-7B-Instruct",moe_ep_rank="0",pp_rank="0",tp_rank="0"} 1.0
# HELP sglang:cache_hit_rate The prefix cache hit rate.
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{engine_type="unified",model_name="Qwen/Qwen2.5-VL-7B-Instruct",moe_ep_rank="0",pp_rank="0",tp_rank="0"} 0.25
# HELP sglang:max_total_num_tokens Maximum total number of tokens in the KV cache pool.
# TYPE sglang:max_total_num_tokens gauge
sglang:max_total_num_tokens{engine_type="unified",model_name="Qwen/Qwen2.5-VL-7B-Instruct",moe_ep_rank="0",pp_rank="0",tp_rank="0"} 61702.0
sglang:max_total_num_tokens{engine_type="unified",model_name="Qwen/Qwen2.5-VL-7B-Instruct",moe_ep_rank="0",pp_rank="0",tp_rank="1"} 61702.0
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{le="0.1",model_name="Qwen/Qwen2.5-VL-7B-Instruct"} 5.0
sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="Qwen/Qwen2.5-VL-7B-Instruct"} 7.0
sglang:time_to_first_token_seconds_sum{model_name="Qwen/Qwen2.5-VL-7B-Instruct"} 0.9
sglang:time_to_first_token_seconds_count{model_name="Qwen/Qwen2.5-VL-7B-Instruct"} 7.0
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="Qwen/Qwen2.5-VL-7B-Instruct"} 5000.0
"#;

    /// Shape of SGLang's `/get_server_info`: server args at the top level, one `internal_states`
    /// entry per DP rank with `memory_usage` as built by `Scheduler.get_internal_state`
    /// (sgl-project/sglang `python/sglang/srt/managers/scheduler.py`), and `version`.
    fn server_info() -> serde_json::Value {
        serde_json::json!({
            "model_path": "Qwen/Qwen2.5-VL-7B-Instruct",
            "mem_fraction_static": 0.7,
            "tp_size": 1,
            "internal_states": [{
                "attention_backend": "fa3",
                "last_gen_throughput": 123.4,
                "memory_usage": {"weight": 15.52, "kvcache": 3.3, "cuda_graph": 0.35, "token_capacity": 61702}
            }, {
                "memory_usage": {"kvcache": 3.3, "token_capacity": 61702}
            }],
            "version": "0.5.5"
        })
    }

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

    #[derive(Default)]
    struct Hits {
        metrics: AtomicUsize,
        get_info: AtomicUsize,
        info: AtomicUsize,
    }

    /// A tiny server: `/metrics` (or 404), `/server_info` only (the newer name), counting hits.
    async fn serve(with_metrics: bool, hits: Arc<Hits>) -> String {
        let h1 = hits.clone();
        let h2 = hits.clone();
        let h3 = hits;
        let app = Router::new()
            .route(
                "/metrics",
                get(move || async move {
                    h1.metrics.fetch_add(1, Ordering::SeqCst);
                    if with_metrics {
                        (AxumStatus::OK, METRICS)
                    } else {
                        (AxumStatus::NOT_FOUND, "")
                    }
                }),
            )
            .route(
                "/get_server_info",
                get(move || async move {
                    h2.get_info.fetch_add(1, Ordering::SeqCst);
                    AxumStatus::NOT_FOUND
                }),
            )
            .route(
                "/server_info",
                get(move || async move {
                    h3.info.fetch_add(1, Ordering::SeqCst);
                    axum::Json(server_info())
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}/")
    }

    async fn run_for(base: String, store: Store, run: Duration) -> Duration {
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(poll(
            base,
            reqwest::Client::new(),
            store,
            Duration::from_millis(10),
            rx,
        ));
        tokio::time::sleep(run).await;
        let asked = Instant::now();
        tx.send(true).expect("poller alive");
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("poller stops promptly")
            .expect("poller does not panic");
        asked.elapsed()
    }

    #[tokio::test]
    async fn readings_land_in_the_store_and_info_is_read_rarely() {
        let hits = Arc::new(Hits::default());
        let base = serve(true, hits.clone()).await;
        let store = Store::new(10);
        let took = run_for(base, store.clone(), Duration::from_millis(300)).await;
        assert!(took < Duration::from_millis(500), "stop took {took:?}");
        let tl = store.snapshot();
        let running = &tl.series["server.num_running_reqs"];
        assert!(running.points.len() >= 5, "{}", running.points.len());
        assert!(running.points.iter().all(|p| p.v == 3.0));
        assert_eq!(tl.series["server.token_capacity@rank:0"].unit, Unit::Count);
        assert!(tl.series.contains_key("server.mem.kvcache@rank:1"));
        let status = tl
            .sources
            .iter()
            .find(|s| s.name == "server")
            .expect("status recorded");
        assert!(status.available);
        assert_eq!(status.note, None);
        assert_eq!(status.errors, 0);
        // The old name was tried once, then the new one remembered and read every 10th tick.
        assert_eq!(hits.get_info.load(Ordering::SeqCst), 1);
        let metrics = hits.metrics.load(Ordering::SeqCst);
        let info = hits.info.load(Ordering::SeqCst);
        assert!(
            info >= 1 && info <= metrics / INFO_EVERY as usize + 1,
            "info {info}, metrics {metrics}"
        );
    }

    #[tokio::test]
    async fn absent_metrics_are_noted_once_and_not_retried_every_tick() {
        let hits = Arc::new(Hits::default());
        let base = serve(false, hits.clone()).await;
        let store = Store::new(10);
        run_for(base, store.clone(), Duration::from_millis(200)).await;
        assert_eq!(hits.metrics.load(Ordering::SeqCst), 1);
        let tl = store.snapshot();
        let status = tl
            .sources
            .iter()
            .find(|s| s.name == "server")
            .expect("status recorded");
        assert_eq!(status.note.as_deref(), Some(METRICS_ABSENT));
        // Server info still answered.
        assert!(status.available);
        assert!(tl.series.keys().all(|k| !k.starts_with("server.num_")));
    }

    #[tokio::test]
    async fn unreachable_server_is_noted_and_stop_still_works() {
        // Bind then drop: a port nothing listens on.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let store = Store::new(10);
        let took = run_for(
            format!("http://{addr}"),
            store.clone(),
            Duration::from_millis(100),
        )
        .await;
        assert!(took < Duration::from_millis(500), "stop took {took:?}");
        let tl = store.snapshot();
        let status = tl
            .sources
            .iter()
            .find(|s| s.name == "server")
            .expect("status recorded");
        assert!(!status.available);
        assert!(
            status
                .note
                .as_deref()
                .is_some_and(|n| n.contains("--enable-metrics")),
            "{status:?}"
        );
        assert!(tl.series.is_empty());
    }
}
