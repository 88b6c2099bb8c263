//! Tests of the parent module.

use super::draw::WIDTH;
use super::figure::{
    Emphasis, FLAT_BYTES, Figure, GIB, LEAK_RED, MAX_PROCESSES, MIB, ShadeKind, decimate, headline,
};
use super::*;
use crate::analysis::{Outcome, RequestSeries, Thresholds, analyze};
use crate::report::roles::process_keys;
use crate::tracker::{Phase, Point, ProcessInfo, Reading, Series, Store, Unit};
use crate::util::signed_bytes;

/// A process of a synthetic run: its PID, title, role and RSS after measured request `i`
/// (negative `i`: the warm-up).
struct Proc {
    pid: u32,
    name: &'static str,
    role: Option<&'static str>,
    rss: Box<dyn Fn(i64) -> f64>,
}

/// A run fed through the tracker's store like a live one: baseline 1 s, 5 warm-up requests,
/// `n` measured requests 0.1 s apart, a reading after every completion and every 50 ms, a
/// cooldown of 1 s. `extra` adds readings of other metrics at measured request `i`.
fn run(procs: &[Proc], n: i64, extra: impl Fn(i64) -> Vec<Reading>) -> Timeline {
    let store = Store::new(50);
    for p in procs {
        let info = ProcessInfo {
            pid: p.pid,
            ppid: 1,
            name: p.name.to_owned(),
            role: p.role.map(str::to_owned),
            cmdline: String::new(),
            first_seen_ms: 0,
            last_seen_ms: 0,
        };
        store.saw_process(0, p.pid, || info);
    }
    let sample = |t_us: u64, i: i64| {
        let mut readings: Vec<Reading> = procs
            .iter()
            .map(|p| Reading::bytes(format!("host.rss@pid:{}", p.pid), (p.rss)(i) as u64))
            .collect();
        let tree: u64 = readings.iter().map(|r| r.v as u64).sum();
        readings.push(Reading::bytes("host.rss@tree", tree));
        readings.extend(extra(i));
        store.push(t_us, readings);
    };
    let mut t = 0u64;
    store.mark(t, 0, Phase::Baseline);
    while t < 1_000_000 {
        sample(t, -6);
        t += 50_000;
    }
    for (phase, from, to) in [(Phase::Warmup, -5, 0), (Phase::Measure, 0, n)] {
        for i in from..to {
            t += 100_000;
            store.mark(t, (i - from) as u64, phase);
            sample(t + 10, i);
        }
    }
    t += 50_000;
    store.mark(t, 0, Phase::Cooldown);
    let end = t + 1_000_000;
    while t < end {
        sample(t, n - 1);
        t += 50_000;
    }
    store.snapshot()
}

fn verdict(tl: &Timeline) -> Verdict {
    let series: Vec<RequestSeries> = tl
        .per_request
        .iter()
        .map(|(metric, values)| RequestSeries {
            metric: metric.clone(),
            unit: Unit::Bytes,
            values: values.clone(),
            cooldown: Vec::new(),
            headroom: None,
            by_time: None,
            idle: None,
        })
        .collect();
    analyze(&series, &Thresholds::default())
}

/// A tree of 8 processes, one (`sglang::scheduler_TP0`, pid 4321) leaking 1 MiB per request;
/// GPU memory and `/dev/shm` constant during the measured requests.
fn leaking_tree() -> Timeline {
    let names = ["python3", "sglang::scheduler_TP0", "sglang::detokenizer"];
    let procs: Vec<Proc> = (4320..4328u32)
        .enumerate()
        .map(|(k, pid)| Proc {
            pid,
            name: names.get(k).copied().unwrap_or("worker"),
            role: None,
            rss: Box::new(move |i| {
                let base = (k as f64 + 1.0) * 300.0 * MIB;
                let leak = if pid == 4321 {
                    MIB * i.max(0) as f64
                } else {
                    0.0
                };
                base + leak + (i.rem_euclid(7)) as f64 * 4096.0
            }),
        })
        .collect();
    run(&procs, 100, |i| {
        vec![
            Reading::bytes("gpu.used@dev:0", (60.0 * GIB) as u64),
            Reading::bytes("gpu.proc@tree", (55.0 * GIB) as u64),
            Reading::bytes(
                "shm.bytes",
                (3.0 * MIB + if i >= -3 { MIB } else { 0.0 }) as u64,
            ),
        ]
    })
}

