//! What one sample costs: `cargo bench --bench sampling` prints a table (medians).
//!
//! Timing targets live here, not in tests: machines are noisy. On a machine with an NVIDIA
//! driver the GPU rows are filled in too, NVML's calls one by one and `nvidia-smi` for scale.

use std::hint::black_box;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sglang_memtest::analysis::{RequestSeries, Thresholds, analyze};
use sglang_memtest::fixture::ProcessTree;
use sglang_memtest::tracker::GpuProbe;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    // One untimed call first: page cache, lazy initialisation.
    black_box(f());
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn row(what: &str, d: Duration, note: &str) {
    println!("| {what:<52} | {:>12.1} µs | {note}", d.as_secs_f64() * 1e6);
}

/// A process group of `n` sleeping processes (the test's stand-in for a server tree).
fn tree(n: usize) -> (Child, ProcessTree) {
    use std::os::unix::process::CommandExt;
    let script = format!(
        "for i in $(seq {}); do sleep 60 & done; exec sleep 60",
        n.saturating_sub(1)
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .process_group(0)
        .spawn()
        .expect("sh");
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id();
    (child, ProcessTree::new(pid, Some(pid)))
}

fn main() {
    println!("| what | median | note |\n|---|---:|---|");
    for n in [1usize, 10, 50] {
        let (mut child, t) = tree(n);
        let found = t.pids().len();
        row(
            &format!("ProcessTree::pids(), {n}-process group"),
            time(200, || t.pids()),
            &format!("{found} found"),
        );
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
    }

    let mut series = Vec::new();
    for m in 0..20 {
        let values: Vec<f64> = (0..100)
            .map(|i| {
                1e9 + (i * 37 % 11) as f64 * 4096.0 + if m == 0 { i as f64 * 65536.0 } else { 0.0 }
            })
            .collect();
        series.push(RequestSeries::raw(
            format!("host.rss@pid:{m}"),
            sglang_memtest::tracker::Unit::Bytes,
            &values,
        ));
    }
    let thresholds = Thresholds::default();
    row(
        "analyze(): 20 metrics x 100 requests",
        time(20, || analyze(&series, &thresholds)),
        "Theil-Sen, MSER-5, Holm",
    );

    match GpuProbe::open(None) {
        Err(reason) => println!("| GPU rows skipped | | {reason} |"),
        Ok(mut probe) => {
            let me = [std::process::id()];
            row(
                "GpuProbe::sample_once (all devices + process lists)",
                time(200, || probe.sample_once(&me)),
                &probe.describe(),
            );
            gpu_breakdown();
        }
    }
}

/// NVML's calls one by one, and `nvidia-smi` for scale.
fn gpu_breakdown() {
    use nvml_wrapper::Nvml;
    let t = Instant::now();
    let Ok(nvml) = Nvml::init() else { return };
    row("Nvml::init (once per run)", t.elapsed(), "");
    let Ok(dev) = nvml.device_by_index(0) else {
        return;
    };
    row(
        "device_by_index(0)",
        time(200, || nvml.device_by_index(0).map(|_| ())),
        "",
    );
    row("memory_info (v2)", time(200, || dev.memory_info()), "");
    row(
        "running_compute_processes",
        time(200, || dev.running_compute_processes()),
        "",
    );
    row(
        "running_compute_processes_count",
        time(200, || dev.running_compute_processes_count()),
        "",
    );
    let smi = |args: &[&str]| {
        Command::new("nvidia-smi")
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    if smi(&["-L"]) {
        row(
            "nvidia-smi --query-gpu=memory.used",
            time(30, || smi(&["--query-gpu=memory.used", "--format=csv"])),
            "one process per reading",
        );
        row(
            "nvidia-smi --query-compute-apps",
            time(30, || {
                smi(&["--query-compute-apps=pid,used_memory", "--format=csv"])
            }),
            "one process per reading",
        );
    }
}
