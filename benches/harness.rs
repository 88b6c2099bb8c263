//! `cargo bench --bench harness`: the harness against what users would pick instead, measured
//! in one run and given as ratios (absolute times are noise on shared machines; ratios taken
//! seconds apart are not). Prints one Markdown table; `docs/performance.md` holds the numbers.
//!
//! Sections (`MEMTEST_BENCH_ONLY=sampling,gpu,driver,verdict,lifecycle,overhead` picks some):
//! - **sampling**: one host reading of trees of 1, 4 and 16 processes (and the real SGLang CPU
//!   tree when `scripts/setup-sglang-cpu.sh` installed it), RSS tick and PSS/USS tick, against
//!   psutil walking the same tree;
//! - **gpu**: device-only and device + per-process ticks against one `nvidia-smi` query;
//! - **driver**: requests/s of the driver against a Python aiohttp client (what
//!   `sglang.bench_serving` uses) at concurrency 1, 16, 64 into the reference server;
//! - **verdict**: wall time and requests to the verdict for a clean server, a 64 KiB/request and a
//!   1 MiB/request leak, adaptive against the seed tool's fixed 100 requests;
//! - **lifecycle**: the server's bind to the fixture's return; teardown of a 4-process tree and of
//!   real SGLang;
//! - **overhead**: real SGLang's throughput with the harness sampling at 10 Hz and 100 Hz against
//!   not sampling, and the harness's own CPU and RSS.
//!
//! Python with psutil and aiohttp: `MEMTEST_BENCH_PYTHON`, else the SGLang CPU install's, else a
//! venv made in `~/.cache/sglang-memtest/bench-venv` from the package registry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use sglang_memtest::ScenarioConfig;
use sglang_memtest::fixture::{ServerFixture, ServerSpec};
use sglang_memtest::load::{Api, Driver, DriverConfig, Plan, RequestLog, Workload};
use sglang_memtest::tracker::{GpuMode, HostProbe, MemoryTracker, Phase, TrackerConfig};

fn exe() -> PathBuf {
    std::env::var_os("MEMTEST_REFERENCE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sglang-memtest")))
}

fn wanted(section: &str) -> bool {
    std::env::var("MEMTEST_BENCH_ONLY")
        .map(|v| v.split(',').any(|s| s.trim() == section))
        .unwrap_or(true)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Median microseconds of `f` over `runs` calls (one untimed call first).
fn time_us<T>(runs: usize, mut f: impl FnMut() -> T) -> f64 {
    std::hint::black_box(f());
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect(),
    )
}

struct Table(Vec<[String; 6]>);

impl Table {
    fn row(&mut self, what: &str, ours: String, peer: String, ratio: String, goal: &str) {
        println!("| {what} | {ours} | {peer} | {ratio} | {goal} |");
        self.0
            .push([what.into(), ours, peer, ratio, goal.into(), String::new()]);
    }

    fn note(&mut self, what: &str, why: &str) {
        println!("| {what} | — | — | — | {why} |");
    }
}

fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.1} µs")
    }
}

fn ratio(peer: f64, ours: f64, goal: f64) -> String {
    let r = peer / ours;
    let mark = if r >= goal { "met" } else { "missed" };
    format!("{r:.1}× ({mark})")
}

// ---- python ----------------------------------------------------------------------------------

fn has_modules(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import psutil, aiohttp"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn sglang_install() -> Option<HashMap<String, String>> {
    let home = std::env::var_os("HOME")?;
    let dir = std::env::var_os("MEMTEST_SGLANG_CPU_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home).join(".cache/sglang-memtest/sglang-cpu"));
    let text = std::fs::read_to_string(dir.join("memtest.env")).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}

/// A Python with psutil and aiohttp, or why there is none.
fn python() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("MEMTEST_BENCH_PYTHON") {
        candidates.push(p.into());
    }
    if let Some(p) = sglang_install().and_then(|v| v.get("MEMTEST_PYTHON").cloned()) {
        candidates.push(p.into());
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let venv = home.join(".cache/sglang-memtest/bench-venv");
    candidates.push(venv.join("bin/python"));
    candidates.push("python3".into());
    if let Some(p) = candidates.iter().find(|p| has_modules(p)) {
        return Ok(p.clone());
    }
    eprintln!("bench: making {} with psutil and aiohttp", venv.display());
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "psutil", "aiohttp"])
            .status()
            .is_ok_and(|s| s.success());
    let py = venv.join("bin/python");
    if made && has_modules(&py) {
        Ok(py)
    } else {
        Err("no Python with psutil and aiohttp (set MEMTEST_BENCH_PYTHON)".into())
    }
}

