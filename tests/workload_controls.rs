//! CI self-tests of the request kinds, against the reference server: a leak planted on one error
//! path (rejected requests, aborts, client disconnects, streams) is caught by the workload that
//! reaches that path, attributed to that kind, and missed by the plain workload — so the kinds
//! are proven to reach the code they are named after. A clean server passes a mix of every kind,
//! with the rejections, aborts and disconnects counted as planned, not as failures.

mod common;

use common::{quick, run};
use rstest::rstest;
use sglang_memtest::analysis::Outcome;
use sglang_memtest::load::{Mix, Workload};
use sglang_memtest::report::{Report, RunOutcome};
use sglang_memtest::tracker::metric;

/// Bytes each planted error-path leak keeps per request that takes the path.
const PLANTED: &str = "1048576";
/// Tokens come 0.5 ms apart: a stream lasts long enough for an abort or a disconnect to land.
const TOKEN_DELAY: &str = "--token-delay-us=500";

fn tree(r: &Report) -> &sglang_memtest::analysis::MetricAnalysis {
    r.verdict
        .as_ref()
        .and_then(|v| v.metric(metric::HOST_RSS_TREE))
        .unwrap_or_else(|| panic!("no {} verdict\n{}", metric::HOST_RSS_TREE, r.summary()))
}

#[rstest]
#[case::rejected(
    "--leak-bytes-per-rejected",
    "reject-long-prompt=0.3",
    "reject-long-prompt"
)]
#[case::abort("--leak-bytes-per-abort", "abort=0.3", "abort")]
#[case::abort_queued("--leak-bytes-per-abort", "abort-queued=0.3", "abort-queued")]
#[case::disconnect("--leak-bytes-per-disconnect", "disconnect=0.3", "disconnect")]
#[case::stream("--leak-bytes-per-stream", "stream=0.3", "stream")]
fn an_error_path_leak_is_caught_only_by_its_workload(
    #[case] knob: &str,
    #[case] mix: &str,
    #[case] kind: &str,
) {
    let planted = format!("{knob}={PLANTED}");
    let knobs = [planted.as_str(), TOKEN_DELAY];
    let name = format!("path_{}", kind.replace('-', "_"));

    let plain = run(&quick(&format!("{name}_plain"), &knobs, Workload::Text));
    assert_eq!(plain.outcome, RunOutcome::Pass, "{}", plain.summary());
    assert_eq!(tree(&plain).outcome, Outcome::Pass);

    let mixed = run(&quick(&format!("{name}_mixed"), &knobs, Workload::Text).set("mix", mix));
    assert_eq!(mixed.outcome, RunOutcome::Leak, "{}", mixed.summary());
    let requests = mixed.requests.as_ref().expect("request counts");
    assert_eq!(requests.failed, 0, "{}", mixed.summary());
    let counts = &requests.by_kind[kind];
    assert!(counts.measured >= 10, "{counts:?}");
    let by_kind = tree(&mixed)
        .by_kind
        .as_ref()
        .unwrap_or_else(|| panic!("no per-kind split\n{}", mixed.summary()));
    assert_eq!(
        by_kind.follows,
        vec![kind.to_owned()],
        "{}",
        by_kind.finding
    );
    // The planted bytes per request of that kind lie in its interval (within allocator slack).
    let slope = &by_kind.kinds[0].slope;
    assert!(
        slope.ci.lo < 1.05 * 1048576.0 && slope.ci.hi > 0.9 * 1048576.0,
        "{slope:?}"
    );
    assert!(
        mixed.summary().contains(&format!("follows {kind}")),
        "{}",
        mixed.summary()
    );
}

#[test]
fn a_clean_server_passes_every_error_path_counted_as_planned() {
    let r = run(&quick("paths_clean", &[TOKEN_DELAY], Workload::Text).set("mix", "error-paths"));
    assert_eq!(r.outcome, RunOutcome::Pass, "{}", r.summary());
    let q = r.requests.as_ref().expect("request counts");
    assert_eq!(q.failed, 0, "{}", r.summary());
    assert!(
        q.rejected > 0 && q.aborted > 0 && q.disconnected > 0,
        "{q:?}"
    );
    let mix = Mix::error_paths();
    for kind in mix.kinds() {
        let c = &q.by_kind[kind.as_str()];
        assert!(c.sent > 0 && c.failed == 0, "{kind}: {c:?}");
        if kind.is_rejection() {
            assert_eq!(c.rejected, c.sent, "{kind}: {c:?}");
        }
    }
    let total: u64 = q.by_kind.values().map(|c| c.sent).sum();
    assert_eq!(total, q.sent);
    // The reference server saw the same: every stream it was told to abort or abandon.
    let summary = r.summary();
    assert!(summary.contains("rejected as expected"), "{summary}");
    assert!(summary.contains("dropped mid-stream"), "{summary}");
}

#[test]
fn image_kinds_reach_the_image_path() {
    // A leak per decoded image: three images per multi-image request, a new size each time for
    // mixed-sizes; both are caught and split by kind.
    let r = run(&quick(
        "paths_images",
        &["--leak-bytes-per-image=262144"],
        Workload::VlmImage(sglang_memtest::load::ImageConfig::default()),
    )
    .set("image_size", "64x64")
    .set(
        "mix",
        "multi-image=0.3,mixed-sizes=0.2,reject-bad-image=0.2",
    ));
    let q = r.requests.as_ref().expect("request counts");
    assert_eq!(q.failed, 0, "{}", r.summary());
    assert!(q.by_kind["reject-bad-image"].rejected > 0, "{q:?}");
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let split = tree(&r).by_kind.as_ref().expect("a per-kind split");
    let slope = |k: &str| {
        split
            .kinds
            .iter()
            .find(|s| s.kind == k)
            .map(|s| s.slope.point)
            .unwrap_or(f64::NAN)
    };
    // Three images leak three times what one does.
    let (multi, one) = (slope("multi-image"), slope("plain"));
    assert!(multi > 2.0 * one && multi > 500_000.0, "{}", split.finding);
}
