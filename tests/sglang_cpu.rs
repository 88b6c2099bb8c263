//! The real-engine tier: a real SGLang server (PyPI `sglang==0.5.23`) serving tiny models on this
//! machine's CPU. The three scenarios must pass, two leaks planted inside SGLang must be caught and
//! attributed to the process that holds them, and no process, `/dev/shm` segment or temporary file
//! of the server may outlive a test — after a pass, a failed assertion or a panic.
//!
//! ```sh
//! scripts/setup-sglang-cpu.sh && cargo test --test sglang_cpu -- --ignored
//! ```
//!
//! The install is found in `MEMTEST_SGLANG_CPU_DIR` (default `~/.cache/sglang-memtest/sglang-cpu`).
//! Without it every test fails saying how to make it: this tier never skips.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serial_test::serial;
use sglang_memtest::ScenarioConfig;
use sglang_memtest::analysis::Outcome;
use sglang_memtest::fixture::ServerFixture;
use sglang_memtest::load::{Mix, RequestKind};
use sglang_memtest::report::{Report, RunOutcome};
use sglang_memtest::tracker::idle::RUNNING_REQS;
use sglang_memtest::tracker::{GpuMode, metric};

/// Bytes each planted leak keeps per request.
const PLANTED: u64 = 256 * 1024;
/// Measured requests of each scenario. The real scheduler takes deterministic allocator steps of
/// a few MiB in its first ~100 requests (see docs/validation-sglang-cpu.md): 300 requests leave
/// a flat stretch long enough to judge.
const REQUESTS: u64 = 300;
/// Measured requests with a planted leak: 256 KiB × 80 = 20 MiB, far past any noise.
const PLANTED_REQUESTS: u64 = 80;

/// The `MEMTEST_*` settings `scripts/setup-sglang-cpu.sh` wrote (device, python, models).
fn install() -> HashMap<String, String> {
    let dir = std::env::var_os("MEMTEST_SGLANG_CPU_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/sglang-memtest/sglang-cpu"))
        })
        .expect("HOME or MEMTEST_SGLANG_CPU_DIR must be set");
    let file = dir.join("memtest.env");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "no SGLang CPU install at {} ({e}): run scripts/setup-sglang-cpu.sh first \
             (or set MEMTEST_SGLANG_CPU_DIR to where it installed)",
            dir.display()
        )
    });
    let vars: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let python = vars.get("MEMTEST_PYTHON").map(PathBuf::from);
    assert!(
        python.as_ref().is_some_and(|p| p.is_file()),
        "{} names no usable MEMTEST_PYTHON: re-run scripts/setup-sglang-cpu.sh",
        file.display()
    );
    vars
}

/// The planted-leak patches (put on the server's PYTHONPATH).
fn planted_leaks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sglang/planted_leaks")
}

fn out_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("sglang_cpu")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A preset as the scenario tests run it, on the CPU install: the install's settings layered
/// as the environment would be, then this tier's pacing.
fn on_cpu(preset: ScenarioConfig, test: &str, requests: u64) -> ScenarioConfig {
    let vars = install();
    preset
        .env_overrides_from(|k| vars.get(k).cloned())
        .unwrap_or_else(|e| panic!("the install's settings: {e}"))
        .named(test)
        .requests(requests)
        .request_interval(Duration::from_millis(20))
        .max_new_tokens(16)
        .startup_timeout(Duration::from_secs(300))
        .out_dir(out_dir(test))
}

fn run(c: ScenarioConfig) -> Judged {
    Judged(c.build().unwrap_or_else(|e| panic!("{e}")).run_blocking())
}

/// A run's report that, if the test fails while holding it, appends every judged metric that did
/// not pass — all its reasons, not the summary's first six — and the run's length to
/// `target/tmp/sglang_cpu/FAILED.txt`, which `.ci/run` prints last (a CI log keeps its tail).
struct Judged(Report);

impl std::ops::Deref for Judged {
    type Target = Report;
    fn deref(&self) -> &Report {
        &self.0
    }
}