/// The case of the issue: a 2 GiB clean `scheduler` with a 256 MiB allocator step at request
/// 40, and a 300 MiB `tokenizer_manager` leaking 1 MiB per request.
fn small_leak_beside_a_big_process() -> Timeline {
    let procs = vec![
        Proc {
            pid: 1160,
            name: "python3",
            role: Some("tokenizer_manager"),
            rss: Box::new(|i| 300.0 * MIB + MIB * i.max(0) as f64),
        },
        Proc {
            pid: 1201,
            name: "sglang::scheduler_TP0",
            role: Some("scheduler"),
            rss: Box::new(|i| 2.0 * GIB + if i >= 40 { 256.0 * MIB } else { 0.0 }),
        },
        Proc {
            pid: 1202,
            name: "sglang::detokenizer",
            role: Some("detokenizer"),
            rss: Box::new(|_| 150.0 * MIB),
        },
    ];
    run(&procs, 100, |_| Vec::new())
}

fn decode(path: &Path) -> (png::OutputInfo, Vec<u8>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info, buf)
}

fn count_pixels(pixels: &[u8], f: impl Fn(u8, u8, u8) -> bool) -> usize {
    pixels.chunks(3).filter(|p| f(p[0], p[1], p[2])).count()
}

#[test]
fn writes_a_png_and_an_svg_of_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let tl = leaking_tree();
    let v = verdict(&tl);
    let input = PlotInput::new(&tl, Some(&v), "reference server: planted leak");
    let files = write_plots(&input, dir.path(), "run").unwrap();
    assert_eq!(files.png, dir.path().join("run.png"));
    assert_eq!(files.svg, dir.path().join("run.svg"));

    let (info, pixels) = decode(&files.png);
    assert_eq!(info.width, WIDTH);
    assert!(info.height > 600, "{}", info.height);
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let dark = count_pixels(&pixels, |r, g, b| r < 128 && g < 128 && b < 128);
    assert!(
        dark > 5_000,
        "only {dark} dark pixels: the plot looks blank"
    );

    let svg = std::fs::read_to_string(&files.svg).unwrap();
    assert!(svg.contains("<svg"));
    // Named by role (here the title: no role was recognised), the PID only beside it; only
    // the 6 largest processes get a line.
    assert!(
        svg.contains("sglang::scheduler_TP0 (pid 4321)"),
        "{svg:.2000}"
    );
    assert!(svg.contains("+2 smaller processes not shown"));
    assert!(
        !svg.contains("python3 (pid 4320)"),
        "the smallest process is drawn"
    );
    assert!(svg.contains("warm-up: 5 requests") && svg.contains("cooldown: "));
    assert!(svg.contains("LEAK: host.rss@sglang::scheduler_TP0 +1.0 MiB/request"));
    // Constant GPU memory and /dev/shm are one line each, not a panel.
    assert!(svg.contains("host memory (RSS): growth"));
    assert!(
        svg.contains("not drawn — GPU memory: flat"),
        "GPU panel not collapsed"
    );
    assert!(
        svg.contains("not drawn — /dev/shm: flat"),
        "shm panel not collapsed"
    );
    assert!(svg.contains("measured request (100 in"));
    // No temp files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn a_small_leak_beside_a_big_process_fills_its_own_panel() {
    let tl = small_leak_beside_a_big_process();
    let v = verdict(&tl);
    assert_eq!(v.outcome, Outcome::Leak, "{:?}", v.reasons);
    let fig = Figure::new(&PlotInput::new(&tl, Some(&v), "t"));

    let (head, _) = fig.headline.as_ref().unwrap();
    assert!(
        head.starts_with("LEAK: host.rss@tokenizer_manager +1.0 MiB/request ["),
        "{head}"
    );
    assert!(!head.contains("1160"), "the headline names a PID: {head}");

    // The first focus panel is the leak, on a scale where its growth fills the panel.
    let focus = &fig.focus[0];
    assert_eq!(focus.title, "host.rss@tokenizer_manager (pid 1160)");
    assert_eq!(focus.outcome, Outcome::Leak);
    let (lo, hi) = focus.y_range();
    let end = focus.points.iter().rfind(|p| p.0 <= 99.0).unwrap().1;
    assert!((end - 99.0 * MIB).abs() < 2.0 * MIB, "{end}");
    assert!(
        end / (hi - lo) > 0.6,
        "the leak fills {:.0} % of its panel",
        100.0 * end / (hi - lo)
    );
    // The trend follows the leak, its interval is tight, the peak is the last value.
    let t = focus.trend.unwrap();
    assert!((t.slope - MIB).abs() < 0.05 * MIB && t.lo <= t.slope && t.slope <= t.hi);
    assert!((t.at(99.0, t.slope) - 99.0 * MIB).abs() < 2.0 * MIB);
    assert!((focus.peak.unwrap() - end).abs() < MIB);
    let summary: Vec<&str> = focus.summary.iter().map(|r| r.0.as_str()).collect();
    for row in [
        "initial",
        "final",
        "peak",
        "growth, judged",
        "slope",
        "95 % interval",
        "verdict",
    ] {
        assert!(summary.contains(&row), "{summary:?}");
    }

    // In the overview, every line is growth: the 2 GiB scheduler is flat at 0 until its step;
    // the leak is drawn in red and listed first after the tree.
    let host = &fig.panels[0];
    let leak = host
        .lines
        .iter()
        .find(|l| l.label == "tokenizer_manager (pid 1160)")
        .unwrap();
    assert_eq!(leak.emphasis, Emphasis::Leak);
    assert_eq!(leak.color, LEAK_RED);
    let big = host
        .lines
        .iter()
        .find(|l| l.label == "scheduler (pid 1201)")
        .unwrap();
    assert_eq!(big.emphasis, Emphasis::Plain);
    assert!(
        big.detail.starts_with("2.00 GiB, +256.0 MiB"),
        "{}",
        big.detail
    );
    assert!(
        big.points
            .iter()
            .filter(|p| (0.0..39.0).contains(&p.0))
            .all(|p| p.1.abs() < 1.0)
    );

    // At a glance: the red of the leak and its trend covers a good share of the picture.
    let dir = tempfile::tempdir().unwrap();
    let files = write_plots(&PlotInput::new(&tl, Some(&v), "t"), dir.path(), "p").unwrap();
    let (_, pixels) = decode(&files.png);
    let red = count_pixels(&pixels, |r, g, b| r > 170 && g < 80 && b < 80);
    assert!(red > 3_000, "only {red} red pixels");
}

