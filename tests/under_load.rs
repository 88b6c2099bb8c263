//! Stable under load: with every CPU of the machine kept busy by other processes (a shared CI
//! runner), clean and bounded shapes keep their pass and a planted leak is still caught —
//! samples that arrive late must not turn into growth. Every verdict is computed by the
//! harness from real memory of the reference server.

mod common;

use std::process::{Child, Command, Stdio};

use common::{quick, run};
use sglang_memtest::load::Workload;
use sglang_memtest::report::RunOutcome;

/// Busy loops on every CPU (two per CPU), killed and reaped when dropped, whatever the test
/// does.
struct CpuHog(Vec<Child>);

impl CpuHog {
    fn start() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hogs = (0..2 * cpus)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start a CPU hog (sh)")
            })
            .collect();
        Self(hogs)
    }

    /// Whether every hog is still running (they must be, for the test to mean anything).
    fn all_running(&mut self) -> bool {
        self.0.iter_mut().all(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One test so the hogs run once, beside every shape in turn (tests of a binary run in
/// parallel threads; separate tests would each start their own hogs).
#[test]
fn verdicts_hold_with_every_cpu_busy() {
    let mut hog = CpuHog::start();
    let shapes: [(&str, &[&str], RunOutcome); 6] = [
        ("load_clean", &[], RunOutcome::Pass),
        (
            "load_bounded_cache",
            &[
                "--cache-bytes-per-request=1048576",
                "--cache-cap-bytes=16777216",
            ],
            RunOutcome::Pass,
        ),
        (
            "load_plateau",
            &[
                "--cache-bytes-per-request=524288",
                "--cache-cap-bytes=33554432",
            ],
            RunOutcome::Pass,
        ),
        (
            "load_warmup_step",
            &["--warmup-step-bytes=67108864"],
            RunOutcome::Pass,
        ),
        // A collector's sawtooth: 5 MiB of garbage freed all at once every ~20 requests, the
        // troughs up to 1.25 MiB off. Once called a leak on a busy machine (its troughs rose
        // over five cycles by chance); the cooldown's flush collects it.
        (
            "load_sawtooth",
            &[
                "--sawtooth-bytes-per-request=262144",
                "--sawtooth-period=20",
            ],
            RunOutcome::Pass,
        ),
        (
            "load_leak",
            &["--leak-bytes-per-request=131072"],
            RunOutcome::Leak,
        ),
    ];
    let mut failures = Vec::new();
    for (name, knobs, expected) in shapes {
        let r = run(&quick(name, knobs, Workload::Text).requests(100));
        if r.outcome != expected {
            failures.push(format!("{name}: expected {expected:?}\n{}", r.summary()));
        }
    }
    assert!(hog.all_running(), "a CPU hog died: the load was not there");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
