//! The reliability suite: every way a run can end leaves no process and no `/dev/shm` segment of
//! the server behind, touches nothing that is not the server's, and keeps the data.
//!
//! A server's processes are found by the `MEMTEST_FIXTURE=<harness pid>.<n>` tag every launched
//! server inherits (even a process that left the group), and its segments by the pid the
//! reference server puts in their names, so these checks look only at this suite's own
//! processes and segments: other jobs on the machine are never counted, never touched.
//!
//! The end paths run a few times each here; `stress_every_end_path` (ignored) runs each 20 times
//! and prints the table that `docs/reliability.md` records:
//! `cargo test --test reliability -- --ignored --nocapture stress_every_end_path`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;
use serial_test::serial;
use sglang_memtest::fixture::{ServerFixture, ServerSpec};
use sglang_memtest::load::{Request, RequestContext, Workload};
use sglang_memtest::report::{Report, RunOutcome};
use sglang_memtest::{CancellationToken, ScenarioConfig};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Knobs that make the reference server's tree and segments like SGLang's: two children, a
/// sparse segment made at start-up (`psm_reference_<pid>`), 64 KiB of `/dev/shm` leaked per
/// request (`sgl_shm_reference_<pid>_<n>`, never removed by the server itself).
const TREE_KNOBS: [&str; 3] = [
    "--children=2",
    "--shm-segment-bytes=1048576",
    "--shm-leak-bytes-per-request=65536",
];

/// The pids of live processes carrying the tag of one of `harness`'s fixtures.
fn tagged(harness: u32) -> Vec<u32> {
    with_env(&format!("MEMTEST_FIXTURE={harness}."))
}

/// The pids of live processes whose environment holds `prefix` (`MEMTEST_FIXTURE=<harness>.`).
fn with_env(prefix: &str) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| common::alive(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0)
                    .any(|kv| kv.starts_with(prefix.as_bytes()))
            })
        })
        .collect()
}

/// The live reaper of `harness` (it carries `MEMTEST_REAPER_FOR=<harness pid>:`).
fn reapers_of(harness: u32) -> Vec<u32> {
    with_env(&format!("MEMTEST_REAPER_FOR={harness}:"))
}

/// `/dev/shm` names of the reference servers among `pids` (their names carry the pid).
fn segments_of(pids: &BTreeSet<u32>) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("psm_reference_") || n.starts_with("sgl_shm_reference_"))
        .filter(|n| {
            n.split('_')
                .filter_map(|p| p.parse::<u32>().ok())
                .any(|p| pids.contains(&p))
        })
        .collect()
}

/// Waits up to `within` for `f` to hold.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How one end path went.
#[derive(Debug, Default, Clone)]
struct Ended {
    orphans: usize,
    segments: usize,
    /// What was on disk afterwards, in a few words (`report: error`, `provisional report`).
    kept: String,
    /// Time from the signal (or the end) to the last server process gone.
    cleanup: Duration,
}

/// How a signalled harness ended: the end path, its exit code, the server PIDs it had.
type Signalled = (Ended, Option<i32>, BTreeSet<u32>);

/// Watches a harness process (`child`) whose fixtures carry its pid: waits until its server is
/// measuring (or, with `startup`, starting), sends `signal`, and checks what is left.
fn signal_harness(
    mut child: std::process::Child,
    out_dir: &Path,
    name: &str,
    signal: Signal,
    startup: bool,
) -> Result<Signalled, Box<dyn std::error::Error>> {
    let harness = child.id();
    let marks = out_dir.join(format!("{name}.marks.csv"));
    let ready = eventually(Duration::from_secs(60), || {
        if startup {
            !tagged(harness).is_empty()
        } else {
            std::fs::read_to_string(&marks)
                .is_ok_and(|t| t.lines().filter(|l| l.contains(",measure,")).count() >= 5)
        }
    });
    if !ready {
        let _ = child.kill();
        return Err(format!("the harness {harness} never got its server going").into());
    }
    // Everything of the server, now, while it is alive (children started at its start-up).
    std::thread::sleep(Duration::from_millis(100));
    let pids: BTreeSet<u32> = tagged(harness).into_iter().collect();
    let t0 = Instant::now();
    kill(Pid::from_raw(i32::try_from(harness)?), signal)?;
    let status = wait_timeout(&mut child, Duration::from_secs(60))?;
    let gone = eventually(Duration::from_secs(10), || tagged(harness).is_empty());
    // Whatever killed the harness, its reaper sweeps at once and ends: nothing waits for the
    // next fixture start (none is started here).
    let clean = eventually(Duration::from_secs(10), || segments_of(&pids).is_empty());
    let cleanup = t0.elapsed();
    let reaper_gone = eventually(Duration::from_secs(10), || reapers_of(harness).is_empty());
    let orphans = if gone { 0 } else { tagged(harness).len() }
        + if reaper_gone {
            0
        } else {
            reapers_of(harness).len()
        };
    let segments = if clean { 0 } else { segments_of(&pids).len() };
    let kept = kept(&out_dir.join(format!("{name}.json")));
    Ok((
        Ended {
            orphans,
            segments,
            kept,
            cleanup,
        },
        status,
        pids,
    ))
}

