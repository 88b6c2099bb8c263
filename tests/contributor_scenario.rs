//! A scenario of your own in a few lines: what the README shows a contributor. This one runs in
//! plain `cargo test` against the reference server; swap `.reference([...])` for
//! `.sglang("your/model")` (and `#[ignore]` it) to run it against SGLang.

use sglang_memtest::{ScenarioConfig, Workload};

#[test]
fn long_outputs_through_two_children_do_not_leak() -> sglang_memtest::Result<()> {
    let report = ScenarioConfig::new("long_outputs", Workload::Text)
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
    let failed = ScenarioConfig::new("long_outputs_leaking", Workload::Text)
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

/// A contributor's own workload — a closure labelling its requests — without touching the
/// library: its kinds are counted, its rejections checked, and a leak on one of its kinds is
/// attributed to that kind.
#[test]
fn a_custom_workload_is_counted_checked_and_split_by_kind() {
    use serde_json::json;
    use sglang_memtest::load::{Expect, Request, RequestContext, Workload};

    let workload = Workload::custom("json_outputs", |ctx: &RequestContext<'_>| {
        if (ctx.index / 5) % 4 == 3 {
            let body = json!({"text": ctx.prompt(), "sampling_params": {"no_such_param": 1}});
            return Request::post("/generate", body)
                .kind("bad-param")
                .expect(Expect::Rejected);
        }
        Request::post(
            "/generate",
            json!({"text": ctx.prompt(), "sampling_params": {"max_new_tokens": 64, "json_schema": "{}"}}),
        )
        .kind("json")
    });
    let report = ScenarioConfig::custom("json_outputs", workload)
        .reference(["--leak-bytes-per-rejected=1048576"])
        .quick()
        .requests(80)
        .out_dir(concat!(env!("CARGO_TARGET_TMPDIR"), "/contributor"))
        .build()
        .expect("a valid configuration")
        .run_blocking();
    assert_eq!(report.test_type, "custom");
    assert_eq!(
        report.outcome,
        sglang_memtest::report::RunOutcome::Leak,
        "{}",
        report.summary()
    );
    let requests = report.requests.as_ref().expect("request counts");
    assert_eq!(requests.failed, 0, "{}", report.summary());
    assert_eq!(
        requests.by_kind["bad-param"].rejected,
        requests.by_kind["bad-param"].sent
    );
    assert!(requests.by_kind["json"].ok > 0);
    let tree = report
        .verdict
        .as_ref()
        .and_then(|v| v.metric(sglang_memtest::tracker::metric::HOST_RSS_TREE))
        .and_then(|m| m.by_kind.as_ref())
        .unwrap_or_else(|| panic!("no per-kind split\n{}", report.summary()));
    assert_eq!(tree.follows, ["bad-param"], "{}", tree.finding);
}

#[test]
fn a_mix_cannot_be_given_to_a_custom_workload() {
    use sglang_memtest::load::{Request, Workload};
    let workload = Workload::custom("x", |_: &_| Request::get("/health"));
    let err = ScenarioConfig::custom("x", workload)
        .reference_by_default()
        .set("mix", "stream=0.5")
        .build()
        .expect_err("a mix with a custom workload");
    assert!(
        err.to_string().contains("no mix with a custom workload"),
        "{err}"
    );
}