#[test]
fn a_pass_with_a_plateau_focuses_the_plateau_and_collapses_flat_panels() {
    // A cache of 120 MiB filling at 1 MiB per request in EngineCore, then flat.
    let procs = vec![
        Proc {
            pid: 330,
            name: "python3",
            role: Some("api_server"),
            rss: Box::new(|_| 1.1 * GIB),
        },
        Proc {
            pid: 406,
            name: "VLLM::EngineCore",
            role: Some("EngineCore"),
            rss: Box::new(|i| {
                1.2 * GIB + MIB * i.clamp(0, 120) as f64 + (i.rem_euclid(5)) as f64 * 8192.0
            }),
        },
    ];
    let tl = run(&procs, 200, |_| vec![Reading::bytes("shm.bytes", 0)]);
    let v = verdict(&tl);
    assert_eq!(v.outcome, Outcome::Pass, "{:?}", v.reasons);
    let fig = Figure::new(&PlotInput::new(&tl, Some(&v), "t"));
    let (head, _) = fig.headline.as_ref().unwrap();
    let plateaus: Vec<_> = v
        .metrics
        .iter()
        .map(|m| (&m.metric, m.plateau, m.warmup_cut))
        .collect();
    assert!(
        head.starts_with("PASS:") && head.contains("bounded growth in"),
        "{head} {plateaus:?}"
    );
    assert!(
        fig.focus.iter().any(|f| f.plateau.is_some()),
        "no plateau drawn"
    );
    assert!(fig.focus.iter().all(|f| f.outcome == Outcome::Pass));
    assert_eq!(fig.panels.len(), 1, "only host memory moved");
    assert!(
        fig.collapsed
            .iter()
            .any(|c| c.starts_with("/dev/shm: flat")),
        "{:?}",
        fig.collapsed
    );
    const { assert!(FLAT_BYTES < MIB) };
}

