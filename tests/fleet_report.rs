//! The fleet judgement on series shaped like a week of production telemetry, without a server:
//! what `judge` makes of Prometheus' answers (`fleet::assess` is the pure half of `judge`). A
//! replica that leaks per request, a clean one, one that restarts (the restart must cut its series,
//! never read as a drop or a rise), a GPU growing by the hour with no counter; and the report's
//! shape as a snapshot (schema version 2, `"kind": "fleet"`, docs/report-schema.md).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use sglang_memtest::analysis::{Outcome, Thresholds};
use sglang_memtest::fleet::{
    self, Fetched, FleetReport, JudgeConfig, MemoryKind, MemoryQuery, PromSeries, QuerySet, Window,
};

const STEP: f64 = 15.0;
const N: usize = 480; // 2 hours at 15 s
/// Requests per scrape.
const PER: usize = 2;
const T0: f64 = 1_790_000_000.0;
const MIB: f64 = 1024.0 * 1024.0;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn series(pairs: &[(&str, &str)], f: impl Fn(usize) -> f64) -> PromSeries {
    PromSeries {
        labels: labels(pairs),
        points: (0..N).map(|i| (T0 + i as f64 * STEP, f(i))).collect(),
    }
}

/// Deterministic noise of ±`amp`.
fn noise(i: usize, amp: f64) -> f64 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    (x as f64 / (1u64 << 24) as f64 - 0.5) * 2.0 * amp
}

fn fleet() -> (JudgeConfig, Fetched) {
    let host_q = "container_memory_working_set_bytes";
    let gpu_q = "DCGM_FI_DEV_FB_USED * 1048576";
    // PER requests per scrape everywhere; pod c restarts at reading N / 2.
    let counter = |pod: &'static str| {
        series(&[("pod", pod)], move |i| {
            let i = if pod == "c" && i >= N / 2 {
                i - N / 2
            } else {
                i
            };
            (i * PER) as f64
        })
    };
    let fetched = Fetched {
        memory: vec![
            (
                MemoryKind::Host,
                host_q.to_owned(),
                vec![
                    // 64 KiB per request: 2× the host limit.
                    series(&[("pod", "a"), ("container", "sglang")], |i| {
                        8e9 + (i * PER) as f64 * 64.0 * 1024.0 + noise(i, MIB)
                    }),
                    series(&[("pod", "b"), ("container", "sglang")], |i| {
                        8e9 + noise(i, MIB)
                    }),
                    // Warms up by 400 MiB over 40 readings, flat; restarts lower; warms up again.
                    series(&[("pod", "c"), ("container", "sglang")], |i| {
                        let k = if i >= N / 2 { i - N / 2 } else { i };
                        6e9 + (k.min(40) as f64) * 10.0 * MIB + noise(i, MIB)
                    }),
                ],
            ),
            (
                MemoryKind::Gpu,
                gpu_q.to_owned(),
                // 1 GiB an hour on a GPU no counter matches (pod e has none).
                vec![series(&[("pod", "e"), ("gpu", "0")], |i| {
                    40e9 + i as f64 * STEP / 3600.0 * 1024.0 * MIB + noise(i, 4.0 * MIB)
                })],
            ),
        ],
        requests: vec![counter("a"), counter("b"), counter("c")],
        limits: vec![series(&[("pod", "a"), ("container", "sglang")], |_| 16e9)],
        gpu_free: vec![series(&[("pod", "e"), ("gpu", "0")], |_| 20e9)],
    };
    let config = JudgeConfig {
        prometheus: "http://127.0.0.1:9090".into(),
        queries: QuerySet {
            memory: vec![
                MemoryQuery::new(MemoryKind::Host, host_q),
                MemoryQuery::new(MemoryKind::Gpu, gpu_q),
            ],
            requests: Some("sglang:num_requests_total".into()),
            limit: Some("container_spec_memory_limit_bytes".into()),
            gpu_free: Some("DCGM_FI_DEV_FB_FREE * 1048576".into()),
            on: vec!["pod".into()],
        },
        window: Window::new(T0, T0 + N as f64 * STEP, Duration::from_secs(15)),
        thresholds: Thresholds::default(),
        timeout: Duration::from_secs(5),
        request_marks: None,
    };
    (config, fetched)
}

fn row<'a>(r: &'a FleetReport, pod: &str, segment: usize) -> &'a fleet::FleetRow {
    r.rows
        .iter()
        .find(|row| {
            row.labels.get("pod").map(String::as_str) == Some(pod) && row.segment == segment
        })
        .unwrap_or_else(|| panic!("no row for pod {pod} segment {segment}: {}", r.summary(50)))
}

