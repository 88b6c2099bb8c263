//! GPU validation against the reference server on a real NVIDIA GPU.
//!
//! Every test here is `#[ignore]`d: it needs an NVIDIA GPU (NVML and the CUDA driver) and a
//! reference server built with `--features cuda`. Run them with
//!
//! ```text
//! cargo test --release --features cuda --test gpu -- --ignored --test-threads=1 --nocapture
//! ```
//!
//! On a machine without a GPU they fail with one sentence saying so; they never pass silently.
//! `MEMTEST_REFERENCE_BIN` overrides the reference server's executable (a copied build on the
//! GPU machine), `MEMTEST_OUT_DIR` the folder the reports go to. Results and the commands used
//! are in `docs/validation.md`.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serial_test::serial;
use sglang_memtest::analysis::{MetricAnalysis, Outcome};
use sglang_memtest::report::{Report, RunOutcome};
use sglang_memtest::tracker::{GpuMode, GpuProbe, Phase, metric};
use sglang_memtest::{ScenarioConfig, Target, Workload};

const MIB: f64 = 1024.0 * 1024.0;
const KIB: f64 = 1024.0;
/// Leak planted in test (a): one 2 MiB block per request, the CUDA allocator's segment size.
const LEAK_BYTES: u64 = 2 << 20;
/// Allocated, written and freed per request in test (b).
const ALLOC_BYTES: u64 = 64 << 20;
/// Measured requests per scenario.
const REQUESTS: usize = 100;
/// Name of the child that holds the CUDA context (`--leak-in-child` makes it child 0).
const SCHEDULER: &str = "sglang::scheduler";

/// Opens NVML or fails the test with one clear sentence.
fn need_gpu() -> GpuProbe {
    match GpuProbe::open(None) {
        Ok(probe) => probe,
        Err(why) => panic!("this test needs an NVIDIA GPU: {why}"),
    }
}

/// The reference server: `MEMTEST_REFERENCE_BIN` when set (a build copied to the GPU machine),
/// else the one cargo built beside this test.
fn reference_exe() -> PathBuf {
    match std::env::var_os("MEMTEST_REFERENCE_BIN").filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_sglang-memtest")),
    }
}