impl Drop for Judged {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let r = &self.0;
        let test = std::thread::current().name().unwrap_or("?").to_owned();
        let mut text = format!("== {test}: {:?} · {}\n", r.outcome, r.scenario);
        for m in r.verdict.iter().flat_map(|v| &v.metrics) {
            if !m.judged || m.outcome == Outcome::Pass {
                continue;
            }
            let role = metric::pid_of(&m.metric)
                .and_then(|pid| r.timeline.processes.get(&pid))
                .map_or(String::new(), |p| format!(" ({})", p.label()));
            text.push_str(&format!("  {:?} {}{role}\n", m.outcome, m.metric));
            for reason in &m.reasons {
                text.push_str(&format!("    - {reason}\n"));
            }
        }
        if let Some(l) = r
            .summary()
            .lines()
            .find(|l| l.trim_start().starts_with("length:"))
        {
            text.push_str(&format!("{l}\n"));
        }
        let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sglang_cpu/FAILED.txt");
        let _ = std::fs::create_dir_all(file.parent().unwrap_or(Path::new(".")));
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
        {
            use std::io::Write;
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// What is in `/dev/shm` now.
fn shm_names() -> BTreeSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            != Some("Z")
    })
}

/// Nothing of the server is left: no process it ran, no `/dev/shm` entry that appeared since
/// `shm_before`, no private temporary folder.
fn assert_nothing_left(pids: &[u32], shm_before: &BTreeSet<String>, tmp: Option<&Path>) {
    let alive: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(alive.is_empty(), "processes outlived the server: {alive:?}");
    // Entries of this crate's own test servers running beside (reference servers, the
    // foreign-segment test of tests/reliability.rs) are never SGLang's.
    let ours_beside = |n: &String| n.contains("_reference_") || n.contains("memtest_foreign");
    let new: Vec<String> = shm_names()
        .difference(shm_before)
        .filter(|n| !ours_beside(n))
        .cloned()
        .collect();
    assert!(new.is_empty(), "/dev/shm entries left behind: {new:?}");
    if let Some(tmp) = tmp {
        assert!(
            !tmp.exists(),
            "the server's temporary folder {} is still there",
            tmp.display()
        );
    }
}

/// Roles of the processes seen during the run.
/// Nothing of `r`'s server is left: no process, no `/dev/shm` entry beyond `before`, no
/// temporary folder.
fn assert_torn_down(r: &Report, before: &BTreeSet<String>) {
    let shutdown = r.shutdown.as_ref().expect("a shutdown record");
    let pids: Vec<u32> = r.timeline.processes.keys().copied().collect();
    assert_nothing_left(&pids, before, shutdown.tmp_dir.as_deref());
}

fn roles(r: &Report) -> BTreeSet<String> {
    r.timeline
        .processes
        .values()
        .map(|p| p.label().to_owned())
        .collect()
}

/// The roles of the processes whose RSS leaked.
fn leaking_roles(r: &Report) -> Vec<String> {
    r.verdict
        .iter()
        .flat_map(|v| v.leaks())
        .filter(|m| m.metric.starts_with("host.rss@pid:"))
        .filter_map(|m| metric::pid_of(&m.metric))
        .filter_map(|pid| r.timeline.processes.get(&pid))
        .map(|p| p.label().to_owned())
        .collect()
}

/// The per-process RSS verdict of the process with `role`.
fn rss_of<'a>(r: &'a Report, role: &str) -> &'a sglang_memtest::analysis::MetricAnalysis {
    let pid = r
        .timeline
        .processes
        .values()
        .find(|p| p.label() == role)
        .unwrap_or_else(|| panic!("no {role} process among {:?}", roles(r)))
        .pid;
    let name = metric::host_pid("rss", pid);
    r.verdict
        .as_ref()
        .and_then(|v| v.metrics.iter().find(|m| m.metric == name))
        .unwrap_or_else(|| panic!("no verdict for {name}\n{}", r.summary()))
}

/// Runs a scenario that must pass, and checks what every real-engine run must show: SGLang's
/// tree by role, GPU metrics off with the reason, and nothing left behind.
fn assert_passes(c: ScenarioConfig) -> Judged {
    let before = shm_names();
    let r = run(c);
    eprintln!("{}", r.summary());
    r.assert_pass();
    assert_clean_run(&r, &before);
    r
}

/// Runs a scenario that must not leak: no judged metric leaks and any metric left undecided grew
/// less than its floor. A clean SGLang 0.5.23 drifts about 1 KiB/request — the tokenizer manager,
/// or the tree's sum — over a few hundred requests after its warm-up, right on the 1 GiB per
/// million requests limit: too little to call either way at this length, and the verdict says
/// so (docs/validation-sglang-cpu.md, stop 32). Everything else as [`assert_passes`].
fn assert_no_leak(c: ScenarioConfig) -> Judged {
    let before = shm_names();
    let r = run(c);
    eprintln!("{}", r.summary());
    assert!(
        matches!(r.outcome, RunOutcome::Pass | RunOutcome::Inconclusive),
        "{}",
        r.summary()
    );
    let v = r.verdict.as_ref().expect("a verdict");
    for m in v
        .metrics
        .iter()
        .filter(|m| m.judged && m.outcome != Outcome::Pass)
    {
        let floor = v
            .thresholds
            .rule_for(&m.metric)
            .map_or(0.0, |x| x.min_growth);
        assert!(
            m.outcome == Outcome::Inconclusive && m.growth < floor,
            "{} is {:?} after growing {:.0} bytes (floor {floor:.0})\n{}",
            m.metric,
            m.outcome,
            m.growth,
            r.summary()
        );
    }
    assert_clean_run(&r, &before);
    r
}

