//! The GPU tier: leaks planted inside a real SGLang serving on an NVIDIA GPU must be called in the
//! process that holds them, and a KV-slot leak must be caught by SGLang's own accounting while GPU
//! memory stays flat. The clean side is the scenario tests themselves (`tests/text_model.rs`,
//! `vlm_no_mm_processor.rs`, `vlm_image.rs`, `error_paths.rs`), run unchanged with the same
//! `MEMTEST_*` settings.
//!
//! ```sh
//! cargo test --release --test sglang_gpu -- --ignored --test-threads=1     # a GPU runner with SGLang
//! scripts/sglang-gpu/run-bundle.sh planted                                  # an air-gapped one (README)
//! ```
//!
//! Configured like the scenario tests (`MEMTEST_PYTHON`, `MEMTEST_TEXT_MODEL`, `MEMTEST_VLM_MODEL`,
//! `MEMTEST_SERVER_ARGS`, `MEMTEST_SERVER_ENV`, `MEMTEST_OUT_DIR`, …; the README's knob table), plus
//! `MEMTEST_PLANTED_LEAKS_DIR`: the folder holding `fixtures/sglang/planted_leaks/sitecustomize.py`
//! (default: this checkout's; a bundle names its own copy). Without an NVIDIA GPU each test fails
//! with one sentence; it never passes silently.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serial_test::serial;
use sglang_memtest::ScenarioConfig;
use sglang_memtest::analysis::Outcome;
use sglang_memtest::report::{Report, RunOutcome};
use sglang_memtest::tracker::idle::{KV_TOKENS, RUNNING_REQS};
use sglang_memtest::tracker::{GpuProbe, metric};

/// Bytes the scheduler keeps on the GPU per request: 8× the default GPU limit (128 KiB/request).
const SCHEDULER_BYTES: u64 = 1 << 20;
/// Bytes the tokenizer manager keeps on the GPU per image: 4× the limit.
const IMAGE_BYTES: u64 = 512 << 10;
/// Measured requests with a planted GPU leak: 60 MiB and 30 MiB in all, far above the 16 MiB floor.
const PLANTED_REQUESTS: u64 = 60;
/// KV slots kept per request by the planted `kv_tokens` leak.
const PLANTED_TOKENS: u64 = 16;
/// Measured requests with the planted KV leak: SGLang's accounting is exact.
const KV_REQUESTS: u64 = 40;

const MIB: f64 = 1024.0 * 1024.0;

/// How much `device` (a `gpu.used@dev:N` metric) grew outside the server's tree over the measured
/// requests: the offset `device - gpu.proc@tree`, last readings against the first (medians of five).
fn offset_growth(r: &Report, device: &str) -> f64 {
    let series = |name: &str| {
        let b = r
            .timeline
            .per_request
            .get(name)
            .unwrap_or_else(|| panic!("no per-request {name}\n{}", r.summary()));
        b.x.iter()
            .copied()
            .zip(b.y.iter().copied())
            .collect::<Vec<_>>()
    };
    let tree: std::collections::BTreeMap<u64, f64> = series(metric::GPU_PROC_TREE)
        .into_iter()
        .map(|(x, y)| (x.to_bits(), y))
        .collect();
    let offset: Vec<f64> = series(device)
        .into_iter()
        .filter_map(|(x, y)| Some(y - tree.get(&x.to_bits())?))
        .filter(|v| v.is_finite())
        .collect();
    assert!(
        offset.len() >= 10,
        "too few paired readings of {device} and the tree"
    );
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    median(&offset[offset.len() - 5..]) - median(&offset[..5])
}

/// Fails the test with one sentence when there is no NVIDIA GPU.
fn need_gpu() {
    if let Err(why) = GpuProbe::open(None) {
        panic!("this test needs an NVIDIA GPU and SGLang serving on it: {why}");
    }
}

/// The planted-leak patches, put first on the server's PYTHONPATH.
fn planted_leaks_dir() -> PathBuf {
    let dir = std::env::var_os("MEMTEST_PLANTED_LEAKS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sglang/planted_leaks")
        });
    assert!(
        dir.join("sitecustomize.py").is_file(),
        "MEMTEST_PLANTED_LEAKS_DIR={} holds no sitecustomize.py: point it at fixtures/sglang/planted_leaks",
        dir.display()
    );
    dir
}