/// The exit code (`None`: killed by a signal), or an error after `within`.
fn wait_timeout(
    child: &mut std::process::Child,
    within: Duration,
) -> Result<Option<i32>, Box<dyn std::error::Error>> {
    let end = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s.code());
        }
        if Instant::now() >= end {
            let _ = child.kill();
            return Err(format!("harness {} did not exit within {within:?}", child.id()).into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the report on disk says: `report: <outcome>` with the error's first words, or none.
fn kept(json: &Path) -> String {
    match Report::read_json(json) {
        Ok(r) => {
            let why = r
                .error
                .as_ref()
                .map(|e| e.message.chars().take(60).collect::<String>())
                .unwrap_or_default();
            format!("report {:?} {why}", r.outcome).trim().to_owned()
        }
        Err(_) => "no report".to_owned(),
    }
}

/// The CLI, measuring the reference server (with [`TREE_KNOBS`]) until it is stopped.
fn cli_harness(out_dir: &Path, extra: &[&str]) -> std::io::Result<std::process::Child> {
    let mut args: Vec<String> = [
        "monitor",
        "--reference",
        "--num-requests",
        "100000",
        "--max-requests",
        "100000",
        "--request-interval",
        "0.005",
        "--no-plot",
        "--out-dir",
    ]
    .map(String::from)
    .to_vec();
    args.push(out_dir.display().to_string());
    args.extend(TREE_KNOBS.iter().map(|k| format!("--reference-arg={k}")));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Command::new(common::exe())
        .args(args)
        .env("MEMTEST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// This test binary as a harness (`child_harness`, with the watchdog on), measuring until stopped.
fn test_harness(out_dir: &Path, startup: bool) -> std::io::Result<std::process::Child> {
    Command::new(std::env::current_exe()?)
        .args(["--ignored", "--exact", "child_harness", "--nocapture"])
        .env("MEMTEST_WATCHDOG", "1")
        .env("MEMTEST_CHILD_OUT", out_dir)
        .env("MEMTEST_CHILD_STARTUP", if startup { "1" } else { "0" })
        .env("MEMTEST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Not a test of its own: the harness `test_harness` starts (ignored, so plain runs skip it).
#[test]
#[serial]
#[ignore = "run by the signal tests as a child process"]
fn child_harness() {
    let Some(out) = std::env::var_os("MEMTEST_CHILD_OUT") else {
        return;
    };
    let startup = std::env::var("MEMTEST_CHILD_STARTUP").is_ok_and(|v| v == "1");
    let mut knobs: Vec<String> = TREE_KNOBS.iter().map(|s| (*s).to_owned()).collect();
    if startup {
        knobs.push("--startup-delay-ms=60000".into());
    }
    let r = ScenarioConfig::new("harness", sglang_memtest::Workload::Text)
        .reference(knobs)
        .set("reference_bin", common::exe().display().to_string())
        .quick()
        .requests(100_000)
        .max_requests(100_000)
        .request_interval(Duration::from_millis(5))
        .startup_timeout(Duration::from_secs(120))
        .out_dir(PathBuf::from(out))
        .plots(false)
        // the watchdog's variable (set by `test_harness`), through the one place the library
        // reads the environment
        .env_overrides_from(|var| {
            (var == "MEMTEST_WATCHDOG")
                .then(|| std::env::var(var).ok())
                .flatten()
        })
        .expect("MEMTEST_WATCHDOG is a switch")
        .build()
        .expect("the child scenario builds")
        .run_blocking();
    // Only reached when the run ends by itself: the watchdog exits the process.
    println!("{:?}", r.outcome);
}

fn scratch(test: &str, i: usize) -> PathBuf {
    common::out_dir(&format!("reliability/{test}/{i}"))
}

/// A scenario (in-process) with the tree knobs and `extra` ones.
fn scenario(test: &str, i: usize, extra: &[&str], requests: u64) -> ScenarioConfig {
    let mut knobs: Vec<String> = TREE_KNOBS.iter().map(|s| (*s).to_owned()).collect();
    knobs.extend(extra.iter().map(|s| (*s).to_owned()));
    ScenarioConfig::new(format!("{test}_{i}"), sglang_memtest::Workload::Text)
        .reference(knobs)
        .set("reference_bin", common::exe().display().to_string())
        .quick()
        .requests(requests)
        .max_requests(requests)
        .warmup_requests(2)
        .out_dir(scratch(test, i))
        .plots(false)
        .startup_timeout(Duration::from_secs(30))
}

/// Everything left by this process's fixtures (they carry our pid) and their segments.
fn our_mess(pids: &BTreeSet<u32>) -> (usize, usize) {
    let me = std::process::id();
    let orphans = if eventually(Duration::from_secs(10), || tagged(me).is_empty()) {
        0
    } else {
        tagged(me).len()
    };
    (orphans, segments_of(pids).len())
}

/// The server pids a report saw.
fn report_pids(r: &Report) -> BTreeSet<u32> {
    r.timeline.processes.keys().copied().collect()
}

// ---- the end paths, each a function run a few times here and 20 times by the stress test ----

fn path_pass(i: usize) -> Result<Ended, Box<dyn std::error::Error>> {
    let r = common::run(&scenario("pass", i, &[], 30));
    let pids = report_pids(&r);
    let (orphans, segments) = our_mess(&pids);
    assert!(
        r.shutdown
            .as_ref()
            .is_some_and(|s| s.shm_removed.len() >= 30),
        "teardown removes the leaked segments: {:?}",
        r.shutdown
    );
    Ok(Ended {
        orphans,
        segments,
        kept: format!("report {:?}", r.outcome),
        cleanup: Duration::ZERO,
    })
}

/// A test body whose assertion fails while its fixture runs.
fn path_assertion(i: usize) -> Result<Ended, Box<dyn std::error::Error>> {
    let seen: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let seen2 = Arc::clone(&seen);
    let logs = scratch("assertion", i);
    let joined = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let fx = rt
            .block_on(ServerFixture::start(reference_spec(&logs, &TREE_KNOBS)))
            .expect("starts");
        seen2.lock().expect("lock").extend(fx.pids());
        assert_eq!(fx.pids().len(), 0, "an assertion that fails on purpose");
    })
    .join();
    assert!(joined.is_err(), "the assertion failed");
    let pids = seen.lock().map_err(|e| e.to_string())?.clone();
    assert!(pids.len() >= 3, "{pids:?}");
    let (orphans, segments) = our_mess(&pids);
    Ok(Ended {
        orphans,
        segments,
        kept: "log file".into(),
        cleanup: Duration::ZERO,
    })
}

/// A panic inside the run: the workload panics at request 20.
fn path_panic(i: usize) -> Result<Ended, Box<dyn std::error::Error>> {
    let workload = Workload::custom("panics", |ctx: &RequestContext<'_>| {
        assert!(
            ctx.index < 20,
            "the workload panics on purpose at request 20"
        );
        Request::post(
            "/generate",
            json!({"text": ctx.prompt(), "sampling_params": {"max_new_tokens": 4}}),
        )
    });
    let name = format!("panic_{i}");
    let c = ScenarioConfig::custom(name.clone(), workload)
        .reference(TREE_KNOBS)
        .set("reference_bin", common::exe().display().to_string())
        .quick()
        .requests(100)
        .out_dir(scratch("panic", i))
        .plots(false);
    let s = c.build()?;
    let dir = s.out_dir().to_path_buf();
    let joined = std::thread::spawn(move || s.run_blocking()).join();
    assert!(joined.is_err(), "the run panicked");
    let processes = std::fs::read_to_string(dir.join(format!("{name}.processes.jsonl")))?;
    let pids: BTreeSet<u32> = processes
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["pid"].as_u64())
        .filter_map(|p| u32::try_from(p).ok())
        .collect();
    assert!(pids.len() >= 3, "{pids:?}");
    let (orphans, segments) = our_mess(&pids);
    Ok(Ended {
        orphans,
        segments,
        kept: kept(&dir.join(format!("{name}.json"))),
        cleanup: Duration::ZERO,
    })
}

fn path_startup_timeout(i: usize) -> Result<Ended, Box<dyn std::error::Error>> {
    let r = common::run(
        &scenario("startup_timeout", i, &["--startup-delay-ms=30000"], 10)
            .startup_timeout(Duration::from_secs(1)),
    );
    let message = r
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(message.contains("was not ready within 1s"), "{message}");
    let (orphans, _) = our_mess(&BTreeSet::new());
    Ok(Ended {
        orphans,
        segments: 0,
        kept: format!("report {:?}", r.outcome),
        cleanup: Duration::ZERO,
    })
}

/// A run cancelled by its token, in the middle of the requests, then another run in the same
/// process: the second is not touched by the first's cancellation.
fn path_cancelled(i: usize) -> Result<Ended, Box<dyn std::error::Error>> {
    let s = scenario("cancelled", i, &[], 100_000).build()?;
    let rt = tokio::runtime::Runtime::new()?;
    let token = CancellationToken::new();
    let stopper = token.clone();
    let dir = s.out_dir().to_path_buf();
    let name = s.name().to_owned();
    let r = rt.block_on(async {
        tokio::spawn(async move {
            let marks = dir.join(format!("{name}.marks.csv"));
            loop {
                let n = tokio::fs::read_to_string(&marks)
                    .await
                    .map(|t| t.lines().filter(|l| l.contains(",measure,")).count())
                    .unwrap_or(0);
                if n >= 20 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stopper.cancel();
        });
        s.run_until(&token).await
    });
    assert_eq!(r.outcome, RunOutcome::Error, "{}", r.summary());
    let message = r
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(message.contains("interrupted after"), "{message}");
    assert!(r.requests.as_ref().is_some_and(|q| q.sent >= 20));
    let pids = report_pids(&r);
    let (orphans, segments) = our_mess(&pids);
    // Nothing sticky: the next run of the process passes.
    let next = common::run(&scenario("after_cancel", i, &[], 20));
    assert_ne!(next.outcome, RunOutcome::Error, "{}", next.summary());
    Ok(Ended {
        orphans,
        segments,
        kept: format!(
            "report {:?}, {} requests",
            r.outcome,
            r.requests.map_or(0, |q| q.sent)
        ),
        cleanup: Duration::ZERO,
    })
}

fn path_cli_signal(i: usize, signal: Signal) -> Result<Ended, Box<dyn std::error::Error>> {
    let dir = scratch(&format!("cli_{signal}"), i);
    let child = cli_harness(&dir, &[])?;
    let (ended, code, pids) = signal_harness(child, &dir, "text_model", signal, false)?;
    if signal == Signal::SIGKILL {
        // No handler ran in the harness: its reaper removed the leaked segments (checked in
        // `signal_harness`, before any other fixture start could have).
        assert!(!pids.is_empty(), "{ended:?}");
        assert!(ended.kept.contains("did not finish"), "{ended:?}");
    } else {
        assert_eq!(code, Some(128 + signal as i32), "{ended:?}");
        assert!(ended.kept.contains("interrupted"), "{ended:?}");
    }
    Ok(ended)
}

fn path_test_signal(i: usize, signal: Signal) -> Result<Ended, Box<dyn std::error::Error>> {
    let dir = scratch(&format!("test_{signal}"), i);
    let child = test_harness(&dir, false)?;
    let (ended, code, _) = signal_harness(child, &dir, "harness", signal, false)?;
    if signal == Signal::SIGKILL {
        assert_eq!(code, None, "{ended:?}");
        assert!(ended.kept.contains("did not finish"), "{ended:?}");
    } else {
        assert_eq!(code, Some(128 + signal as i32), "{ended:?}");
        assert!(ended.kept.contains("interrupted"), "{ended:?}");
    }
    Ok(ended)
}

fn path_cli_startup_interrupt(i: usize) -> Result<Ended, Box<dyn std::error::Error>> {
    let dir = scratch("cli_startup", i);
    let child = cli_harness(&dir, &["--reference-arg=--startup-delay-ms=60000"])?;
    let (ended, code, _) = signal_harness(child, &dir, "text_model", Signal::SIGINT, true)?;
    assert_eq!(code, Some(130), "{ended:?}");
    assert!(
        ended.cleanup < Duration::from_secs(20),
        "the first Ctrl-C gives the start-up up: {ended:?}"
    );
    assert!(ended.kept.contains("interrupted while"), "{ended:?}");
    Ok(ended)
}

fn path_test_startup_interrupt(i: usize) -> Result<Ended, Box<dyn std::error::Error>> {
    let dir = scratch("test_startup", i);
    let child = test_harness(&dir, true)?;
    let (ended, code, _) = signal_harness(child, &dir, "harness", Signal::SIGINT, true)?;
    assert_eq!(code, Some(130), "{ended:?}");
    Ok(ended)
}

/// A reference server spec for a bare fixture, logging into `dir`.
fn reference_spec(dir: &Path, knobs: &[&str]) -> ServerSpec {
    let mut args = vec![
        "serve-reference".to_owned(),
        "--port".into(),
        "{port}".into(),
    ];
    args.extend(knobs.iter().map(|s| (*s).to_owned()));
    ServerSpec::command(common::exe(), args)
        .with_log_dir(dir)
        .with_startup_timeout(Duration::from_secs(30))
        .with_grace(Duration::from_secs(5))
}

type EndPath = fn(usize) -> Result<Ended, Box<dyn std::error::Error>>;

/// Every end path: its name and how to run it once.
fn end_paths() -> Vec<(&'static str, EndPath)> {
    vec![
        ("pass", path_pass),
        ("assertion failure", path_assertion),
        ("panic inside the run", path_panic),
        ("startup timeout", path_startup_timeout),
        ("cancelled token, then another run", path_cancelled),
        ("SIGINT to the CLI", |i| path_cli_signal(i, Signal::SIGINT)),
        ("SIGTERM to the CLI", |i| {
            path_cli_signal(i, Signal::SIGTERM)
        }),
        ("SIGKILL to the CLI", |i| {
            path_cli_signal(i, Signal::SIGKILL)
        }),
        ("SIGINT to cargo test (watchdog)", |i| {
            path_test_signal(i, Signal::SIGINT)
        }),
        ("SIGTERM to cargo test (watchdog)", |i| {
            path_test_signal(i, Signal::SIGTERM)
        }),
        ("SIGKILL to cargo test", |i| {
            path_test_signal(i, Signal::SIGKILL)
        }),
        ("Ctrl-C during start-up (CLI)", path_cli_startup_interrupt),
        (
            "Ctrl-C during start-up (cargo test)",
            path_test_startup_interrupt,
        ),
    ]
}

/// Runs every path `n` times; the rows of the table.
fn run_paths(n: usize) -> Vec<String> {
    let mut rows = Vec::new();
    for (name, path) in end_paths() {
        let (mut orphans, mut segments, mut worst) = (0, 0, Duration::ZERO);
        // What was kept, with the request counts folded into a range per wording.
        let mut kept: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
        for i in 0..n {
            let ended = path(i).unwrap_or_else(|e| panic!("{name} #{i}: {e}"));
            orphans += ended.orphans;
            segments += ended.segments;
            worst = worst.max(ended.cleanup);
            let first = ended.kept.split(',').next().unwrap_or_default();
            let n: Option<u64> = first.split_whitespace().find_map(|w| w.parse().ok());
            let wording = first
                .split_whitespace()
                .map(|w| if w.parse::<u64>().is_ok() { "{n}" } else { w })
                .collect::<Vec<_>>()
                .join(" ");
            let range = kept.entry(wording).or_insert((u64::MAX, 0));
            if let Some(n) = n {
                *range = (range.0.min(n), range.1.max(n));
            }
        }
        let row = format!(
            "| {name} | {n} | {orphans} | {segments} | {} | {:.1} s |",
            kept.into_iter()
                .map(|(wording, (lo, hi))| match (lo, hi) {
                    (u64::MAX, _) => wording,
                    (lo, hi) if lo == hi => wording.replacen("{n}", &lo.to_string(), 1),
                    (lo, hi) => wording.replacen("{n}", &format!("{lo}–{hi}"), 1),
                })
                .collect::<Vec<_>>()
                .join("; "),
            worst.as_secs_f64()
        );
        println!("{row}");
        rows.push(row);
        let (o, s) = (orphans, segments);
        assert!(o == 0 && s == 0, "{name}: {o} orphans, {s} segments left");
    }
    rows
}

#[test]
#[serial]
fn every_end_path_leaves_nothing_a_few_times() {
    run_paths(2);
}

#[test]
#[serial]
#[ignore = "the stress run: 20 of each end path, ~15 min; prints the table of docs/reliability.md"]
fn stress_every_end_path() {
    println!(
        "| end path | repetitions | orphans | leftover segments | data kept | slowest cleanup |"
    );
    println!("|---|---|---|---|---|---|");
    run_paths(20);
}

// ---- ours only ----

/// Another process's `psm_*` segments made during a run: neither counted nor removed.
#[test]
#[serial]
fn foreign_segments_made_during_a_run_are_not_counted_and_not_removed() -> TestResult {
    let me = std::process::id();
    let names = [
        format!("psm_memtest_foreign_{me}_held"),
        format!("psm_memtest_foreign_{me}_closed"),
        format!("sgl_shm_memtest_foreign_{me}"),
    ];
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| Path::new("/dev/shm").join(n))
        .collect();
    let s = scenario("foreign", 0, &[], 60).build()?;
    let marks = s.out_dir().join("foreign_0.marks.csv");
    let maker_paths = paths.clone();
    // "Another process": a shell that makes the segments once the run measures, holds one open
    // and one SGLang-named one, and leaves the third closed.
    let maker = std::thread::spawn(move || -> std::io::Result<std::process::Child> {
        eventually(Duration::from_secs(30), || marks.exists());
        let p: Vec<String> = maker_paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        Command::new("sh")
            .args([
                "-c",
                "head -c 4194304 /dev/urandom > \"$1\"; head -c 4194304 /dev/urandom > \"$2\"; \
                 head -c 1048576 /dev/urandom > \"$3\"; exec 3<\"$1\" 4<\"$3\"; sleep 30",
                "sh",
                &p[0],
                &p[1],
                &p[2],
            ])
            .spawn()
    });
    let r = s.run_blocking();
    let mut other = maker.join().map_err(|_| "maker panicked")??;
    let exists: Vec<bool> = paths.iter().map(|p| p.exists()).collect();
    let _ = other.kill();
    let _ = other.wait();
    for p in &paths {
        let _ = std::fs::remove_file(p);
    }
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    assert_eq!(
        exists,
        [true, true, true],
        "another job's segments were removed"
    );
    let shutdown = r.shutdown.as_ref().ok_or("no shutdown report")?;
    for n in &names {
        assert!(
            !shutdown.shm_removed.contains(n),
            "{n} removed: {shutdown:?}"
        );
        assert!(
            shutdown.shm_left.contains(n),
            "{n} not reported: {shutdown:?}"
        );
    }
    // The server's own 64 KiB a request are its leak; the 9 MiB of the other job are not in it.
    let shm = r
        .verdict
        .as_ref()
        .and_then(|v| v.metric("shm.bytes"))
        .ok_or("shm.bytes not analysed")?;
    let slope = shm.slope.ok_or("no slope")?.point;
    assert!((40_000.0..100_000.0).contains(&slope), "slope {slope}");
    let max = |m: &str| {
        r.timeline
            .series
            .get(m)
            .map_or(0.0, |s| s.points.iter().map(|p| p.v).fold(0.0, f64::max))
    };
    assert!(
        max("shm.bytes") < 8.0 * 1024.0 * 1024.0,
        "{}",
        max("shm.bytes")
    );
    assert!(max("shm.bytes@host") >= max("shm.bytes") + 8.0 * 1024.0 * 1024.0);
    Ok(())
}

/// A process that leaves the group and loses its parent is found (by its tag), stopped and
/// reported.
#[tokio::test]
#[serial]
async fn a_process_that_escapes_the_group_is_still_stopped() -> TestResult {
    let dir = scratch("escape", 0);
    let fx = ServerFixture::start(reference_spec(&dir, &["--escape-child"])).await?;
    let root = fx.root_pid().ok_or("no root")?;
    let escaped = fx
        .pids()
        .into_iter()
        .find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"sglang::escaped"))
        })
        .ok_or("the escaped process is not in pids()")?;
    let stat = std::fs::read_to_string(format!("/proc/{escaped}/stat"))?;
    let pgrp: u32 = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().nth(2)?.parse().ok())
        .ok_or("no pgrp")?;
    assert_ne!(pgrp, root, "it left the group");
    let report = fx.stop().await?;
    assert!(
        report.signalled.iter().any(|p| p.pid == escaped),
        "{report:?}"
    );
    assert!(report.leftovers.is_empty(), "{report:?}");
    assert!(
        !common::alive(escaped),
        "escaped {escaped} survived teardown"
    );
    Ok(())
}