/// What every clean real-engine run must show: SGLang's tree by role, GPU metrics off with the
/// reason, a clean shutdown, and nothing left behind.
fn assert_clean_run(r: &Report, before: &BTreeSet<String>) {
    let seen = roles(r);
    for role in ["tokenizer_manager", "scheduler", "detokenizer"] {
        assert!(seen.contains(role), "no {role} among {seen:?}");
    }
    let gpu = r.timeline.sources.iter().find(|s| s.name == "gpu");
    assert!(
        gpu.is_some_and(|g| g.note.as_deref().is_some_and(|n| n.contains("CPU"))),
        "the report must say why GPU metrics are off: {gpu:?}"
    );
    let shutdown = r.shutdown.as_ref().expect("a shutdown record");
    assert!(shutdown.is_clean(), "{shutdown:?}");
    assert_torn_down(r, before);
}

#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn text_model_passes() {
    let c = on_cpu(ScenarioConfig::text_model(), "text_model", REQUESTS);
    assert_eq!(
        c.clone().build().map(|s| s.tracker().gpu).ok(),
        Some(GpuMode::Off)
    );
    let r = assert_passes(c);
    // SGLang's own accounting reached the timeline.
    assert!(
        r.timeline.series.contains_key("server.num_used_tokens"),
        "no SGLang /metrics on the timeline"
    );
    // ...and is back at idle after the cooldown, read fresh from /v1/loads.
    let a = r.idle_accounting.as_ref().expect("idle accounting");
    assert_eq!(a.source.as_deref(), Some("/v1/loads"), "{a:?}");
    assert_eq!(a.outcome, Some(Outcome::Pass), "{a:?}");
    assert_eq!(r.log_watch.as_ref().map(|l| l.total_matches), Some(0));
}

#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn vlm_no_mm_processor_passes() {
    assert_passes(on_cpu(
        ScenarioConfig::vlm_no_mm_processor(),
        "vlm_no_mm_processor",
        REQUESTS,
    ));
}

/// Unique images to the VLM. A clean SGLang 0.5.23 keeps memory per unique image in its
/// scheduler (measured 10–24 KiB/image on this CPU, above the 1 GiB-per-million budget): about
/// 4.4 KiB/image is `RotaryPosMixin.rot_pos_ids`, an `lru_cache(maxsize=1024)` keyed on 0-d
/// tensors that never hits, the rest native (`docs/validation-sglang-cpu.md`). So this run is
/// not required to pass: it must run every image through the vision tower, tear everything
/// down, and — when memory grows — name the scheduler (where the vision tower runs), never
/// another process.
#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn vlm_image_runs_and_any_growth_is_the_schedulers() {
    let before = shm_names();
    let r = run(on_cpu(ScenarioConfig::vlm_image(), "vlm_image", REQUESTS));
    eprintln!("{}", r.summary());
    let requests = r.requests.as_ref().expect("request counts");
    assert_eq!(requests.failed, 0, "{}", r.summary());
    assert!(requests.images >= REQUESTS, "{}", r.summary());
    assert_ne!(r.outcome, RunOutcome::Error, "{}", r.summary());
    let seen = roles(&r);
    for role in ["tokenizer_manager", "scheduler", "detokenizer"] {
        assert!(seen.contains(role), "no {role} among {seen:?}");
    }
    let leaking = leaking_roles(&r);
    assert!(
        leaking.iter().all(|role| role == "scheduler"),
        "growth named outside the scheduler: {leaking:?}\n{}",
        r.summary()
    );
    let shutdown = r.shutdown.as_ref().expect("a shutdown record");
    assert!(shutdown.is_clean(), "{shutdown:?}");
    assert_torn_down(&r, &before);
}

/// Measured requests of the `error_paths` scenario (capped: no adaptive extension past it).
const ERROR_PATH_REQUESTS: u64 = 150;