/// A fresh output folder: `$MEMTEST_OUT_DIR/<test>`, else the system temp dir.
fn out_dir(test: &str) -> PathBuf {
    let base = std::env::var_os("MEMTEST_OUT_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("memtest-gpu"));
    let dir = base.join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A GPU scenario: the reference server with `knobs`, 100 measured requests 10 ms apart, GPU
/// metrics required, default thresholds.
fn gpu_scenario(test: &str, knobs: &[String]) -> ScenarioConfig {
    let target = Target::Reference {
        exe: reference_exe(),
        args: knobs.to_vec(),
    };
    ScenarioConfig::new(test, Workload::Text)
        .target(target)
        .quick()
        .gpu(GpuMode::Required)
        .requests(REQUESTS as u64)
        .warmup_requests(5)
        .baseline(Duration::from_millis(500))
        .cooldown(sglang_memtest::scenario::CooldownConfig {
            settle: Duration::from_millis(500),
            ..Default::default()
        })
        .startup_timeout(Duration::from_secs(60))
        .out_dir(out_dir(test))
        .plots(false)
}

/// Runs a scenario, failing the test at once when the run itself could not be made.
fn run_checked(c: &ScenarioConfig) -> Report {
    let started = Instant::now();
    let s = c.clone().build().unwrap_or_else(|e| panic!("{e}"));
    let r = s.run_blocking();
    eprintln!(
        "[{}] ran in {:.1} s, outcome {:?}",
        s.name(),
        started.elapsed().as_secs_f64(),
        r.outcome
    );
    if let (RunOutcome::Error, Some(e)) = (&r.outcome, &r.error) {
        panic!(
            "the {} scenario could not run: {}\n{}",
            s.name(),
            e.message,
            r.summary()
        );
    }
    r
}

/// `gpu.proc@pid:1234 (sglang::scheduler_TP0)` for per-process metrics, the name otherwise.
fn label(r: &Report, name: &str) -> String {
    match metric::pid_of(name).and_then(|pid| r.timeline.processes.get(&pid)) {
        Some(p) => format!("{name} ({})", p.name),
        None => name.to_owned(),
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / MIB)
}

fn per_request(bytes: f64) -> String {
    format!("{:.1} KiB/req", bytes / KIB)
}

/// One line per judged metric: outcome, slope with its interval, growth.
fn print_metrics(test: &str, r: &Report) {
    let Some(v) = r.verdict.as_ref() else {
        eprintln!("[{test}] no verdict");
        return;
    };
    eprintln!("[{test}] run outcome {:?}; judged metrics:", r.outcome);
    for m in v.metrics.iter().filter(|m| m.judged) {
        let slope = m.slope.map_or_else(
            || "no slope".to_owned(),
            |e| {
                format!(
                    "slope {} [{} .. {}]",
                    per_request(e.point),
                    per_request(e.ci.lo),
                    per_request(e.ci.hi)
                )
            },
        );
        eprintln!(
            "[{test}]   {:<44} {:<12} {slope}, growth {}, n {}",
            label(r, &m.metric),
            format!("{:?}", m.outcome),
            mib(m.growth),
            m.n
        );
    }
    for s in &r.timeline.sources {
        if s.name.contains("gpu") {
            eprintln!(
                "[{test}] source {}: available {}, note {:?}, errors {}",
                s.name, s.available, s.note, s.errors
            );
        }
    }
}

/// PIDs of the server's tree as the tracker saw it: (root, the process named `name`).
fn root_and(r: &Report, name: &str) -> (u32, u32) {
    let pids: BTreeSet<u32> = r.timeline.processes.keys().copied().collect();
    let root = r
        .timeline
        .processes
        .values()
        .find(|p| !pids.contains(&p.ppid))
        .map(|p| p.pid)
        .unwrap_or_else(|| panic!("no root process in the tree\n{}", r.summary()));
    let named = r
        .timeline
        .processes
        .values()
        .find(|p| p.name == name)
        .map(|p| p.pid)
        .unwrap_or_else(|| panic!("no process named {name} in the tree\n{}", r.summary()));
    (root, named)
}

fn analysed<'a>(r: &'a Report, name: &str) -> &'a MetricAnalysis {
    r.verdict
        .as_ref()
        .and_then(|v| v.metric(name))
        .unwrap_or_else(|| panic!("{name} was not analysed\n{}", r.summary()))
}

/// The device's memory before the server starts: (used, reserved, other processes' bytes and
/// count). Taken once, before the first scenario.
#[derive(Debug, Clone, Copy)]
struct Idle {
    used: f64,
    reserved: f64,
    others: f64,
    other_count: usize,
}

fn idle_device() -> &'static Idle {
    static IDLE: OnceLock<Idle> = OnceLock::new();
    IDLE.get_or_init(|| {
        let mut probe = need_gpu();
        eprintln!("[gpu] {}", probe.describe());
        let sample = probe.sample_once(&[]);
        let get = |name: &str| sample.iter().find(|(n, _)| n == name).map_or(f64::NAN, |(_, v)| *v);
        // Every process on device 0 is another's: the server has not started yet.
        let (others, other_count) = other_processes(&[]);
        let idle = Idle { used: get("gpu.used@dev:0"), reserved: get("gpu.reserved@dev:0"), others, other_count };
        eprintln!(
            "[gpu] idle device 0: used {}, reserved {}, total {}, {} other compute process(es) holding {}",
            mib(idle.used),
            mib(idle.reserved),
            mib(get("gpu.total@dev:0")),
            idle.other_count,
            mib(idle.others)
        );
        idle
    })
}

