//! The `vlm_image` scenario against a real SGLang: a VLM receiving a unique generated image per request.
//! `cargo test --test vlm_image -- --ignored` on a GPU runner, or on the CPU with
//! `eval "$(scripts/setup-sglang-cpu.sh --env)"` first; configured by `MEMTEST_*` (README).

use sglang_memtest::ScenarioConfig;

#[test]
#[ignore = "needs SGLang (a GPU runner, or scripts/setup-sglang-cpu.sh and MEMTEST_DEVICE=cpu)"]
fn vlm_image() -> sglang_memtest::Result<()> {
    let scenario = ScenarioConfig::vlm_image().env_overrides()?.build()?;
    scenario.run_blocking().into_result()?;
    Ok(())
}
