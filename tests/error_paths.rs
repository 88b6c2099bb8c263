//! The `error_paths` scenario against a real SGLang: a text model receiving every error path a
//! request can take — streams, clients that disconnect mid-stream, aborts of running and queued
//! requests, prompts longer than the context, too many new tokens, an unknown parameter — mixed
//! with plain requests. The rejections are expected (their 4xx is checked), the growth is split
//! by request kind. `cargo test --test error_paths -- --ignored` on a GPU runner, or on the CPU
//! with `eval "$(scripts/setup-sglang-cpu.sh --env)"` first; configured by `MEMTEST_*` (README).

use sglang_memtest::ScenarioConfig;

#[test]
#[ignore = "needs SGLang (a GPU runner, or scripts/setup-sglang-cpu.sh and MEMTEST_DEVICE=cpu)"]
fn error_paths() -> sglang_memtest::Result<()> {
    let scenario = ScenarioConfig::error_paths().env_overrides()?.build()?;
    let report = scenario.run_blocking().into_result()?;
    let requests = report.requests.unwrap_or_default();
    assert_eq!(
        requests.failed, 0,
        "every request answered as its kind planned"
    );
    assert!(requests.rejected > 0 && requests.aborted > 0 && requests.disconnected > 0);
    Ok(())
}