/// Bytes held on device 0 by compute processes outside `tree`, and how many there are.
fn other_processes(tree: &[u32]) -> (f64, usize) {
    let nvml = nvml_wrapper::Nvml::init()
        .unwrap_or_else(|e| panic!("this test needs an NVIDIA GPU: NVML: {e}"));
    let dev = nvml.device_by_index(0).expect("GPU 0");
    let procs = dev
        .running_compute_processes()
        .expect("compute process list");
    let others: Vec<_> = procs.iter().filter(|p| !tree.contains(&p.pid)).collect();
    let bytes = others
        .iter()
        .map(|p| match p.used_gpu_memory {
            nvml_wrapper::enums::device::UsedGpuMemory::Used(b) if b != u64::MAX => b as f64,
            _ => 0.0,
        })
        .fold(0.0, |a, b| a + b);
    (bytes, others.len())
}

fn leak_knobs() -> Vec<String> {
    ["--children=2", "--leak-in-child"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([format!("--gpu-leak-bytes-per-request={LEAK_BYTES}")])
        .collect()
}

/// The run of test (a), shared with test (c).
fn leak_run() -> &'static Report {
    static RUN: OnceLock<Report> = OnceLock::new();
    RUN.get_or_init(|| {
        need_gpu();
        idle_device();
        let r = run_checked(&gpu_scenario("gpu_child_leak", &leak_knobs()));
        print_metrics("gpu_child_leak", &r);
        r
    })
}

#[test]
#[ignore = "needs an NVIDIA GPU and a --features cuda build"]
#[serial]
fn a_gpu_leak_in_a_child_is_caught_and_attributed() {
    let r = leak_run();
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let (root, scheduler) = root_and(r, SCHEDULER);
    let verdict = r.verdict.as_ref().expect("verdict");
    let leaking: Vec<&str> = verdict.leaks().map(|m| m.metric.as_str()).collect();
    eprintln!("[a] leaking metrics: {leaking:?}; root pid {root}, {SCHEDULER} pid {scheduler}");

    // The child's own GPU metric leaks, at about 2 MiB per request.
    let child_gpu = metric::gpu_pid(scheduler);
    assert!(
        leaking.contains(&child_gpu.as_str()),
        "{child_gpu} not flagged\n{}",
        r.summary()
    );
    let m = analysed(r, &child_gpu);
    let slope = m.slope.expect("a slope").point;
    eprintln!(
        "[a] {SCHEDULER}: slope {} (planted {}), growth {}",
        per_request(slope),
        per_request(LEAK_BYTES as f64),
        mib(m.growth)
    );
    assert!(
        (0.8..1.25).contains(&(slope / LEAK_BYTES as f64)),
        "slope {slope} should be about 2 MiB/request"
    );

    // Every per-process leak is the scheduler's: nothing is pinned on the parent or the
    // detokenizer.
    for name in &leaking {
        if let Some(pid) = metric::pid_of(name) {
            assert_eq!(
                pid,
                scheduler,
                "{} is flagged\n{}",
                label(r, name),
                r.summary()
            );
        }
    }
    let parent_rss = analysed(r, &metric::host_pid("rss", root));
    assert_ne!(parent_rss.outcome, Outcome::Leak, "{}", r.summary());
    let parent_gpu = metric::gpu_pid(root);
    assert!(
        !leaking.contains(&parent_gpu.as_str()),
        "{parent_gpu} flagged\n{}",
        r.summary()
    );
    // The diagnosis cannot place device memory in host mappings, and says so rather than
    // blaming the host heap's small moves.
    assert!(
        r.summary().contains("where: in GPU memory"),
        "{}",
        r.summary()
    );
    if let Some(m) = r.diagnosis.as_ref().and_then(|d| d.mappings.as_ref()) {
        for p in &m.processes {
            for k in p.kinds.iter().filter(|k| k.kind == "gpu driver") {
                eprintln!(
                    "[a] {} (pid {}): gpu driver mappings resident {} -> {} ({} -> {} mappings)",
                    p.label,
                    p.pid,
                    mib(k.before as f64),
                    mib(k.after as f64),
                    k.mappings[0],
                    k.mappings[1]
                );
            }
        }
    }
    eprintln!(
        "[a] parent (pid {root}) host.rss: {:?}, growth {}; parent on the GPU: {}",
        parent_rss.outcome,
        mib(parent_rss.growth),
        r.timeline.series.contains_key(&parent_gpu)
    );
}

