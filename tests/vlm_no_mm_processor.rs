//! The `vlm_no_mm_processor` scenario against a real SGLang server: A VLM receiving text-only requests: no image reaches the multimodal processor (`MEMTEST_VLM_MODEL`, default `Qwen/Qwen2.5-VL-3B-Instruct`; `MEMTEST_LANGUAGE_MODEL_ONLY=1` adds `--language-model-only`).
//!
//! Needs an NVIDIA GPU and SGLang, so it is ignored by plain `cargo test`. Run it with
//! `cargo test --test vlm_no_mm_processor -- --ignored`; configure it with the `MEMTEST_*` variables listed in
//! the README. Without a GPU or without SGLang it fails with one sentence saying which.

use serial_test::serial;
use sglang_memtest::Scenario;

#[test]
#[ignore = "needs an NVIDIA GPU and SGLang: cargo test --test vlm_no_mm_processor -- --ignored"]
#[serial(sglang)]
fn vlm_no_mm_processor() {
    let scenario = match Scenario::vlm_no_mm_processor() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let report = rt.block_on(scenario.run());
    // Host and GPU metrics of the whole server tree, judged by the default (or MEMTEST_MAX_SLOPE)
    // thresholds; an error (no GPU, no SGLang, failed requests) fails here with its reason.
    report.assert_pass();
}