#[test]
fn a_fleet_is_judged_per_replica_worst_first_and_restarts_cut_series() {
    let (c, f) = fleet();
    let r = fleet::assess(&c, &f).expect("judged");
    let table = r.summary(50);
    let a = row(&r, "a", 1);
    assert_eq!(a.outcome, Outcome::Leak, "{table}");
    assert_eq!(a.requests, Some((N - 1) as u64 * PER as u64), "{table}");
    let slope = a.growth_per_request().expect("per request").point;
    assert!((slope / 65536.0 - 1.0).abs() < 0.05, "{slope}\n{table}");
    // Limit 16 GB minus the last reading; the projection uses it.
    assert!(a.headroom.is_some_and(|h| h > 7e9 && h < 8e9), "{table}");
    assert!(a.requests_to_exhaust.is_some(), "{table}");
    assert_eq!(row(&r, "b", 1).outcome, Outcome::Pass, "{table}");
    // Pod a's limit is a's alone.
    assert_eq!(row(&r, "b", 1).headroom, None, "{table}");
    // The restart cut pod c in two, each a warm-up then flat: both pass.
    let (c1, c2) = (row(&r, "c", 1), row(&r, "c", 2));
    assert_eq!((c1.segments, c2.segments), (2, 2), "{table}");
    assert_eq!(
        (c1.outcome, c2.outcome),
        (Outcome::Pass, Outcome::Pass),
        "{table}"
    );
    assert!(c2.name.contains("segment 2/2"), "{table}");
    // The GPU with no counter is judged per hour alone: 1 GiB/h, over the 256 MiB/h limit.
    let e = row(&r, "e", 1);
    assert_eq!(e.requests, None, "{table}");
    assert_eq!(e.outcome, Outcome::Leak, "{table}");
    let per_hour = e.growth_per_hour.expect("per hour").point;
    assert!(
        (per_hour / (1024.0 * MIB) - 1.0).abs() < 0.1,
        "{per_hour}\n{table}"
    );
    assert!(
        e.hours_to_exhaust.is_some_and(|h| h > 10.0 && h < 25.0),
        "{table}"
    );
    // Worst first, and the run's outcome is the worst row's.
    assert_eq!(r.rows[0].outcome, Outcome::Leak);
    assert!(r.rows.last().is_some_and(|l| l.outcome == Outcome::Pass));
    assert_eq!(r.outcome, sglang_memtest::report::RunOutcome::Leak);
    assert!(
        (r.alpha - 0.05 / 5.0).abs() < 1e-12,
        "Bonferroni over 5 rows: {}",
        r.alpha
    );
}

#[test]
fn nothing_found_is_an_error_that_names_the_queries() {
    let (c, mut f) = fleet();
    for m in &mut f.memory {
        m.2.clear();
    }
    let e = fleet::assess(&c, &f).unwrap_err().to_string();
    assert!(
        e.contains("container_memory_working_set_bytes") && e.contains("matched nothing"),
        "{e}"
    );
}

/// Field paths, unioned over array items (as tests/report_schema.rs lists a run's report).
fn paths(v: &Value, at: &str, out: &mut Vec<String>) {
    out.push(at.to_owned());
    let keyed_by_data = at.ends_with(".labels");
    match v {
        Value::Object(map) if keyed_by_data => map
            .values()
            .for_each(|v| paths(v, &format!("{at}.<key>"), out)),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| paths(v, &format!("{at}.{k}"), out)),
        Value::Array(items) => items.iter().for_each(|v| paths(v, &format!("{at}[]"), out)),
        _ => {}
    }
}

#[test]
fn fleet_report_schema_v2() {
    let (c, f) = fleet();
    let mut r = fleet::assess(&c, &f).expect("judged");
    let dir = tempfile::tempdir().expect("tempdir");
    let json = r.write(dir.path(), "fleet", true).expect("written");
    let back: Value =
        serde_json::from_str(&std::fs::read_to_string(json).expect("read")).expect("json");
    assert_eq!(back["schema_version"], 2);
    assert_eq!(back["kind"], "fleet");
    for f in ["fleet.png", "fleet.svg", "fleet.html"] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let html = std::fs::read_to_string(dir.path().join("fleet.html")).expect("html");
    assert!(
        html.contains("<svg") && html.contains("pod=a"),
        "the page inlines the plot and names the rows"
    );
    let mut out = Vec::new();
    paths(&back, "", &mut out);
    out.sort();
    out.dedup();
    let out: Vec<String> = out
        .into_iter()
        .filter(|p| !p.is_empty() && !p.starts_with(".thresholds"))
        .collect();
    insta::assert_snapshot!(out.join("\n"));
}