/// Every error path of the `error_paths` mix reaches real SGLang and is answered as planned:
/// rejections refused (400), aborts aborted (running and queued), streams dropped mid-way — and
/// none of it leaks, leaves a request running, or leaves anything behind.
#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn error_paths_reach_sglang_and_pass() {
    let c = on_cpu(
        ScenarioConfig::error_paths(),
        "error_paths",
        ERROR_PATH_REQUESTS,
    )
    // SGLang's tokenizer manager caches the chat template of up to 128 distinct prompts: a
    // warm-up past them (run 8 on an H100; `--py-heap` in docs/validation-sglang-cpu.md).
    .warmup_requests(150)
    .max_requests(4 * ERROR_PATH_REQUESTS);
    // Not a leak, and any drift below the floor (the tree read +1.4 KiB/request, 854 KiB over
    // 600 requests, in one clean run): `assert_no_leak`.
    let r = assert_no_leak(c);
    let q = r.requests.as_ref().expect("request counts");
    assert_eq!(q.failed, 0, "{}", r.summary());
    for kind in Mix::error_paths().kinds() {
        let c = q
            .by_kind
            .get(kind.as_str())
            .unwrap_or_else(|| panic!("no {kind} requests\n{}", r.summary()));
        assert!(c.measured > 0 && c.failed == 0, "{kind}: {c:?}");
        if kind.is_rejection() {
            assert_eq!(c.rejected, c.sent, "{kind} must all be refused: {c:?}");
        }
        if kind.is_abort() {
            // Aborted while running or queued; an abort that lost the race to the last token
            // is allowed, but the path must be taken.
            assert!(2 * c.aborted >= c.sent, "{kind} barely aborted: {c:?}");
        }
        if kind == RequestKind::Disconnect {
            assert_eq!(c.disconnected, c.sent, "{c:?}");
        }
    }
    // No request of an aborted or abandoned stream kept running (SGLang's own count).
    let idle = r.idle_accounting.as_ref().expect("idle accounting");
    assert_eq!(
        idle.check(RUNNING_REQS).map(|c| c.outcome),
        Some(Outcome::Pass),
        "{}",
        r.summary()
    );
}

/// A leak planted on SGLang's abort path (the tokenizer manager keeps bytes for every request it
/// aborts) is caught by a workload that aborts, in that process, and attributed to the abort
/// kind: the abort requests reach SGLang's abort code.
#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn a_leak_on_sglangs_abort_path_follows_the_abort_requests() {
    let before = shm_names();
    let c = on_cpu(
        ScenarioConfig::text_model(),
        "planted_abort",
        PLANTED_REQUESTS,
    )
    .set("mix", "abort=0.4")
    .server_env("PYTHONPATH", planted_leaks_dir().display().to_string())
    .server_env("MEMTEST_SGLANG_LEAK", "abort")
    .server_env("MEMTEST_SGLANG_LEAK_BYTES", (4 * PLANTED).to_string());
    let r = run(c);
    eprintln!("{}", r.summary());
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    assert_eq!(leaking_roles(&r), ["tokenizer_manager"], "{}", r.summary());
    let m = rss_of(&r, "tokenizer_manager");
    let split = m
        .by_kind
        .as_ref()
        .unwrap_or_else(|| panic!("no per-kind split\n{}", r.summary()));
    assert_eq!(split.follows, ["abort"], "{}", split.finding);
    assert_torn_down(&r, &before);
}

/// A leak planted in `role`'s process (see `fixtures/sglang/planted_leaks`) must be called, in
/// that process and no other, at about the planted rate.
fn planted_leak_is_caught(role: &str) {
    let before = shm_names();
    let c = on_cpu(
        ScenarioConfig::text_model(),
        &format!("planted_{role}"),
        PLANTED_REQUESTS,
    )
    .server_env("PYTHONPATH", planted_leaks_dir().display().to_string())
    .server_env("MEMTEST_SGLANG_LEAK", role)
    .server_env("MEMTEST_SGLANG_LEAK_BYTES", PLANTED.to_string());
    let r = run(c);
    eprintln!("{}", r.summary());
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    assert_eq!(leaking_roles(&r), [role], "{}", r.summary());
    let m = rss_of(&r, role);
    let slope = m.slope.expect("a slope").point;
    assert!(
        (0.8 * PLANTED as f64..1.3 * PLANTED as f64).contains(&slope),
        "{role} grew {slope} B/request, planted {PLANTED}\n{}",
        r.summary()
    );
    let other = if role == "scheduler" {
        "tokenizer_manager"
    } else {
        "scheduler"
    };
    // The other process is not called a leak (at 80 requests it may still be warming up:
    // SGLang's tokenizer manager fills a 128-prompt chat-template cache).
    assert_ne!(rss_of(&r, other).outcome, Outcome::Leak, "{}", r.summary());
    assert_torn_down(&r, &before);
}

