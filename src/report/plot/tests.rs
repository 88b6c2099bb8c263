//! Tests of the parent module.

use super::draw::SIZE;
use super::figure::{Figure, GIB, LEAK_RED, MAX_PROCESSES, MIB, decimate, headline};
use super::*;
use crate::analysis::{Outcome, RequestSeries, Thresholds, analyze};
use crate::tracker::{Phase, Point, ProcessInfo, Series, Unit};
use crate::util::signed_bytes;

fn series(points: impl Iterator<Item = (u64, f64)>) -> Series {
    Series {
        unit: Unit::Bytes,
        points: points
            .map(|(t_ms, v)| Point {
                t_us: t_ms * 1000,
                v,
            })
            .collect(),
    }
}

/// 120 s of samples every 500 ms: a tree of 8 processes, one leaking 1 MiB per request; fed
/// through the tracker's store like a live run.
fn timeline() -> Timeline {
    use crate::tracker::Reading;
    let store = crate::tracker::Store::new(500);
    let names = ["python3", "sglang::scheduler_TP0", "sglang::detokenizer"];
    for (k, pid) in (4320..4328u32).enumerate() {
        let name = names.get(k).copied().unwrap_or("worker").to_owned();
        let info = ProcessInfo {
            pid,
            ppid: 1,
            name,
            role: None,
            cmdline: String::new(),
            first_seen_ms: 0,
            last_seen_ms: 119_500,
        };
        store.saw_process(0, pid, || info);
    }
    let rss = |pid: u32, k: usize, t_ms: u64| {
        let base = (k as f64 + 1.0) * 300.0 * MIB;
        let slope = if pid == 4321 { MIB / 1000.0 } else { 0.0 };
        let wobble = ((t_ms / 500) % 7) as f64 * 0.3 * MIB;
        base + slope * t_ms as f64 + wobble
    };
    // Marks: warm-up at 5 s, 100 measured requests 0.9 s apart from 20 s, cooldown at 110 s.
    let mut marks: Vec<(u64, u64, Phase)> = vec![(5_000_000, 0, Phase::Warmup)];
    marks.extend((0..100u64).map(|i| ((20_000 + i * 900) * 1000, i, Phase::Measure)));
    marks.push((110_000_000, 0, Phase::Cooldown));
    let mut next = 0;
    for tick in 0..240u64 {
        let t_ms = tick * 500;
        let t_us = t_ms * 1000;
        while next < marks.len() && marks[next].0 <= t_us {
            let (t, r, p) = marks[next];
            store.mark(t, r, p);
            next += 1;
        }
        let mut readings: Vec<Reading> = (4320..4328u32)
            .enumerate()
            .map(|(k, pid)| Reading::bytes(format!("host.rss@pid:{pid}"), rss(pid, k, t_ms) as u64))
            .collect();
        let tree: u64 = readings.iter().map(|r| r.v as u64).sum();
        readings.push(Reading::bytes("host.rss@tree", tree));
        readings.push(Reading::bytes("gpu.used@dev:0", (60.0 * GIB) as u64));
        readings.push(Reading::bytes("gpu.proc@tree", (55.0 * GIB) as u64));
        let shm = 3.0 * MIB + if t_ms > 20_000 { MIB } else { 0.0 };
        readings.push(Reading::bytes("shm.bytes", shm as u64));
        store.push(t_us, readings);
    }
    store.snapshot()
}

fn verdict(tl: &Timeline) -> Verdict {
    let series: Vec<RequestSeries> = tl
        .per_request
        .iter()
        .map(|(metric, values)| RequestSeries {
            metric: metric.clone(),
            unit: crate::tracker::metric::Unit::Bytes,
            values: values.clone(),
            cooldown: Vec::new(),
            headroom: None,
            by_time: None,
            idle: None,
        })
        .collect();
    analyze(&series, &Thresholds::default())
}

fn decode(path: &Path) -> (png::OutputInfo, Vec<u8>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info, buf)
}

#[test]
fn writes_a_png_and_an_svg_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let tl = timeline();
    let v = verdict(&tl);
    let files = write_plots(
        &tl,
        Some(&v),
        "reference server: planted leak",
        dir.path(),
        "run",
    )
    .unwrap();
    assert_eq!(files.png, dir.path().join("run.png"));
    assert_eq!(files.svg, dir.path().join("run.svg"));

    let (info, pixels) = decode(&files.png);
    assert_eq!((info.width, info.height), SIZE);
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let dark = pixels
        .chunks(3)
        .filter(|p| p.iter().all(|&c| c < 128))
        .count();
    assert!(
        dark > 5_000,
        "only {dark} dark pixels: the plot looks blank"
    );

    let svg = std::fs::read_to_string(&files.svg).unwrap();
    assert!(svg.contains("<svg"));
    // Process names label the lines; only the 6 largest processes get one.
    assert!(svg.contains("sglang::scheduler_TP0 (4321)"), "{svg:.2000}");
    assert!(svg.contains("+2 smaller processes not shown"));
    assert!(
        !svg.contains("python3 (4320)"),
        "the smallest process is drawn"
    );
    assert!(svg.contains("warm-up (shaded)") && svg.contains("cooldown (shaded)"));
    for panel in ["host memory (RSS)", "GPU memory", "/dev/shm"] {
        assert!(svg.contains(panel), "missing {panel}");
    }
    // GPU panel above 4 GiB is shown in GiB; host panel in MiB.
    assert!(svg.contains("GiB") && svg.contains("MiB"));
    // No temp files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn empty_timeline_still_gives_a_plot_that_says_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/out");
    let files = write_plots(&Timeline::default(), None, "empty", &out, "empty").unwrap();
    let (info, pixels) = decode(&files.png);
    assert_eq!((info.width, info.height), SIZE);
    assert!(pixels.iter().any(|&c| c < 200), "blank png");
    let svg = std::fs::read_to_string(&files.svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("no data"));
}

