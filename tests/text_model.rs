//! The `text_model` scenario against a real SGLang server: A text model receiving text requests (`MEMTEST_TEXT_MODEL`, default `meta-llama/Llama-3.2-1B-Instruct`; 100 requests 0.1 s apart).
//!
//! Needs an NVIDIA GPU and SGLang, so it is ignored by plain `cargo test`. Run it with
//! `cargo test --test text_model -- --ignored`; configure it with the `MEMTEST_*` variables listed in
//! the README. Without a GPU or without SGLang it fails with one sentence saying which.

use serial_test::serial;
use sglang_memtest::Scenario;

#[test]
#[ignore = "needs an NVIDIA GPU and SGLang: cargo test --test text_model -- --ignored"]
#[serial(sglang)]
fn text_model() {
    let scenario = match Scenario::text_model() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let report = rt.block_on(scenario.run());
    // Host and GPU metrics of the whole server tree, judged by the default (or MEMTEST_MAX_SLOPE)
    // thresholds; an error (no GPU, no SGLang, failed requests) fails here with its reason.
    report.assert_pass();
}