#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn leak_planted_in_the_tokenizer_manager_is_caught_there() {
    planted_leak_is_caught("tokenizer_manager");
}

#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn leak_planted_in_the_scheduler_is_caught_there() {
    planted_leak_is_caught("scheduler");
}

/// The line of the planted-leak fixture that keeps the bytes.
fn planted_line() -> u32 {
    let src = std::fs::read_to_string(planted_leaks_dir().join("sitecustomize.py"))
        .expect("the planted-leak fixture");
    let at = src
        .lines()
        .position(|l| l.trim() == "_KEPT.append(os.urandom(nbytes))")
        .expect("the fixture keeps its bytes in _keep");
    at as u32 + 1
}

/// `--py-heap` inside real SGLang: the tracer reaches the scheduler (a spawned child), chains
/// to the planted-leak fixture's `sitecustomize` (both run), and names the planted line first
/// in the scheduler, with about the planted bytes — and not in the tokenizer manager.
#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn py_heap_names_the_planted_line_in_the_scheduler() {
    let before = shm_names();
    let c = on_cpu(
        ScenarioConfig::text_model(),
        "planted_py_heap",
        PLANTED_REQUESTS,
    )
    .server_env("PYTHONPATH", planted_leaks_dir().display().to_string())
    .server_env("MEMTEST_SGLANG_LEAK", "scheduler")
    .server_env("MEMTEST_SGLANG_LEAK_BYTES", PLANTED.to_string())
    .set("py_heap", "1");
    let r = run(c);
    eprintln!("{}", r.summary());
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    // The tracer's own tables grow in every traced process (0.6–0.8 MiB over a run), so over 80
    // requests the tokenizer manager may be called too; the scheduler must be.
    assert!(
        leaking_roles(&r).iter().any(|role| role == "scheduler"),
        "{}",
        r.summary()
    );
    let pid_of = |role: &str| {
        r.timeline
            .processes
            .values()
            .find(|p| p.label() == role)
            .unwrap_or_else(|| panic!("no {role} among {:?}", roles(&r)))
            .pid
    };
    let h = r
        .diagnosis
        .as_ref()
        .and_then(|d| d.py_heap.as_ref())
        .unwrap_or_else(|| panic!("no Python heap section\n{}", r.summary()));
    assert_eq!(h.focus, Some(pid_of("scheduler")), "{}", r.summary());
    let scheduler = &h.processes[0];
    let top = scheduler
        .sites
        .first()
        .expect("a site grew in the scheduler");
    assert!(
        top.file.ends_with("planted_leaks/sitecustomize.py") && top.line == planted_line(),
        "the scheduler's top site is {}, not the planted line {}\n{}",
        top.place(),
        planted_line(),
        r.summary()
    );
    let per = top.per_request.expect("per request");
    assert!(
        (0.9 * PLANTED as f64..1.1 * PLANTED as f64).contains(&per),
        "{} B/request at the planted line, planted {PLANTED}",
        per
    );
    let tm = h
        .processes
        .iter()
        .find(|p| p.pid == pid_of("tokenizer_manager"))
        .unwrap_or_else(|| panic!("the tokenizer manager was traced too: {:?}", h.notes));
    assert!(
        tm.sites
            .iter()
            .all(|s| s.line != planted_line() || !s.file.contains("planted_leaks")),
        "the planted line is named in the tokenizer manager: {tm:?}"
    );
    assert_torn_down(&r, &before);
}

/// KV tokens the planted `kv_tokens` leak keeps per request (SGLang's page size is 1 on the CPU).
const PLANTED_TOKENS: u64 = 16;
/// Measured requests with the planted KV leak: the accounting is exact, a few requests decide.
const KV_REQUESTS: u64 = 40;
/// Warm-up requests before them (each keeps its tokens too).
const KV_WARMUP: u64 = 150;

/// Bytes the real-size detokenizer leak keeps per request: the size of a real one from SGLang's
/// history (1.8 KiB/request), 2 GiB per million requests.
const SMALL_LEAK: u64 = 2048;
/// Bytes kept per rejected request by the tokenizer-manager leak on SGLang's rejection path.
const REJECT_LEAK: u64 = 64 * 1024;

fn planted(c: ScenarioConfig, leak: &str, bytes: u64) -> ScenarioConfig {
    c.server_env("PYTHONPATH", planted_leaks_dir().display().to_string())
        .server_env("MEMTEST_SGLANG_LEAK", leak)
        .server_env("MEMTEST_SGLANG_LEAK_BYTES", bytes.to_string())
}