#[test]
fn phases_and_an_adaptive_extension_are_shaded_on_the_request_axis() {
    let tl = leaking_tree();
    let v = verdict(&tl);
    let mut input = PlotInput::new(&tl, Some(&v), "t");
    input.planned_requests = Some(60);
    let fig = Figure::new(&input);
    assert!(fig.x.by_request);
    let kinds: Vec<ShadeKind> = fig.shades.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [ShadeKind::Warmup, ShadeKind::Cooldown, ShadeKind::Extension]
    );
    let warmup = &fig.shades[0];
    assert!(
        (warmup.from + 5.0).abs() < 0.01 && warmup.to.abs() < 0.01,
        "{} {}",
        warmup.from,
        warmup.to
    );
    let ext = &fig.shades[2];
    assert!((ext.from - 59.5).abs() < 1e-9 && (ext.to - 99.5).abs() < 0.01);
    assert!(ext.label.contains("requests 60–99"), "{}", ext.label);
    // The cooldown (1 s at 0.1 s per request) reaches about ten requests past the last.
    assert!(fig.x.hi > 105.0 && fig.x.hi < 115.0, "{}", fig.x.hi);
    assert!(fig.x.lo < -5.0);
}

#[test]
fn empty_timeline_still_gives_a_plot_that_says_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/out");
    let tl = Timeline::default();
    let files = write_plots(&PlotInput::new(&tl, None, "empty"), &out, "empty").unwrap();
    let (info, pixels) = decode(&files.png);
    assert_eq!(info.width, WIDTH);
    assert!(pixels.iter().any(|&c| c < 200), "blank png");
    let svg = std::fs::read_to_string(&files.svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("no data"));
}

#[test]
fn a_run_without_measured_requests_is_drawn_against_time() {
    let mut tl = Timeline::default();
    tl.series.insert(
        "host.rss@tree".into(),
        Series {
            unit: Unit::Bytes,
            points: (0..50)
                .map(|i| Point {
                    t_us: i * 100_000,
                    v: 100.0 * MIB + i as f64 * MIB,
                })
                .collect(),
        },
    );
    let fig = Figure::new(&PlotInput::new(&tl, None, "t"));
    assert!(!fig.x.by_request);
    assert_eq!(fig.x.label, "seconds since start");
    assert_eq!(fig.panels.len(), 1);
    assert!(fig.headline.is_none() && fig.focus.is_empty());
    assert!((fig.panels[0].lines[0].points[49].1 - 49.0 * MIB).abs() < 1.0);
}

