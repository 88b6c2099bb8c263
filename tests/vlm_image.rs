//! The `vlm_image` scenario against a real SGLang server: A VLM receiving image requests: unique generated images by default (`MEMTEST_VLM_MODEL`; 50 requests 0.2 s apart, as the seed tool's runner).
//!
//! Needs an NVIDIA GPU and SGLang, so it is ignored by plain `cargo test`. Run it with
//! `cargo test --test vlm_image -- --ignored`; configure it with the `MEMTEST_*` variables listed in
//! the README. Without a GPU or without SGLang it fails with one sentence saying which.

use serial_test::serial;
use sglang_memtest::Scenario;

#[test]
#[ignore = "needs an NVIDIA GPU and SGLang: cargo test --test vlm_image -- --ignored"]
#[serial(sglang)]
fn vlm_image() {
    let scenario = match Scenario::vlm_image() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let report = rt.block_on(scenario.run());
    // Host and GPU metrics of the whole server tree, judged by the default (or MEMTEST_MAX_SLOPE)
    // thresholds; an error (no GPU, no SGLang, failed requests) fails here with its reason.
    report.assert_pass();
}
