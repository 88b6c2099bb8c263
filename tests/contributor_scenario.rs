//! A scenario of your own in a few lines: what the README shows a contributor. This one runs in
//! plain `cargo test` against the reference server; swap `.reference([...])` for
//! `.sglang("your/model")` (and `#[ignore]` it) to run it against SGLang.

use sglang_memtest::{ScenarioConfig, TestType};

#[test]
fn long_outputs_through_two_children_do_not_leak() -> sglang_memtest::Result<()> {
    let report = ScenarioConfig::new("long_outputs", TestType::Text)
        .reference(["--children=2"])
        .quick()
        .max_new_tokens(512)
        .out_dir(concat!(env!("CARGO_TARGET_TMPDIR"), "/contributor"))
        .env_overrides()?
        .build()?
        .run_blocking()
        .into_result()?;
    assert_eq!(report.requests.map(|r| r.failed), Some(0));
    Ok(())
}

#[test]
fn a_planted_leak_fails_the_same_test_with_the_report() {
    let failed = ScenarioConfig::new("long_outputs_leaking", TestType::Text)
        .reference(["--leak-bytes-per-request=1048576"])
        .quick()
        .out_dir(concat!(env!("CARGO_TARGET_TMPDIR"), "/contributor"))
        .build()
        .expect("a valid configuration")
        .run_blocking()
        .into_result()
        .expect_err("a 1 MiB/request leak must not pass");
    assert_eq!(failed.outcome(), sglang_memtest::report::RunOutcome::Leak);
    assert!(failed.to_string().contains("LEAK"), "{failed}");
}