/// Runs a Python snippet, returns its last stdout line parsed as JSON.
fn py_json(python: &Path, code: &str, args: &[String]) -> Option<serde_json::Value> {
    let out = Command::new(python)
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "bench: python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last()?).ok()
}

const PSUTIL_WALK: &str = r#"
import json, sys, time, psutil
pid, runs = int(sys.argv[1]), int(sys.argv[2])
root = psutil.Process(pid)
def tree():
    return [root] + root.children(recursive=True)
def rss():
    return sum(p.memory_info().rss for p in tree())
def full():
    s = 0
    for p in tree():
        m = p.memory_full_info()
        s += m.pss + m.uss
    return s
procs = tree()
def rss_cached():
    return sum(p.memory_info().rss for p in procs)
def walk():
    return len(tree())
def med(f, n):
    f()
    xs = []
    for _ in range(n):
        t = time.perf_counter_ns(); f(); xs.append((time.perf_counter_ns() - t) / 1000)
    xs.sort(); return xs[len(xs) // 2]
print(json.dumps({"rss_us": med(rss, runs), "rss_cached_us": med(rss_cached, runs), "walk_us": med(walk, runs), "full_us": med(full, max(runs // 5, 5)), "procs": len(tree())}))
"#;

const AIOHTTP_CLIENT: &str = r#"
import asyncio, json, sys, time, aiohttp
url, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def main():
    sem = asyncio.Semaphore(c)
    conn = aiohttp.TCPConnector(limit=c)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one(i):
            body = {"model": "reference", "messages": [{"role": "user", "content": f"Request {i}: write two sentences about tidal energy."}], "max_tokens": 32, "temperature": 0}
            async with sem:
                async with s.post(url + "/v1/chat/completions", json=body) as r:
                    await r.read()
                    return r.status == 200
        t = time.perf_counter()
        ok = sum(await asyncio.gather(*(one(i) for i in range(n))))
        return ok, time.perf_counter() - t
ok, secs = asyncio.run(main())
print(json.dumps({"ok": ok, "rps": n / secs}))
"#;

// ---- servers ---------------------------------------------------------------------------------

fn reference_spec(knobs: &[&str]) -> ServerSpec {
    let mut argv: Vec<String> = vec!["serve-reference".into(), "--port".into(), "{port}".into()];
    argv.extend(knobs.iter().map(|s| (*s).to_owned()));
    ServerSpec::command(exe(), argv)
        .with_log_dir(std::env::temp_dir().join("memtest-bench-harness"))
        .with_startup_timeout(Duration::from_secs(60))
}

fn sglang_spec() -> Option<ServerSpec> {
    let vars = sglang_install()?;
    let scenario = ScenarioConfig::text_model()
        .env_overrides_from(|k| vars.get(k).cloned())
        .ok()?
        .build()
        .ok()?;
    let server = scenario
        .target()
        .engine()
        .filter(|e| e.engine().name() == "sglang")?;
    Some(
        server
            .clone()
            .into_spec()
            .with_log_dir(std::env::temp_dir().join("memtest-bench-harness"))
            .with_startup_timeout(Duration::from_secs(600)),
    )
}

fn tracker_config(interval: Duration) -> TrackerConfig {
    TrackerConfig {
        interval,
        gpu: GpuMode::Off,
        ..TrackerConfig::default()
    }
}

// ---- sections --------------------------------------------------------------------------------

fn sampling(
    rt: &tokio::runtime::Runtime,
    t: &mut Table,
    py: Option<&Path>,
    sglang: Option<&ServerFixture>,
) {
    let one = |t: &mut Table, label: &str, fixture: &ServerFixture| {
        let (Some(tree), Some(root)) = (fixture.tree(), fixture.root_pid()) else {
            return;
        };
        let mut probe = HostProbe::new();
        let pids = tree.pids();
        let n = pids.len();
        // What every reading costs: the tracker reads the tree it knows; it walks /proc for new
        // processes on its regular tick only (10 Hz by default), not per request.
        let rss = time_us(500, || probe.rss_tick(&pids));
        let walk = time_us(200, || tree.pids());
        let full = time_us(100, || probe.rollup_tick(&pids));
        let Some(py) = py else {
            t.row(
                &format!("RSS tick, {label} ({n} processes)"),
                us(rss),
                "—".into(),
                "—".into(),
                "no psutil",
            );
            return;
        };
        let Some(v) = py_json(py, PSUTIL_WALK, &[root.to_string(), "500".into()]) else {
            return;
        };
        let get = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        t.row(
            &format!("RSS tick, {label} ({n} processes)"),
            us(rss),
            format!(
                "psutil {} (walk + memory_info, as a psutil sampler reads a tree); {} with the Process objects kept",
                us(get("rss_us")),
                us(get("rss_cached_us"))
            ),
            format!(
                "{}; {:.1}× against kept objects",
                ratio(get("rss_us"), rss, 20.0),
                get("rss_cached_us") / rss
            ),
            "≥ 20× cheaper than psutil",
        );
        t.row(
            &format!("tree walk (new processes), {label}"),
            us(walk),
            format!("psutil children(recursive=True) {}", us(get("walk_us"))),
            ratio(get("walk_us"), walk, 1.0),
            "on the regular tick only",
        );
        t.row(
            &format!("PSS/USS tick, {label} ({n} processes)"),
            us(full),
            format!("psutil memory_full_info {}", us(get("full_us"))),
            ratio(get("full_us"), full, 1.0),
            "cheaper than psutil",
        );
    };
    for children in [0usize, 3, 15] {
        let knobs = [format!("--children={children}")];
        let refs: Vec<&str> = knobs.iter().map(String::as_str).collect();
        match rt.block_on(ServerFixture::start(reference_spec(&refs))) {
            Ok(f) => {
                one(t, "reference server", &f);
                let _ = rt.block_on(f.stop());
            }
            Err(e) => t.note("reference server", &format!("did not start: {e}")),
        }
    }
    match sglang {
        Some(f) => one(t, "real SGLang CPU tree", f),
        None => t.note("RSS tick, real SGLang CPU tree", "SGLang not started: no CPU install (scripts/setup-sglang-cpu.sh) or MEMTEST_BENCH_SGLANG=0"),
    }
}

fn gpu(rt: &tokio::runtime::Runtime, t: &mut Table) {
    use nvml_wrapper::Nvml;
    let Ok(nvml) = Nvml::init() else {
        t.note(
            "GPU ticks",
            "no NVML on this machine (run on the GPU machine)",
        );
        return;
    };
    // A process on the card (the reference server's CUDA context, with the `cuda` build), so the
    // process lists are not empty.
    let on_card = rt
        .block_on(ServerFixture::start(reference_spec(&[
            "--gpu-alloc-bytes-per-request=4096",
        ])))
        .map_err(|e| {
            eprintln!("bench: no reference process on the GPU ({e}): build with --features cuda")
        })
        .ok();
    let Ok(mut probe) = sglang_memtest::tracker::GpuProbe::open(None) else {
        t.note("GPU ticks", "no visible GPU");
        return;
    };
    let count = nvml.device_count().unwrap_or(0);
    let device_only = time_us(1000, || {
        (0..count)
            .filter_map(|i| nvml.device_by_index(i).ok()?.memory_info().ok())
            .count()
    });
    let pids: Vec<u32> = (0..count)
        .filter_map(|i| {
            nvml.device_by_index(i)
                .ok()?
                .running_compute_processes()
                .ok()
        })
        .flatten()
        .map(|p| p.pid)
        .collect();
    let steady = time_us(1000, || probe.sample_once(&pids));
    let (read, reused) = probe.list_reads();
    let lists = time_us(200, || {
        (0..count)
            .filter_map(|i| {
                nvml.device_by_index(i)
                    .ok()?
                    .running_compute_processes()
                    .ok()
            })
            .count()
    });
    let smi = |args: &[&str]| {
        Command::new("nvidia-smi")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let smi_us = if smi(&["-L"]) {
        time_us(30, || smi(&["--query-gpu=memory.used", "--format=csv"]))
    } else {
        f64::NAN
    };
    let peer = format!("nvidia-smi {}", us(smi_us));
    t.row(
        &format!("GPU device-only tick ({count} devices)"),
        us(device_only),
        peer.clone(),
        ratio(smi_us, device_only, 500.0),
        "≥ 500× cheaper than nvidia-smi",
    );
    t.row(
        &format!(
            "GPU device + per-process tick, steady ({} processes on the card; lists read {read}×, reused {reused}×)",
            pids.len()
        ),
        us(steady),
        peer.clone(),
        ratio(smi_us, steady, 500.0),
        "≥ 500× cheaper than nvidia-smi",
    );
    t.row(
        "GPU tick when device memory moved (process lists read)",
        us(device_only + lists),
        peer,
        ratio(smi_us, device_only + lists, 500.0),
        "(was ~140–150×: every tick read the lists)",
    );
    if let Some(f) = on_card {
        let _ = rt.block_on(f.stop());
    }
}

fn driver_rps(rt: &tokio::runtime::Runtime, url: &str, n: u64, c: usize) -> f64 {
    let config = DriverConfig {
        concurrency: c,
        interval: Duration::ZERO,
        max_new_tokens: 32,
        api: Api::OpenAi,
        model: Some("reference".into()),
        max_error_rate: 1.0,
        ..DriverConfig::default()
    };
    rt.block_on(async {
        let Ok(tracker) =
            MemoryTracker::start(None, None, &tracker_config(Duration::from_secs(1)), None)
        else {
            return f64::NAN;
        };
        let workload = Workload::Text;
        let Ok(mut driver) = Driver::connect(url, &workload, &config, None).await else {
            return f64::NAN;
        };
        let mut log = RequestLog::in_memory();
        let t0 = Instant::now();
        let _ = driver
            .run(Phase::Measure, Plan::Count(n), &tracker, &mut log)
            .await;
        let secs = t0.elapsed().as_secs_f64();
        let _ = tracker.finish().await;
        log.summary().ok as f64 / secs
    })
}

fn driver(rt: &tokio::runtime::Runtime, t: &mut Table, py: Option<&Path>) {
    let Ok(f) = rt.block_on(ServerFixture::start(reference_spec(&[
        "--token-delay-us=0",
    ]))) else {
        t.note("driver", "the reference server did not start");
        return;
    };
    let url = f.base_url().to_owned();
    for (c, n) in [(1usize, 2000u64), (16, 10000), (64, 20000)] {
        let ours = driver_rps(rt, &url, n, c);
        let peer = py
            .and_then(|py| {
                py_json(
                    py,
                    AIOHTTP_CLIENT,
                    &[url.clone(), n.to_string(), c.to_string()],
                )
            })
            .and_then(|v| v["rps"].as_f64())
            .unwrap_or(f64::NAN);
        t.row(
            &format!("driver requests/s, concurrency {c} ({n} requests)"),
            format!("{ours:.0}/s"),
            format!("aiohttp {peer:.0}/s"),
            ratio(ours, peer, if c == 64 { 5.0 } else { 1.0 }),
            if c == 64 { "≥ 5× aiohttp" } else { "" },
        );
    }
    let _ = rt.block_on(f.stop());
}

fn verdict(t: &mut Table) {
    let out = std::env::temp_dir().join("memtest-bench-harness/verdict");
    for (label, knobs) in [
        ("clean", vec![]),
        (
            "64 KiB/request leak",
            vec!["--leak-bytes-per-request=65536"],
        ),
        (
            "1 MiB/request leak",
            vec!["--leak-bytes-per-request=1048576"],
        ),
    ] {
        let mut cells = Vec::new();
        for fixed in [false, true] {
            let mut c = ScenarioConfig::new("verdict", Workload::Text)
                .reference(knobs.iter().copied())
                .set("reference_bin", exe().display().to_string())
                .requests(100)
                .plots(false)
                .gpu(GpuMode::Off)
                .out_dir(&out);
            if fixed {
                c = c.max_requests(100);
            }
            let t0 = Instant::now();
            let r = match c.build() {
                Ok(s) => s.run_blocking(),
                Err(e) => {
                    t.note(label, &e.to_string());
                    return;
                }
            };
            let secs = t0.elapsed().as_secs_f64();
            let requests = r.adaptive.as_ref().map_or(100, |a| a.requests);
            cells.push((secs, requests, format!("{:?}", r.outcome)));
        }
        let (a, f) = (&cells[0], &cells[1]);
        t.row(
            &format!("time to verdict, {label}"),
            format!("adaptive: {:.1} s, {} requests, {}", a.0, a.1, a.2),
            format!("fixed 100 (the seed's): {:.1} s, {}", f.0, f.2),
            format!("{:.2}× the time", a.0 / f.0),
            "earlier on a certain leak; longer only when undecided",
        );
    }
}

/// The reference server's "ready" log line, as a time.
fn ready_at(log: &Path) -> Option<SystemTime> {
    let text = std::fs::read_to_string(log).ok()?;
    // The last start's line (a log folder may hold earlier runs).
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("reference server ready"))?;
    let clean: String = {
        // Strip ANSI colour codes.
        let mut out = String::new();
        let mut esc = false;
        for ch in line.chars() {
            match (esc, ch) {
                (false, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    };
    let stamp = clean.split_whitespace().next()?;
    humantime::parse_rfc3339_weak(stamp.trim_end_matches('Z')).ok()
}

fn lifecycle(rt: &tokio::runtime::Runtime, t: &mut Table, sglang: Option<ServerFixture>) {
    let mut ready = Vec::new();
    let mut down = Vec::new();
    for i in 0..10 {
        let spec = reference_spec(&["--children=3", "--startup-delay-ms=200"])
            .with_env("MEMTEST_LOG", "info")
            .with_log_dir(std::env::temp_dir().join(format!("memtest-bench-harness/ready-{i}")));
        let Ok(f) = rt.block_on(ServerFixture::start(spec)) else {
            continue;
        };
        let returned = SystemTime::now();
        if let Some(at) = f.log_path().and_then(ready_at)
            && let Ok(d) = returned.duration_since(at)
        {
            ready.push(d.as_secs_f64() * 1000.0);
        }
        let t0 = Instant::now();
        let _ = rt.block_on(f.stop());
        down.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    t.row(
        "readiness: the server bound its port → the fixture returned (median of 10)",
        format!("{:.1} ms", median(ready)),
        "—".into(),
        "—".into(),
        "≤ 50 ms",
    );
    t.row(
        "teardown of a 4-process reference tree (median of 10)",
        format!("{:.1} ms", median(down)),
        "—".into(),
        "—".into(),
        "≤ 2 s",
    );
    match sglang {
        Some(f) => {
            let t0 = Instant::now();
            let _ = rt.block_on(f.stop());
            t.row(
                "teardown of real SGLang (CPU, 4 processes)",
                format!("{:.2} s", t0.elapsed().as_secs_f64()),
                "—".into(),
                "—".into(),
                "≤ 2 s for a server that honours SIGTERM",
            );
        }
        None => t.note(
            "teardown of real SGLang",
            "SGLang not started (no CPU install, or MEMTEST_BENCH_SGLANG=0)",
        ),
    }
}

/// The harness's own CPU seconds (user + system) and RSS.
fn self_usage() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0;
    (cpu, rss)
}

fn overhead(rt: &tokio::runtime::Runtime, t: &mut Table, sglang: &ServerFixture) {
    let url = sglang.base_url().to_owned();
    let config = DriverConfig {
        concurrency: 2,
        interval: Duration::ZERO,
        max_new_tokens: 32,
        max_error_rate: 1.0,
        ..DriverConfig::default()
    };
    let n = 200;
    let mut results: HashMap<&str, Vec<(f64, f64, f64)>> = HashMap::new();
    let modes = [("none", None), ("10 Hz", Some(100)), ("100 Hz", Some(10))];
    // Three rounds, each in another order: drift on a shared machine hits every mode alike.
    for round in 0..3 {
        for k in 0..modes.len() {
            let (label, interval) = modes[(k + round) % modes.len()];
            let r = rt.block_on(async {
                let (tree, url_opt) = match interval {
                    Some(_) => (sglang.tree(), Some(url.as_str())),
                    None => (None, None),
                };
                let every = Duration::from_millis(interval.unwrap_or(3_600_000));
                let tracker =
                    MemoryTracker::start(tree, url_opt, &tracker_config(every), None).ok()?;
                let workload = Workload::Text;
                let mut driver = Driver::connect(&url, &workload, &config, None).await.ok()?;
                let mut log = RequestLog::in_memory();
                let (cpu0, _) = self_usage();
                let t0 = Instant::now();
                driver
                    .run(Phase::Measure, Plan::Count(n), &tracker, &mut log)
                    .await
                    .ok()?;
                let secs = t0.elapsed().as_secs_f64();
                let (cpu1, rss) = self_usage();
                let _ = tracker.finish().await;
                Some((
                    log.summary().ok as f64 / secs,
                    (cpu1 - cpu0) / secs * 100.0,
                    rss,
                ))
            });
            if let Some(r) = r {
                results.entry(label).or_default().push(r);
            }
        }
    }
    let spread = |label: &str| {
        let v: Vec<f64> = results
            .get(label)
            .map(|v| v.iter().map(|r| r.0).collect())
            .unwrap_or_default();
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
        format!("{lo:.2}–{hi:.2}")
    };
    let mean = |label: &str, i: usize| {
        let v = results.get(label).cloned().unwrap_or_default();
        v.iter()
            .map(|r| match i {
                0 => r.0,
                1 => r.1,
                _ => r.2,
            })
            .sum::<f64>()
            / v.len().max(1) as f64
    };
    let base = mean("none", 0);
    for label in ["10 Hz", "100 Hz"] {
        let rps = mean(label, 0);
        t.row(
            &format!("real SGLang CPU throughput, harness sampling at {label}"),
            format!(
                "{rps:.2} req/s ({:.0} tokens/s), harness {:.1} % of a core, {:.0} MiB",
                rps * 32.0,
                mean(label, 1),
                mean(label, 2)
            ),
            format!(
                "not sampling: {base:.2} req/s (runs {}; sampling runs {})",
                spread("none"),
                spread(label)
            ),
            format!("{:+.1} %", (rps / base - 1.0) * 100.0),
            if label == "10 Hz" { "< 1 % change" } else { "" },
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    println!("| measurement | sglang-memtest | peer | ratio | goal |\n|---|---|---|---|---|");
    let mut t = Table(Vec::new());
    let py = python();
    if let Err(why) = &py {
        t.note("python peers", why);
    }
    let py = py.ok();
    let needs_sglang = wanted("sampling") || wanted("overhead") || wanted("lifecycle");
    let sglang = if needs_sglang && std::env::var("MEMTEST_BENCH_SGLANG").as_deref() != Ok("0") {
        sglang_spec().and_then(|spec| match rt.block_on(ServerFixture::start(spec)) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("bench: SGLang did not start: {e}");
                None
            }
        })
    } else {
        None
    };
    if wanted("sampling") {
        sampling(&rt, &mut t, py.as_deref(), sglang.as_ref());
    }
    if wanted("gpu") {
        gpu(&rt, &mut t);
    }
    if wanted("driver") {
        driver(&rt, &mut t, py.as_deref());
    }
    if wanted("overhead") {
        match &sglang {
            Some(f) => overhead(&rt, &mut t, f),
            None => t.note(
                "overhead on real SGLang",
                "SGLang not started (no CPU install, or MEMTEST_BENCH_SGLANG=0)",
            ),
        }
    }
    if wanted("verdict") {
        verdict(&mut t);
    }
    if wanted("lifecycle") {
        lifecycle(&rt, &mut t, sglang);
    } else if let Some(f) = sglang {
        let _ = rt.block_on(f.stop());
    }
}