/// A fresh output folder: `$MEMTEST_OUT_DIR/<test>`, else under the system temp dir.
fn out_dir(test: &str) -> PathBuf {
    let base = std::env::var_os("MEMTEST_OUT_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("memtest-sglang-gpu"));
    let dir = base.join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `preset` as the scenario tests configure it (the environment), with `leak` planted.
fn planted(preset: ScenarioConfig, test: &str, leak: &str, requests: u64) -> ScenarioConfig {
    need_gpu();
    let c = preset
        .env_overrides()
        .unwrap_or_else(|e| panic!("the MEMTEST_* settings: {e}"))
        .named(test)
        .requests(requests)
        .out_dir(out_dir(test));
    let pythonpath = planted_leaks_dir().display().to_string();
    c.server_env("PYTHONPATH", pythonpath)
        .server_env("MEMTEST_SGLANG_LEAK", leak)
}

fn run(c: ScenarioConfig) -> Report {
    let s = c.build().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        s.target()
            .engine()
            .is_some_and(|e| e.engine().name() == "sglang"),
        "the GPU tier launches SGLang: set MEMTEST_PYTHON and the models, not another target"
    );
    let r = s.run_blocking();
    eprintln!("{}", r.summary());
    if let (RunOutcome::Error, Some(e)) = (&r.outcome, &r.error) {
        panic!("the {} scenario could not run: {}", s.name(), e.message);
    }
    r
}

/// The role of the process a per-process metric belongs to.
fn role_of(r: &Report, name: &str) -> Option<String> {
    let pid = metric::pid_of(name)?;
    r.timeline.processes.get(&pid).map(|p| p.label().to_owned())
}

/// The roles whose per-process GPU memory leaked.
fn gpu_leaking_roles(r: &Report) -> BTreeSet<String> {
    r.verdict
        .iter()
        .flat_map(|v| v.leaks())
        .filter(|m| m.metric.starts_with("gpu.proc@pid:"))
        .filter_map(|m| role_of(r, &m.metric))
        .collect()
}

/// The per-process GPU verdict of the process with `role`, if it held GPU memory.
fn gpu_of<'a>(r: &'a Report, role: &str) -> Option<&'a sglang_memtest::analysis::MetricAnalysis> {
    let pid = r
        .timeline
        .processes
        .values()
        .find(|p| p.label() == role)?
        .pid;
    r.verdict.as_ref()?.metric(&metric::gpu_pid(pid))
}

/// A tensor leak planted in `role`'s process is called there, on the GPU, at about the planted
/// rate; no other process's GPU memory, and no process's host memory, grows anywhere near it.
/// (Small early steps of the caching allocator or the host heap elsewhere may still be judged on
/// their own at this length; they are not the planted bytes.)
fn caught_in(r: &Report, role: &str, planted: u64) {
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let roles = gpu_leaking_roles(r);
    assert!(
        roles.contains(role),
        "no GPU leak in {role} (GPU leaks in {roles:?})\n{}",
        r.summary()
    );
    let m =
        gpu_of(r, role).unwrap_or_else(|| panic!("{role} holds no GPU memory\n{}", r.summary()));
    let slope = m.slope.expect("a slope").point;
    assert!(
        (0.75 * planted as f64..1.3 * planted as f64).contains(&slope),
        "{role} grew {slope:.0} B/request on the GPU, planted {planted}\n{}",
        r.summary()
    );
    let verdict = r.verdict.as_ref().expect("a verdict");
    for m in verdict.metrics.iter().filter(|m| m.judged) {
        let Some(owner) = role_of(r, &m.metric) else {
            continue;
        };
        let elsewhere = m.metric.starts_with("host.") || owner != role;
        let grew = m.slope.map_or(0.0, |s| s.point);
        assert!(
            !elsewhere || grew < planted as f64 / 4.0,
            "{} grew {grew:.0} B/request beside the leak planted in {role}'s GPU memory\n{}",
            m.metric,
            r.summary()
        );
    }
}

