//! CI self-tests for the VLM scenarios, `/dev/shm` and the server's own metrics, against the
//! reference server (which decodes every image for real).

mod common;

use common::{quick, run};
use sglang_memtest::analysis::Outcome;
use sglang_memtest::load::{ImageConfig, ImageFormat, ImageMode, ImageSource, Workload};
use sglang_memtest::report::RunOutcome;
use sglang_memtest::tracker::metric;

fn images(mode: ImageMode) -> Workload {
    Workload::VlmImage(ImageConfig {
        source: ImageSource::Generated {
            width: 128,
            height: 128,
            format: ImageFormat::Png,
        },
        mode,
        ..ImageConfig::default()
    })
}

#[test]
fn an_image_leak_is_caught_by_the_image_scenario_and_not_by_text_only() {
    let knobs = ["--leak-bytes-per-image=1048576"];
    let with_images = run(&quick("image_leak", &knobs, images(ImageMode::Unique)));
    assert_eq!(
        with_images.outcome,
        RunOutcome::Leak,
        "{}",
        with_images.summary()
    );
    assert!(
        with_images
            .request_records()
            .expect("the records file")
            .iter()
            .all(|r| r.images == 1)
    );

    let text_only = run(&quick("image_leak_text_only", &knobs, Workload::VlmText));
    text_only.assert_pass();
}

#[test]
fn repeated_images_hit_the_cache_and_hide_the_leak_that_unique_ones_show() {
    // A multimodal cache in front of a leaking preprocessor: the leak happens on a cache miss.
    let knobs = [
        "--leak-bytes-per-image=1048576",
        "--mm-cache-cap-bytes=8388608",
    ];
    let unique = run(&quick("mm_cache_unique", &knobs, images(ImageMode::Unique)));
    assert_eq!(unique.outcome, RunOutcome::Leak, "{}", unique.summary());
    let repeated = run(&quick(
        "mm_cache_repeated",
        &knobs,
        images(ImageMode::Repeated),
    ));
    repeated.assert_pass();
}

#[test]
fn images_from_the_fixtures_folder_are_sent_and_decoded() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images");
    let workload = Workload::VlmImage(ImageConfig {
        source: ImageSource::Files(vec![dir]),
        ..ImageConfig::default()
    });
    let r = run(&quick("fixture_images", &[], workload));
    r.assert_pass();
    assert_eq!(
        r.requests.as_ref().map(|s| s.failed),
        Some(0),
        "the server decoded every image"
    );
}

// `shm.bytes` counts the server's own segments only (held by its tree, or named for it), so
// these tests need no lock against anything else that uses `/dev/shm`.
#[test]
fn a_shm_leak_shows_in_the_shm_metric_fails_the_run_and_is_cleaned_up() {
    let r = run(&quick(
        "shm_leak",
        &["--shm-leak-bytes-per-request=262144"],
        Workload::Text,
    ));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let shm = r
        .verdict
        .as_ref()
        .and_then(|v| v.metric(metric::SHM_BYTES))
        .expect("shm analysed");
    assert_eq!(shm.outcome, Outcome::Leak);
    let slope = shm.slope.expect("slope").point;
    assert!(
        (200_000.0..330_000.0).contains(&slope),
        "slope {slope} should be about 256 KiB/request"
    );
    let shutdown = r.shutdown.as_ref().expect("shutdown report");
    assert!(
        shutdown
            .shm_removed
            .iter()
            .all(|n| n.starts_with("sgl_shm_reference_"))
    );
    assert!(
        shutdown.shm_removed.len() >= 60,
        "{} segments removed",
        shutdown.shm_removed.len()
    );
    let left = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("sgl_shm_reference_")
                })
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "leaked segments are removed after teardown");
}

#[test]
fn a_sparse_ring_buffer_counts_by_allocated_bytes() {
    // 512 MiB apparent, a few KiB written: must not read as 512 MiB of shared memory.
    let r = run(&quick(
        "shm_sparse",
        &["--shm-segment-bytes=536870912"],
        Workload::Text,
    ));
    r.assert_pass();
    let max = r
        .timeline
        .series
        .get(metric::SHM_BYTES)
        .map(|s| s.points.iter().map(|p| p.v).fold(0.0, f64::max));
    assert!(
        max.is_some_and(|m| m < 64.0 * 1024.0 * 1024.0),
        "shm.bytes max {max:?}"
    );
}

#[test]
fn server_metrics_land_on_the_timeline_or_are_noted_once() {
    let r = run(&quick(
        "server_metrics",
        &["--enable-metrics"],
        Workload::Text,
    ));
    r.assert_pass();
    assert!(
        r.timeline.series.contains_key("server.num_running_reqs"),
        "{:?}",
        r.timeline.series.keys().collect::<Vec<_>>()
    );
    assert!(
        r.timeline
            .series
            .keys()
            .any(|k| k.starts_with("server.token_capacity"))
    );

    let r = run(&quick("server_metrics_absent", &[], Workload::Text));
    r.assert_pass();
    let server = r
        .timeline
        .sources
        .iter()
        .find(|s| s.name == "server")
        .expect("server source status");
    assert!(
        server
            .note
            .as_deref()
            .is_some_and(|n| n.contains("/metrics")),
        "{server:?}"
    );
}
