//! The `text_model` scenario against a real SGLang: a text model receiving text requests.
//! `cargo test --test text_model -- --ignored` on a GPU runner, or on the CPU with
//! `eval "$(scripts/setup-sglang-cpu.sh --env)"` first; configured by `MEMTEST_*` (README).

use sglang_memtest::ScenarioConfig;

#[test]
#[ignore = "needs SGLang (a GPU runner, or scripts/setup-sglang-cpu.sh and MEMTEST_DEVICE=cpu)"]
fn text_model() -> sglang_memtest::Result<()> {
    let scenario = ScenarioConfig::text_model().env_overrides()?.build()?;
    scenario.run_blocking().into_result()?;
    Ok(())
}
