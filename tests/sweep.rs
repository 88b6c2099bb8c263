//! `sweep`: a leak proportional to pixels (the reference server's `--leak-bytes-per-pixel`)
//! swept over image size must be reported as proportional, with the right bytes per pixel.

use std::path::PathBuf;
use std::process::Command;

use sglang_memtest::campaign::sweep::{Dependence, Sweep};

const PER_PIXEL: f64 = 16.0;

/// `sweep --knob image-size` of the reference server (vlm-image, 40 requests per value) with one
/// planted leak and `extra` flags, into a fresh folder: the CLI's output (stdout and stderr) and
/// the sweep file read back.
fn sweep_image_size(
    name: &str,
    values: &str,
    leak: &str,
    extra: &[&str],
) -> (std::process::Output, String, Option<Sweep>) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("sweep/{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    let o = Command::new(env!("CARGO_BIN_EXE_sglang-memtest"))
        .args([
            "sweep",
            "--knob",
            "image-size",
            "--values",
            values,
            "--test-type",
            "vlm-image",
            "--reference",
            leak,
            "--num-requests",
            "40",
            "--request-interval",
            "0.01",
            "--sample-interval",
            "0.05",
            "--gpu",
            "off",
        ])
        .args(extra)
        .arg("--out-dir")
        .arg(&dir)
        .env("MEMTEST_LOG", "warn")
        .output()
        .expect("the CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let sweep = std::fs::read_to_string(dir.join("sweep_image_size.json"))
        .ok()
        .map(|json| serde_json::from_str(&json).expect("the sweep file parses"));
    (o, text, sweep)
}

#[test]
fn a_sweep_over_image_size_finds_a_leak_proportional_to_pixels() {
    let (o, text, s) = sweep_image_size(
        "per_pixel",
        "64x64,128x128,256x256",
        &format!("--reference-arg=--leak-bytes-per-pixel={PER_PIXEL}"),
        &[],
    );
    assert_eq!(o.status.code(), Some(3), "every run leaks: {text}");
    let s = s.expect("the sweep file");
    assert_eq!(s.points.len(), 3);
    assert_eq!(s.points[0].x, 64.0 * 64.0);
    assert!(s.points.iter().all(|p| p.slope.is_some()), "{s:?}");
    let fit = s.fit.expect("a fit");
    assert_eq!(s.dependence, Dependence::Proportional, "{}", s.finding);
    assert!(
        (fit.per_unit - PER_PIXEL).abs() < 0.2 * PER_PIXEL,
        "{} bytes per pixel, planted {PER_PIXEL}: {text}",
        fit.per_unit
    );
    assert!(fit.r2 > 0.95, "{}", fit.r2);
    assert!(
        s.finding.contains("proportional to image_size"),
        "{}",
        s.finding
    );
    assert!(
        text.contains("| image_size |"),
        "the table is printed: {text}"
    );
    for p in &s.plots {
        assert!(p.is_file(), "{}", p.display());
    }
    assert_eq!(s.plots.len(), 2, "PNG and SVG");
}

#[test]
fn a_sweep_of_a_knob_it_cannot_vary_says_which_it_can() {
    let o = Command::new(env!("CARGO_BIN_EXE_sglang-memtest"))
        .args(["sweep", "--knob", "seed", "--values", "1,2", "--reference"])
        .output()
        .expect("the CLI runs");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("image_size") && err.contains("`seed`"),
        "{err}"
    );
}

#[test]
fn a_leak_per_request_swept_over_image_size_is_called_constant() {
    let (_, text, s) = sweep_image_size(
        "per_request",
        "64x64,256x256",
        "--reference-arg=--leak-bytes-per-request=262144",
        &["--no-plot"],
    );
    let s = s.unwrap_or_else(|| panic!("no sweep file: {text}"));
    assert_eq!(s.dependence, Dependence::Constant, "{}", s.finding);
    assert!(s.finding.contains("a leak per request"), "{}", s.finding);
    assert!(s.plots.is_empty(), "--no-plot");
}