#[test]
#[ignore = "needs SGLang on an NVIDIA GPU: scripts/sglang-gpu/run-bundle.sh or a GPU runner"]
#[serial(sglang)]
fn a_gpu_tensor_kept_per_request_in_the_scheduler_is_caught_there() {
    let c = planted(
        ScenarioConfig::text_model(),
        "planted_scheduler_tensor",
        "scheduler_tensor",
        PLANTED_REQUESTS,
    )
    .server_env("MEMTEST_SGLANG_LEAK_BYTES", SCHEDULER_BYTES.to_string());
    let r = run(c);
    caught_in(&r, "scheduler", SCHEDULER_BYTES);
}

#[test]
#[ignore = "needs SGLang on an NVIDIA GPU: scripts/sglang-gpu/run-bundle.sh or a GPU runner"]
#[serial(sglang)]
fn a_gpu_tensor_kept_per_image_in_the_tokenizer_manager_is_caught_there() {
    let c = planted(
        ScenarioConfig::vlm_image(),
        "planted_image_tensor",
        "image_tensor",
        PLANTED_REQUESTS,
    )
    .set("images_per_request", "1")
    .server_env("MEMTEST_SGLANG_LEAK_BYTES", IMAGE_BYTES.to_string());
    let r = run(c);
    caught_in(&r, "tokenizer_manager", IMAGE_BYTES);
}

#[test]
#[ignore = "needs SGLang on an NVIDIA GPU: scripts/sglang-gpu/run-bundle.sh or a GPU runner"]
#[serial(sglang)]
fn a_kv_slot_leak_is_caught_by_the_idle_accounting_with_gpu_memory_flat() {
    // SGLang's idle check only warns with strict mode off: the server lives to the end.
    let c = planted(
        ScenarioConfig::text_model(),
        "planted_kv_tokens",
        "kv_tokens",
        KV_REQUESTS,
    )
    .server_env("MEMTEST_SGLANG_LEAK_TOKENS", PLANTED_TOKENS.to_string())
    .server_env("SGLANG_ENABLE_STRICT_MEM_CHECK_DURING_IDLE", "0")
    .max_requests(KV_REQUESTS);
    let r = run(c);
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    // GPU memory is flat: the KV pool is preallocated. No memory metric of the server's own
    // processes leaks, on the GPU or the host.
    let verdict = r.verdict.as_ref().expect("a memory verdict");
    let judged_gpu = verdict
        .metrics
        .iter()
        .filter(|m| m.judged && m.metric.starts_with("gpu.proc@"))
        .count();
    assert!(
        judged_gpu > 0,
        "no GPU metric of the server was judged\n{}",
        r.summary()
    );
    let own: Vec<&str> = verdict
        .leaks()
        .map(|m| m.metric.as_str())
        .filter(|m| !m.starts_with("gpu.used@dev:"))
        .collect();
    assert!(own.is_empty(), "memory leaked: {own:?}\n{}", r.summary());
    // The device-wide number counts every process on the card: it must be flat too, unless the
    // card was shared (run-bundle.sh runs the planted leaks at once) and what grew is outside the
    // server: then the offset device - tree grew by the device's growth.
    for m in verdict
        .leaks()
        .filter(|m| m.metric.starts_with("gpu.used@dev:"))
    {
        let elsewhere = offset_growth(&r, &m.metric);
        assert!(
            elsewhere >= 0.9 * m.growth,
            "{} grew {:.1} MiB, of which only {:.1} MiB outside the server's tree\n{}",
            m.metric,
            m.growth / MIB,
            elsewhere / MIB,
            r.summary()
        );
        eprintln!(
            "{} grew {:.1} MiB: other processes on the card ({:.1} MiB outside the server's tree)",
            m.metric,
            m.growth / MIB,
            elsewhere / MIB
        );
    }
    // SGLang's own accounting sees every planted slot.
    let a = r.idle_accounting.as_ref().expect("idle accounting");
    let kv = a.check(KV_TOKENS).expect("a KV check");
    assert_eq!(kv.outcome, Outcome::Leak, "{}", kv.reason);
    let sent = r.requests.as_ref().map_or(0, |q| q.sent);
    assert_eq!(kv.excess, (PLANTED_TOKENS * sent) as f64, "{}", kv.reason);
    assert_eq!(kv.per_request, Some(PLANTED_TOKENS as f64), "{}", kv.reason);
    let running = a.check(RUNNING_REQS).expect("a running check");
    assert_eq!(running.outcome, Outcome::Pass, "{}", running.reason);
}