/// A leak at the size real ones have — 2 KiB per request, kept by SGLang's detokenizer — is
/// called in that process at the default settings (the adaptive rule runs as long as it needs),
/// and `compare` of a clean run against it fails the "PR" (exit 3) on that process.
#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn a_2_kib_leak_in_the_detokenizer_is_caught_there_and_compare_fails_it() {
    let before = shm_names();
    let clean = run(on_cpu(
        ScenarioConfig::text_model(),
        "small_leak_baseline",
        REQUESTS,
    ));
    eprintln!("{}", clean.summary());
    clean.assert_pass();
    let leaking = run(planted(
        on_cpu(ScenarioConfig::text_model(), "small_leak", REQUESTS),
        "detokenizer",
        SMALL_LEAK,
    ));
    eprintln!("{}", leaking.summary());
    assert_eq!(leaking.outcome, RunOutcome::Leak, "{}", leaking.summary());
    assert_eq!(
        leaking_roles(&leaking),
        ["detokenizer"],
        "{}",
        leaking.summary()
    );
    let slope = rss_of(&leaking, "detokenizer")
        .slope
        .expect("a slope")
        .point;
    assert!(
        (0.6 * SMALL_LEAK as f64..1.6 * SMALL_LEAK as f64).contains(&slope),
        "the detokenizer grew {slope} B/request, planted {SMALL_LEAK}\n{}",
        leaking.summary()
    );
    // The CLI's compare, as a CI job runs it: the baseline against the "PR".
    let path = |r: &Report| r.files.json.clone().expect("a JSON report");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sglang-memtest"))
        .arg("compare")
        .args([path(&clean), path(&leaking)])
        .output()
        .expect("run sglang-memtest compare");
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{table}");
    assert!(table.contains("regressed: host.rss@detokenizer"), "{table}");
    assert_torn_down(&leaking, &before);
}

/// 64 KiB kept per request SGLang rejects (the error-paths mix: three kinds of rejection, a
/// tenth of the requests each) is a leak of those kinds in the tokenizer manager, named by kind,
/// even though averaged over every request it is small.
#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn a_leak_on_rejected_requests_is_called_on_those_kinds() {
    let before = shm_names();
    // Twice the clean run's length planned, the adaptive rule's budget (4 ×): each rejection
    // kind comes in blocks of a few requests, and a leak that points at a kind not yet named runs
    // on until the per-kind test has enough of its blocks.
    let r = run(planted(
        on_cpu(
            ScenarioConfig::error_paths(),
            "reject_leak",
            2 * ERROR_PATH_REQUESTS,
        ),
        "reject",
        REJECT_LEAK,
    ));
    eprintln!("{}", r.summary());
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    assert_eq!(leaking_roles(&r), ["tokenizer_manager"], "{}", r.summary());
    let m = rss_of(&r, "tokenizer_manager");
    let split = m
        .by_kind
        .as_ref()
        .unwrap_or_else(|| panic!("no per-kind judgement\n{}", r.summary()));
    let leaking: Vec<&str> = split
        .kinds
        .iter()
        .filter(|k| k.outcome == Outcome::Leak)
        .map(|k| k.kind.as_str())
        .collect();
    assert!(
        !leaking.is_empty() && leaking.iter().all(|k| k.starts_with("reject-")),
        "{leaking:?}\n{}",
        r.summary()
    );
    assert!(
        m.reasons
            .iter()
            .any(|x| x.contains("reject-") && x.contains("requests leak")),
        "{:?}",
        m.reasons
    );
    assert_torn_down(&r, &before);
}

/// A reference cycle per request (256 KiB each), freed only by Python's cyclic collector, is
/// memory that comes back: the run passes.
#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn reference_cycles_the_collector_frees_pass() {
    // Past the tokenizer manager's 128-prompt chat-template cache, so that what is judged is
    // the collector's sawtooth in the scheduler, not SGLang's warm-up beside it.
    let r = assert_no_leak(planted(
        on_cpu(ScenarioConfig::text_model(), "gc_cycle", REQUESTS).warmup_requests(150),
        "gc_cycle",
        PLANTED,
    ));
    assert_eq!(r.requests.as_ref().map(|q| q.failed), Some(0));
    // The collector's process and the tree pass: memory freed, cycle after cycle or by the flush.
    // (The tokenizer manager beside it may be left undecided by its own drift: the adaptive rule
    // stops on the scheduler's straight climb at the planned look — a leak until the cooldown's
    // collection gives it back — so the drift gets no extension; the report says so.)
    let scheduler = rss_of(&r, "scheduler");
    assert_eq!(scheduler.outcome, Outcome::Pass, "{:?}", scheduler.reasons);
    let tree = r.metric("host.rss@tree").expect("the tree's verdict");
    assert_eq!(tree.outcome, Outcome::Pass, "{:?}", tree.reasons);
}

