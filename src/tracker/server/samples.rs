//! Shapes of real SGLang pages, for the tests of the parsers and the poller.

/// Shape of a real SGLang `/metrics` page: names and help texts from
/// sgl-project/sglang `python/sglang/srt/metrics/collector.py`; labels (`engine_type`,
/// `model_name`, `moe_ep_rank`, `pp_rank`, `tp_rank`) and one-line-per-TP-rank gauges as in
/// SGLang scrapes quoted by 0glabs/0g-serving-broker (`inference/.../overload` tests) and
/// redai-infra/Relax (`admission_coordinator` tests).
pub(super) const METRICS: &str = r#"# HELP sglang:num_running_reqs The number of running requests.
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
pub(super) fn server_info() -> serde_json::Value {
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
