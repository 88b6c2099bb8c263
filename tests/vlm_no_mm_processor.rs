//! The `vlm_no_mm_processor` scenario against a real SGLang: a VLM receiving text only: no image reaches the multimodal processor.
//! `cargo test --test vlm_no_mm_processor -- --ignored` on a GPU runner, or on the CPU with
//! `eval "$(scripts/setup-sglang-cpu.sh --env)"` first; configured by `MEMTEST_*` (README).

use sglang_memtest::ScenarioConfig;

#[test]
#[ignore = "needs SGLang (a GPU runner, or scripts/setup-sglang-cpu.sh and MEMTEST_DEVICE=cpu)"]
fn vlm_no_mm_processor() -> sglang_memtest::Result<()> {
    let scenario = ScenarioConfig::vlm_no_mm_processor()
        .env_overrides()?
        .build()?;
    scenario.run_blocking().into_result()?;
    Ok(())
}