/// `text_model` with KV slots planted in SGLang's scheduler (see `fixtures/sglang/planted_leaks`).
fn kv_leak(test: &str) -> ScenarioConfig {
    // A fixed length: the accounting is exact per request, and memory (flat) has nothing to
    // decide that would be worth extending the run for.
    on_cpu(ScenarioConfig::text_model(), test, KV_REQUESTS)
        .max_requests(KV_REQUESTS)
        .server_env("PYTHONPATH", planted_leaks_dir().display().to_string())
        .server_env("MEMTEST_SGLANG_LEAK", "kv_tokens")
        .server_env("MEMTEST_SGLANG_LEAK_TOKENS", PLANTED_TOKENS.to_string())
}

#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn a_kv_token_leak_memory_cannot_see_is_caught_by_the_idle_accounting() {
    let before = shm_names();
    // SGLang's idle check only warns with strict mode off: the server lives to the end.
    // Warmed up past the tokenizer manager's 128-prompt chat-template cache: 40 measured requests
    // after 5 warm-up ones caught its warm-up growth (+20 KiB/request in the tree) in some runs.
    let c = kv_leak("planted_kv_tokens")
        .server_env("SGLANG_ENABLE_STRICT_MEM_CHECK_DURING_IDLE", "0")
        .warmup_requests(KV_WARMUP);
    let r = run(c);
    eprintln!("{}", r.summary());
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    // Memory does not see it: no memory metric leaks (the KV pool is preallocated).
    let memory = r.verdict.as_ref().expect("a memory verdict");
    assert_ne!(memory.outcome, Outcome::Leak, "{}", r.summary());
    let a = r.idle_accounting.as_ref().expect("idle accounting");
    assert_eq!(a.source.as_deref(), Some("/v1/loads"), "{a:?}");
    let kv = a
        .check(sglang_memtest::tracker::idle::KV_TOKENS)
        .expect("a KV check");
    assert_eq!(kv.outcome, Outcome::Leak, "{}", kv.reason);
    // Every request the harness sent (warm-up and measured) left exactly its planted tokens.
    let sent = r.requests.as_ref().map_or(0, |q| q.sent);
    assert_eq!(sent, KV_REQUESTS + KV_WARMUP);
    assert_eq!(
        (kv.before, kv.after),
        (0.0, (PLANTED_TOKENS * sent) as f64),
        "{}",
        kv.reason
    );
    assert_eq!(kv.per_request, Some(PLANTED_TOKENS as f64));
    let running = a
        .check(sglang_memtest::tracker::idle::RUNNING_REQS)
        .expect("a running check");
    assert_eq!(running.outcome, Outcome::Pass, "{}", running.reason);
    // SGLang's own idle check saw it too, and its warning is quoted.
    let log = r.log_watch.as_ref().expect("the log was watched");
    let first = log.first().expect("SGLang's own check in its log");
    assert!(first.text.contains("memory leak detected"), "{first:?}");
    assert_torn_down(&r, &before);
}

#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn sglang_killed_by_its_own_leak_check_fails_the_run_cleanly_with_the_line_quoted() {
    let before = shm_names();
    // SGLang's default: the idle check raises in the scheduler, which kills the server at the
    // first idle moment after a leaked request (the warm-up).
    let started = std::time::Instant::now();
    let r = run(kv_leak("planted_kv_tokens_strict"));
    eprintln!("{}", r.summary());
    assert!(started.elapsed() < Duration::from_secs(240), "no hang");
    assert_eq!(r.outcome, RunOutcome::Error, "{}", r.summary());
    let message = &r.error.as_ref().expect("an error").message;
    assert!(message.contains("memory leak detected"), "{message}");
    assert!(message.contains("the server then exited"), "{message}");
    assert!(
        matches!(
            r.error.as_ref().and_then(|e| e.cause()),
            Some(sglang_memtest::Error::Scenario(
                sglang_memtest::scenario::ScenarioError::EngineCheckFailed { .. }
            ))
        ),
        "{message}"
    );
    assert_torn_down(&r, &before);
}