#[test]
#[ignore = "needs an NVIDIA GPU and a --features cuda build"]
#[serial]
fn b_gpu_alloc_and_free_in_a_child_passes() {
    need_gpu();
    idle_device();
    let knobs: Vec<String> = ["--children=2", "--leak-in-child"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([format!("--gpu-alloc-bytes-per-request={ALLOC_BYTES}")])
        .collect();
    let r = run_checked(&gpu_scenario("gpu_child_alloc_free", &knobs));
    print_metrics("gpu_child_alloc_free", &r);
    let (_, scheduler) = root_and(&r, SCHEDULER);
    let series = r
        .timeline
        .series
        .get(&metric::gpu_pid(scheduler))
        .expect("the scheduler is on the GPU");
    let lo = series
        .points
        .iter()
        .map(|p| p.v)
        .fold(f64::INFINITY, f64::min);
    let hi = series
        .points
        .iter()
        .map(|p| p.v)
        .fold(f64::NEG_INFINITY, f64::max);
    eprintln!(
        "[b] {SCHEDULER} gpu.proc over the run: min {}, max {} ({} readings)",
        mib(lo),
        mib(hi),
        series.points.len()
    );
    r.assert_pass();
}

#[test]
#[ignore = "needs an NVIDIA GPU and a --features cuda build"]
#[serial]
fn c_device_and_per_process_numbers_agree() {
    let r = leak_run();
    let idle = *idle_device();
    let used = &r
        .timeline
        .series
        .get("gpu.used@dev:0")
        .expect("gpu.used@dev:0")
        .points;
    let tree = &r
        .timeline
        .series
        .get(metric::GPU_PROC_TREE)
        .expect("gpu.proc@tree")
        .points;
    // Both come from the same tick: pair them by time.
    let paired: Vec<(u64, f64, f64)> = used
        .iter()
        .filter_map(|u| {
            tree.iter()
                .find(|t| t.t_us == u.t_us)
                .map(|t| (u.t_us, u.v, t.v))
        })
        .collect();
    let (start, end) = r
        .timeline
        .phase_range(Phase::Measure)
        .expect("a measure phase");
    let measured: Vec<&(u64, f64, f64)> = paired
        .iter()
        .filter(|(t, _, _)| *t >= start && *t < end)
        .collect();
    assert!(
        measured.len() >= REQUESTS / 2,
        "only {} paired readings in the measure phase",
        measured.len()
    );
    let (first, last) = (measured[0], measured[measured.len() - 1]);
    let d_used = last.1 - first.1;
    let d_tree = last.2 - first.2;
    let gap: Vec<f64> = measured.iter().map(|(_, u, t)| u - t).collect();
    let mut sorted = gap.clone();
    sorted.sort_by(f64::total_cmp);
    let median_gap = sorted[sorted.len() / 2];
    let (gap_lo, gap_hi) = (sorted[0], sorted[sorted.len() - 1]);
    let used_growth = analysed(r, "gpu.used@dev:0").growth;
    let tree_growth = analysed(r, metric::GPU_PROC_TREE).growth;

    eprintln!("[c] measure phase, {} paired readings:", measured.len());
    eprintln!(
        "[c]   growth first->last: gpu.used@dev:0 {}, gpu.proc@tree {}, difference {}",
        mib(d_used),
        mib(d_tree),
        mib(d_used - d_tree)
    );
    eprintln!(
        "[c]   growth (verdict medians): gpu.used@dev:0 {}, gpu.proc@tree {}",
        mib(used_growth),
        mib(tree_growth)
    );
    eprintln!(
        "[c]   gpu.used - gpu.proc@tree: median {}, min {}, max {}",
        mib(median_gap),
        mib(gap_lo),
        mib(gap_hi)
    );
    // NVML's v2 `used` leaves out the driver-reserved memory, so the offset is the memory of
    // other processes plus what the driver holds for no process while a context exists.
    let unattributed = median_gap - idle.others;
    eprintln!(
        "[c]   before the server: device used {}, {} other compute process(es) holding {}; driver-reserved {} (outside gpu.used)",
        mib(idle.used),
        idle.other_count,
        mib(idle.others),
        mib(idle.reserved)
    );
    eprintln!(
        "[c]   so gpu.used - gpu.proc@tree = other processes {} + {} charged to no process (driver, while a context exists)",
        mib(idle.others),
        mib(unattributed)
    );

    // The per-context overhead: the scheduler's GPU memory before its first allocation.
    let (_, scheduler) = root_and(r, SCHEDULER);
    let first_request = r
        .timeline
        .phases
        .iter()
        .filter(|p| p.phase >= Phase::Warmup)
        .map(|p| p.from_us)
        .min()
        .expect("a request");
    let child = &r
        .timeline
        .series
        .get(&metric::gpu_pid(scheduler))
        .expect("scheduler on the GPU")
        .points;
    let context = child
        .iter()
        .rev()
        .find(|p| p.t_us < first_request)
        .map(|p| p.v);
    match context {
        Some(c) => eprintln!(
            "[c] per-context overhead: {SCHEDULER} held {} before its first allocation",
            mib(c)
        ),
        None => eprintln!(
            "[c] per-context overhead: no reading of {SCHEDULER} before the first request"
        ),
    }

    assert!(
        (d_used - d_tree).abs() <= 4.0 * MIB,
        "device growth {d_used} and tree growth {d_tree} differ"
    );
    assert!(
        d_tree >= 0.8 * (REQUESTS as f64) * LEAK_BYTES as f64,
        "tree grew only {}",
        mib(d_tree)
    );
    assert!(
        gap_hi - gap_lo <= 8.0 * MIB,
        "the offset used - tree moved by {}",
        mib(gap_hi - gap_lo)
    );
    assert!(
        (-4.0 * MIB..=32.0 * MIB).contains(&unattributed),
        "offset {} is not other processes ({}) plus a few MiB",
        mib(median_gap),
        mib(idle.others)
    );
    if let Some(c) = context {
        assert!(
            (64.0 * MIB..4096.0 * MIB).contains(&c),
            "context overhead {} is implausible",
            mib(c)
        );
    }
}

/// A reference server started directly (not through a scenario), killed with its process group.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, killpg};
        use nix::unistd::Pid;
        let pgid = Pid::from_raw(self.0.id() as i32);
        let _ = killpg(pgid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// `pid` and every descendant, from `/proc/PID/task/*/children`.
fn tree_of(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for task in tasks.flatten() {
                if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
                    out.extend(
                        text.split_whitespace()
                            .filter_map(|s| s.parse::<u32>().ok()),
                    );
                }
            }
        }
        i += 1;
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn smi(args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = Command::new("nvidia-smi")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("this test needs nvidia-smi on PATH: {e}"));
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "nvidia-smi {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

#[test]
#[ignore = "needs an NVIDIA GPU and a --features cuda build"]
#[serial]
fn d_one_nvml_sample_costs_less_than_one_nvidia_smi_call() {
    let open_started = Instant::now();
    let mut probe = need_gpu();
    let open_cost = open_started.elapsed();
    // A server whose scheduler creates a CUDA context at startup and allocates nothing until a
    // request comes (none is sent): the process list has an entry to match.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port();
    let mut cmd = Command::new(reference_exe());
    cmd.args([
        "serve-reference",
        "--port",
        &port.to_string(),
        "--children=2",
        "--leak-in-child",
    ])
    .arg(format!("--gpu-alloc-bytes-per-request={}", 1 << 20))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::inherit());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let server = Server(cmd.spawn().expect("start the reference server"));
    let root = server.0.id();

    let deadline = Instant::now() + Duration::from_secs(60);
    let (pids, context) = loop {
        let pids = tree_of(root);
        let sample = probe.sample_once(&pids);
        if let Some((name, v)) = sample.iter().find(|(n, _)| n.starts_with("gpu.proc@pid:")) {
            break (pids, (name.clone(), *v));
        }
        assert!(
            Instant::now() < deadline,
            "the reference server's child never showed up on the GPU (pids {pids:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Let the context finish settling, then read it again.
    std::thread::sleep(Duration::from_millis(500));
    let settled = probe.sample_once(&pids);
    let context_bytes = settled
        .iter()
        .find(|(n, _)| *n == context.0)
        .map_or(context.1, |(_, v)| *v);
    eprintln!(
        "[d] per-context overhead: {} (a child that created a CUDA context and allocated nothing) = {}",
        context.0,
        mib(context_bytes)
    );
    eprintln!(
        "[d] tree pids {pids:?}; one sample gives {} readings: {:?}",
        settled.len(),
        settled.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
    );

    const N: usize = 40;
    let mut nvml = Vec::with_capacity(N);
    let mut smi_used = Vec::with_capacity(N);
    let mut smi_apps = Vec::with_capacity(N);
    for _ in 0..3 {
        let _ = probe.sample_once(&pids);
        smi(&["--query-gpu=memory.used", "--format=csv"]);
    }
    for _ in 0..N {
        let t = Instant::now();
        let s = probe.sample_once(&pids);
        nvml.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(
            s.iter().any(|(n, _)| n == metric::GPU_PROC_TREE),
            "a sample without gpu.proc@tree: {s:?}"
        );
        smi_used.push(smi(&["--query-gpu=memory.used", "--format=csv"]).as_secs_f64() * 1e6);
        smi_apps.push(
            smi(&["--query-compute-apps=pid,used_memory", "--format=csv"]).as_secs_f64() * 1e6,
        );
    }
    drop(server);

    let row = |name: &str, v: &mut Vec<f64>| {
        let m = median(v);
        eprintln!(
            "[d] | {name:<58} | {:>11.1} | {:>11.1} | {:>11.1} | {:>3} |",
            m,
            v[0],
            v[v.len() - 1],
            v.len()
        );
        m
    };
    eprintln!(
        "[d] NVML open (once): {:.2} ms",
        open_cost.as_secs_f64() * 1e3
    );
    eprintln!(
        "[d] | {:<58} | {:>11} | {:>11} | {:>11} | {:>3} |",
        "reading", "median µs", "min µs", "max µs", "n"
    );
    let m_nvml = row(
        "GpuProbe::sample_once (device + process lists, tree pids)",
        &mut nvml,
    );
    let m_used = row(
        "nvidia-smi --query-gpu=memory.used --format=csv",
        &mut smi_used,
    );
    let m_apps = row(
        "nvidia-smi --query-compute-apps=pid,used_memory --format=csv",
        &mut smi_apps,
    );
    eprintln!(
        "[d] ratio: nvidia-smi memory.used / NVML sample = {:.0}x; compute-apps / NVML sample = {:.0}x",
        m_used / m_nvml,
        m_apps / m_nvml
    );
    assert_eq!(nvml.len(), N);
    assert_eq!(smi_used.len(), N);
    assert!(m_nvml > 0.0 && m_used > 0.0);
}