#[test]
fn lines_keep_only_finite_readings_and_at_most_six_processes() {
    let mut tl = leaking_tree();
    tl.series.get_mut("host.rss@tree").unwrap().points[3].v = f64::NAN;
    tl.per_request.get_mut("host.rss@tree").unwrap().y[5] = f64::NAN;
    let fig = Figure::new(&PlotInput::new(&tl, None, "t"));
    let host = &fig.panels[0];
    assert_eq!(host.lines.len(), 1 + MAX_PROCESSES);
    assert_eq!(host.lines[0].emphasis, Emphasis::Total);
    assert!(host.lines[0].points.iter().all(|p| p.1.is_finite()));
    assert!(fig.headline.is_none());
}

#[test]
fn headline_names_the_leaking_metric_by_role_with_its_interval() {
    let tl = small_leak_beside_a_big_process();
    let mut v = verdict(&tl);
    let keys = process_keys(&tl);
    let ((text, color), details) = headline(&v, &keys);
    assert!(
        text.starts_with("LEAK: host.rss@tokenizer_manager +1.0 MiB/request [+"),
        "{text}"
    );
    assert_eq!(color, LEAK_RED);
    assert!(details.iter().all(|d| !d.contains("@pid:")), "{details:?}");
    v.outcome = Outcome::Inconclusive;
    assert!(headline(&v, &keys).0.0.starts_with("INCONCLUSIVE"));
}

#[test]
fn bad_stem_is_an_error_not_a_stray_file() {
    let dir = tempfile::tempdir().unwrap();
    let tl = Timeline::default();
    for stem in ["", "../x", "a/b", ".."] {
        let err = write_plots(&PlotInput::new(&tl, None, "t"), dir.path(), stem).unwrap_err();
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

/// Writes example figures to `target/memtest/plot-*.{png,svg}` to look at.
#[test]
#[ignore = "writes examples for a person to look at"]
fn write_example() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/memtest");
    let tl = leaking_tree();
    let v = verdict(&tl);
    let input = PlotInput::new(&tl, Some(&v), "reference server: planted leak");
    println!("{:?}", write_plots(&input, &dir, "plot-example").unwrap());
    let tl = small_leak_beside_a_big_process();
    let v = verdict(&tl);
    let input = PlotInput::new(
        &tl,
        Some(&v),
        "1 MiB/request in tokenizer_manager beside a 2 GiB scheduler",
    );
    write_plots(&input, &dir, "plot-small-leak").unwrap();
    let empty = Timeline::default();
    write_plots(
        &PlotInput::new(&empty, None, "empty run"),
        &dir,
        "plot-empty",
    )
    .unwrap();
    // An 8-GPU host: more lines than a legend column holds.
    let mut crowded = leaking_tree();
    for i in 0..8u32 {
        let used = (0..400u64).map(|t| Point {
            t_us: t * 50_000,
            v: (40.0 + f64::from(i)) * GIB + (t as f64) * MIB,
        });
        crowded.series.insert(
            format!("gpu.used@dev:{i}"),
            Series {
                unit: Unit::Bytes,
                points: used.collect(),
            },
        );
    }
    let mut pass = verdict(&crowded);
    pass.outcome = Outcome::Pass;
    let title = "a very long title ".repeat(12);
    write_plots(
        &PlotInput::new(&crowded, Some(&pass), &title),
        &dir,
        "plot-crowded",
    )
    .unwrap();
}

#[test]
fn intervals_get_the_decimals_that_tell_their_ends_apart() {
    use super::figure::interval;
    assert_eq!(
        interval(0.98 * MIB, 1.02 * MIB),
        "+1.0 .. +1.0 MiB".replace("+1.0 .. +1.0", "+0.98 .. +1.02")
    );
    assert_eq!(interval(-2048.0, 40.0 * 1024.0), "-2.0 .. +40.0 KiB");
    assert_eq!(interval(MIB, MIB), "+1.000 .. +1.000 MiB");
    assert_eq!(interval(-3.0, 12.0), "-3 .. +12 B");
    assert_eq!(interval(0.0, 0.0), "+0 .. +0 B");
    assert_eq!(interval(f64::NAN, 1.0), "n/a");
}