/// Starts SGLang with the fixture and hands it to `body`, which fails (a failed assertion or a
/// panic) while the server runs: unwinding drops the fixture, whose `Drop` must take the whole
/// tree down.
fn torn_down_when_the_test_fails(body: fn(ServerFixture)) {
    let before = shm_names();
    let scenario = on_cpu(ScenarioConfig::text_model(), "lifecycle", REQUESTS)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let Some(server) = scenario
        .target()
        .engine()
        .filter(|e| e.engine().name() == "sglang")
    else {
        panic!("the preset launches SGLang")
    };
    let spec = server
        .clone()
        .into_spec()
        .with_log_dir(out_dir("lifecycle"))
        .with_startup_timeout(Duration::from_secs(300));
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let fixture = rt
        .block_on(ServerFixture::start(spec))
        .unwrap_or_else(|e| panic!("SGLang did not start: {e}"));
    let pids = fixture.pids();
    assert!(pids.len() >= 3, "SGLang's tree: {pids:?}");
    let root = fixture.root_pid().expect("a launched server");
    let tmp: Option<PathBuf> = std::fs::read_to_string(format!("/proc/{root}/environ"))
        .ok()
        .and_then(|env| {
            env.split('\0')
                .find_map(|kv| kv.strip_prefix("TMPDIR=").map(PathBuf::from))
        });
    assert!(
        tmp.as_ref().is_some_and(|t| t.is_dir()),
        "the server has no private TMPDIR: {tmp:?}"
    );
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || body(fixture)));
    assert!(failed.is_err(), "the test body was meant to fail");
    drop(rt);
    assert_nothing_left(&pids, &before, tmp.as_deref());
}

#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn nothing_is_left_after_a_failed_assertion() {
    torn_down_when_the_test_fails(|fixture| {
        assert_eq!(fixture.pids().len(), 0, "a failing assertion, on purpose");
    });
}

#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn nothing_is_left_after_a_panic() {
    torn_down_when_the_test_fails(|fixture| {
        let _server = fixture;
        panic!("a panic inside the test, on purpose");
    });
}

/// Bytes the GPU tier's tensor leaks keep here, on the CPU (per request, per image).
const TENSOR_PLANTED: u64 = 1 << 20;

/// The GPU tier's tensor leaks (`scheduler_tensor`, `image_tensor`: tests/sglang_gpu.rs) with
/// their tensors on the CPU: each hook must land in its own process, so that on a GPU the leak
/// is where the test says it is. A rename inside SGLang fails here, on every landing.
fn tensor_leak_lands_in(preset: ScenarioConfig, leak: &str, role: &str) {
    let before = shm_names();
    let c = on_cpu(preset, &format!("planted_{leak}"), 40)
        .server_env("PYTHONPATH", planted_leaks_dir().display().to_string())
        .server_env("MEMTEST_SGLANG_LEAK", leak)
        .server_env("MEMTEST_SGLANG_LEAK_DEVICE", "cpu")
        .server_env("MEMTEST_SGLANG_LEAK_BYTES", TENSOR_PLANTED.to_string());
    let r = run(c);
    eprintln!("{}", r.summary());
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    assert!(
        leaking_roles(&r).contains(&role.to_owned()),
        "{}",
        r.summary()
    );
    let slope = rss_of(&r, role).slope.expect("a slope").point;
    assert!(
        (0.8 * TENSOR_PLANTED as f64..1.3 * TENSOR_PLANTED as f64).contains(&slope),
        "{role} grew {slope} B/request, planted {TENSOR_PLANTED}\n{}",
        r.summary()
    );
    // Every other process grows far less: the planted bytes are in `role`. (At 40 requests a VLM
    // scheduler on the CPU may still take its early allocator steps, ~100 KiB/request: a leak
    // verdict of its own that the clean 300-request runs do not show.)
    for p in r.timeline.processes.values().filter(|p| p.label() != role) {
        let name = metric::host_pid("rss", p.pid);
        let other = r
            .verdict
            .as_ref()
            .and_then(|v| v.metric(&name))
            .and_then(|m| m.slope)
            .map_or(0.0, |s| s.point);
        assert!(
            other < TENSOR_PLANTED as f64 / 4.0,
            "{} grew {other} B/request beside the {leak} leak in {role}\n{}",
            p.label(),
            r.summary()
        );
    }
    assert_torn_down(&r, &before);
}

#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn the_gpu_tiers_scheduler_tensor_leak_lands_in_the_scheduler() {
    tensor_leak_lands_in(
        ScenarioConfig::text_model(),
        "scheduler_tensor",
        "scheduler",
    );
}

#[test]
#[ignore = "needs the SGLang CPU install: scripts/setup-sglang-cpu.sh"]
#[serial(sglang)]
fn the_gpu_tiers_image_tensor_leak_lands_in_the_tokenizer_manager() {
    tensor_leak_lands_in(
        ScenarioConfig::vlm_image(),
        "image_tensor",
        "tokenizer_manager",
    );
}