#[test]
fn missing_gpu_and_shm_series_drop_their_panels() {
    let mut tl = timeline();
    tl.series.retain(|k, _| k.starts_with("host."));
    tl.series.get_mut("host.rss@tree").unwrap().points[3].v = f64::NAN;
    let fig = Figure::new(&tl, None, "t");
    assert_eq!(fig.panels.len(), 1);
    assert_eq!(fig.panels[0].lines.len(), 1 + MAX_PROCESSES);
    assert!(fig.panels[0].lines[0].bold);
    assert!(
        fig.panels[0].lines[0]
            .points
            .iter()
            .all(|p| p.1.is_finite())
    );
    assert!(fig.headline.is_none());
}

#[test]
fn headline_names_the_leaking_metric_and_its_slope() {
    let tl = timeline();
    let mut v = verdict(&tl);
    let m = v
        .metrics
        .iter_mut()
        .find(|m| m.metric == "host.rss@pid:4321")
        .unwrap();
    m.judged = true;
    m.outcome = Outcome::Leak;
    let slope = m.slope.as_mut().expect("a slope for 100 requests");
    slope.point = MIB;
    v.outcome = Outcome::Leak;
    v.metrics
        .sort_by_key(|m| (!m.judged, std::cmp::Reverse(m.outcome)));
    let ((text, color), details) = headline(&v, &tl);
    assert!(
        text.starts_with("LEAK: host.rss@pid:4321 +1.0 MiB/request"),
        "{text}"
    );
    assert_eq!(color, LEAK_RED);
    assert!(
        details[0].contains("(sglang::scheduler_TP0)"),
        "{details:?}"
    );

    v.outcome = Outcome::Pass;
    assert_eq!(headline(&v, &tl).0.0, "PASS");
    v.outcome = Outcome::Inconclusive;
    assert_eq!(headline(&v, &tl).0.0, "INCONCLUSIVE");
}

#[test]
fn bad_stem_is_an_error_not_a_stray_file() {
    let dir = tempfile::tempdir().unwrap();
    for stem in ["", "../x", "a/b", ".."] {
        let err = write_plots(&Timeline::default(), None, "t", dir.path(), stem).unwrap_err();
        assert!(
            matches!(err, PlotError::InvalidStem { .. }),
            "{stem}: {err}"
        );
    }
}

#[test]
fn decimation_keeps_the_envelope() {
    let points: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64, (i % 100) as f64)).collect();
    let mut with_spike = points.clone();
    with_spike[5_123].1 = 1e6;
    let out = decimate(with_spike, 1000);
    assert!(out.len() <= 1000);
    assert!(out.iter().any(|p| p.1 == 1e6));
    assert!(out.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(decimate(points[..10].to_vec(), 1000).len(), 10);
}

#[test]
fn bytes_are_shown_with_sign_and_unit() {
    assert_eq!(signed_bytes(MIB), "+1.0 MiB");
    assert_eq!(signed_bytes(-1536.0), "-1.5 KiB");
    assert_eq!(signed_bytes(2.5 * GIB), "+2.50 GiB");
    assert_eq!(signed_bytes(12.0), "+12 B");
}

/// Writes the example figure to `target/memtest/plot-example.{png,svg}` to look at.
#[test]
#[ignore = "writes an example for a person to look at"]
fn write_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/memtest");
    let tl = timeline();
    let v = verdict(&tl);
    let files = write_plots(
        &tl,
        Some(&v),
        "reference server: planted leak",
        &dir,
        "plot-example",
    );
    println!("{:?}", files.unwrap());
    write_plots(&Timeline::default(), None, "empty run", &dir, "plot-empty").unwrap();
    // An 8-GPU host: more lines than a legend column holds.
    let mut crowded = tl.clone();
    for i in 0..8u32 {
        let used = series((0..240u64).map(|t| (t * 500, (40.0 + f64::from(i)) * GIB)));
        crowded.series.insert(format!("gpu.used@dev:{i}"), used);
        let proc = series((0..240u64).map(|t| (t * 500, (2.0 + f64::from(i)) * GIB)));
        crowded
            .series
            .insert(format!("gpu.proc@pid:{}", 4320 + i), proc);
    }
    let mut pass = v.clone();
    pass.outcome = Outcome::Pass;
    let title = "a very long title ".repeat(12);
    write_plots(&crowded, Some(&pass), &title, &dir, "plot-crowded").unwrap();
}