/// Eight fixtures started at once in one process: distinct ports, and each teardown removes
/// its own segments only.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[serial]
async fn eight_fixtures_at_once_never_collide() -> TestResult {
    eight_at_once(&scratch("eight", std::process::id() as usize)).await
}

async fn eight_at_once(dir: &Path) -> TestResult {
    let starts = (0..8).map(|i| {
        let spec = reference_spec(dir, &["--shm-leak-bytes-per-request=4096"])
            .with_name(format!("eight_{i}"));
        ServerFixture::start(spec)
    });
    let fixtures: Vec<ServerFixture> = futures_join_all(starts)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let ports: BTreeSet<u16> = fixtures.iter().map(ServerFixture::port).collect();
    assert_eq!(ports.len(), 8, "{ports:?}");
    let client = reqwest::Client::builder().no_proxy().build()?;
    for fx in &fixtures {
        for _ in 0..3 {
            let answer = client
                .post(format!("{}/generate", fx.base_url()))
                .json(&json!({"text": "hi", "sampling_params": {"max_new_tokens": 2}}))
                .send()
                .await?;
            assert!(answer.status().is_success());
        }
    }
    let roots: Vec<u32> = fixtures
        .iter()
        .filter_map(ServerFixture::root_pid)
        .collect();
    let stops = fixtures.into_iter().map(ServerFixture::stop);
    let reports = futures_join_all(stops).await;
    for (report, root) in reports.into_iter().zip(&roots) {
        let report = report?;
        assert_eq!(report.shm_removed.len(), 3, "{report:?}");
        assert!(
            report
                .shm_removed
                .iter()
                .all(|n| n.starts_with(&format!("sgl_shm_reference_{root}_"))),
            "a fixture removed another's segment: {report:?}"
        );
        assert!(report.leftovers.is_empty());
    }
    Ok(())
}

/// Several harness processes (copies of this binary) with fixtures at once: each passes.
#[test]
#[serial]
fn fixtures_in_several_processes_at_once_never_collide() -> TestResult {
    let children: Vec<std::process::Child> = (0..3)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .args(["--ignored", "--exact", "parallel_child", "--nocapture"])
                .env("MEMTEST_PARALLEL_CHILD", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for child in children {
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }
    Ok(())
}

/// Not a test of its own: one of the processes of the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[serial]
#[ignore = "run by fixtures_in_several_processes_at_once_never_collide"]
async fn parallel_child() -> TestResult {
    if std::env::var_os("MEMTEST_PARALLEL_CHILD").is_none() {
        return Ok(());
    }
    eight_at_once(&scratch("parallel", std::process::id() as usize)).await
}

/// `join_all` without a dependency: the futures run concurrently on the runtime.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
