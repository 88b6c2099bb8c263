//! The GPU tier's parts that need no GPU, checked on every `cargo test`: the `sgl_kernel` stand-in
//! (`scripts/sglang-gpu/memtest_gpu_sgl_kernel.py`) against float64 formulas on CPU tensors, the
//! carried wheels pinned as the CPU tier's lock pins them, and the bad inputs of the bundle
//! scripts and of the planted GPU leaks, each refused with a sentence.
//!
//! The stand-in's check needs a Python with torch: `MEMTEST_TORCH_PYTHON` (which must have it),
//! else the SGLang CPU install's (`scripts/setup-sglang-cpu.sh`, `MEMTEST_SGLANG_CPU_DIR`), else
//! `python3` if it has torch. Without one it says why and does not run — except under CI (`CI=true`), where it fails:
//! `.ci/run` sets up the CPU install first. On the GPU machine the same file runs on CUDA
//! (`run-bundle.sh preflight`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn gpu_scripts() -> PathBuf {
    root().join("scripts/sglang-gpu")
}

fn has_torch(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The SGLang CPU install's Python, from its `memtest.env`.
fn cpu_install_python() -> Option<PathBuf> {
    let dir = std::env::var_os("MEMTEST_SGLANG_CPU_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/sglang-memtest/sglang-cpu"))
        })?;
    let env = std::fs::read_to_string(dir.join("memtest.env")).ok()?;
    env.lines()
        .find_map(|l| l.strip_prefix("MEMTEST_PYTHON="))
        .map(PathBuf::from)
}

/// A Python with torch, or why there is none.
fn torch_python() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MEMTEST_TORCH_PYTHON").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        // Asked for by name: a Python that cannot serve is a bad setting, never a skip.
        assert!(
            has_torch(&p),
            "MEMTEST_TORCH_PYTHON={} cannot import torch: point it at a Python that has torch",
            p.display()
        );
        return Ok(p);
    }
    let candidates = cpu_install_python()
        .into_iter()
        .chain([PathBuf::from("python3")]);
    for p in candidates {
        if has_torch(&p) {
            return Ok(p);
        }
    }
    Err(
        "no Python with torch: neither the SGLang CPU install (scripts/setup-sglang-cpu.sh) nor \
         python3 has it; set MEMTEST_TORCH_PYTHON to one that does"
            .to_owned(),
    )
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_sgl_kernel_stand_in_matches_float64_formulas_on_cpu() {
    let python = match torch_python() {
        Ok(p) => p,
        Err(why) => {
            assert!(
                !on_ci(),
                "CI=true but the stand-in cannot be checked: {why} (.ci/run sets up the SGLang CPU install before cargo test)"
            );
            eprintln!("skipped: {why}");
            return;
        }
    };
    let out = Command::new(&python)
        .arg(gpu_scripts().join("test_memtest_gpu_sgl_kernel.py"))
        .arg("cpu")
        .output()
        .expect("the stand-in's test starts");
    let all = text(&out);
    assert!(out.status.success(), "{}: {all}", python.display());
    let summary = all
        .lines()
        .find_map(|l| l.strip_prefix("memtest-gpu-shim: "))
        .unwrap_or_else(|| panic!("no summary line in {all}"));
    let passed: u32 = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {summary:?}"));
    assert!(
        summary.contains(" 0 failed") && passed >= 60,
        "{summary}\n{all}"
    );
}

/// `NAME==VERSION` lines of a lock file, names normalised as pip does.
fn pins(path: &Path) -> BTreeMap<String, String> {
    let body = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut pins = BTreeMap::new();
    for line in body.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, version) = line
            .split_once("==")
            .unwrap_or_else(|| panic!("{}: {line:?} is not NAME==VERSION", path.display()));
        let name = name.to_ascii_lowercase().replace(['_', '.'], "-");
        assert!(
            !version.is_empty() && !version.contains(char::is_whitespace),
            "{}: {line:?} has no exact version",
            path.display()
        );
        let before = pins.insert(name.clone(), version.to_owned());
        assert!(before.is_none(), "{}: {name} pinned twice", path.display());
    }
    pins
}

#[test]
fn the_carried_wheels_are_pinned_as_the_cpu_tier_pins_them() {
    let gpu = pins(&gpu_scripts().join("wheels.lock"));
    let cpu = pins(&root().join("scripts/sglang-cpu/requirements.lock"));
    assert!(gpu.contains_key("sglang"), "wheels.lock carries no sglang");
    let differ: Vec<String> = gpu
        .iter()
        .filter_map(|(name, v)| match cpu.get(name) {
            Some(c) if c == v => None,
            Some(c) => Some(format!("{name}: {v} here, {c} in the CPU lock")),
            None => Some(format!("{name}: not in the CPU lock")),
        })
        .collect();
    assert!(
        differ.is_empty(),
        "wheels.lock differs from requirements.lock: {differ:?}"
    );
}

/// Runs a bundle script with `args` (and `env`); its status and output.
fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new("bash")
        .arg(gpu_scripts().join(name))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("bash {name}: {e}"))
}

fn refused(o: &Output, sentence: &str) {
    let all = text(o);
    assert_eq!(o.status.code(), Some(2), "{all}");
    assert!(all.contains(sentence), "expected {sentence:?} in: {all}");
}

#[test]
fn the_bundle_scripts_refuse_bad_input_with_a_sentence() {
    for name in ["make-bundle.sh", "run-bundle.sh"] {
        let o = Command::new("bash")
            .arg("-n")
            .arg(gpu_scripts().join(name))
            .output()
            .expect("bash runs");
        assert!(o.status.success(), "{name}: {}", text(&o));
    }
    refused(
        &script("make-bundle.sh", &["--fast"], &[]),
        "cannot make the bundle: unknown option '--fast'",
    );
    refused(
        &script("make-bundle.sh", &["a.tar.xz", "b.tar.xz"], &[]),
        "one output file only",
    );
    refused(
        &script("make-bundle.sh", &["bundle.zip"], &[]),
        "the output file must end in .tar.xz",
    );
    refused(
        &script(
            "make-bundle.sh",
            &[],
            &[("MEMTEST_SGLANG_GPU_PYTHON_VERSION", "twelve")],
        ),
        "is not a Python version such as 3.12",
    );
    refused(
        &script("run-bundle.sh", &["text_model+vlm_imag"], &[]),
        "unknown phase 'vlm_imag'",
    );
    refused(
        &script("run-bundle.sh", &["--verbose"], &[]),
        "unknown option '--verbose'",
    );
    refused(
        &script(
            "run-bundle.sh",
            &[],
            &[("MEMTEST_SGLANG_GPU_BUDGET", "10m")],
        ),
        "MEMTEST_SGLANG_GPU_BUDGET=10m is not a whole number of seconds",
    );
    refused(
        &script(
            "run-bundle.sh",
            &[],
            &[("MEMTEST_SGLANG_GPU_MAX_FACTOR", "0")],
        ),
        "MEMTEST_SGLANG_GPU_MAX_FACTOR=0 is not a whole number from 1 to 9",
    );
    refused(
        &script(
            "run-bundle.sh",
            &[],
            &[("MEMTEST_SGLANG_GPU_PHASE_LIMIT", "5min")],
        ),
        "MEMTEST_SGLANG_GPU_PHASE_LIMIT=5min is not a whole number of seconds",
    );
    let empty = tempfile::tempdir().expect("a temp dir");
    let dir = empty.path().to_str().expect("a UTF-8 path");
    refused(
        &script(
            "run-bundle.sh",
            &["--env"],
            &[("MEMTEST_SGLANG_GPU_DIR", dir)],
        ),
        "no finished install in",
    );
    // The scripts folder is not a bundle: run-bundle.sh says so before touching anything.
    refused(
        &script(
            "run-bundle.sh",
            &["gpu"],
            &[("MEMTEST_SGLANG_GPU_DIR", dir)],
        ),
        "is not an unpacked bundle",
    );
}

#[test]
fn a_planted_gpu_leak_with_a_bad_setting_stops_the_server_with_a_sentence() {
    let leaks = root().join("fixtures/sglang/planted_leaks");
    let python = |env: &[(&str, &str)]| {
        Command::new("python3")
            .args(["-c", "print('started')"])
            .env("PYTHONPATH", &leaks)
            .envs(env.iter().copied())
            .output()
            .expect("python3 runs")
    };
    for (env, sentence) in [
        (
            vec![
                ("MEMTEST_SGLANG_LEAK", "scheduler_tensor"),
                ("MEMTEST_SGLANG_LEAK_DEVICE", "gpu0"),
            ],
            "MEMTEST_SGLANG_LEAK_DEVICE='gpu0': use cuda, cuda:N or cpu",
        ),
        (
            vec![
                ("MEMTEST_SGLANG_LEAK", "image_tensor"),
                ("MEMTEST_SGLANG_LEAK_BYTES", "0"),
            ],
            "MEMTEST_SGLANG_LEAK_BYTES must be at least 1 for image_tensor",
        ),
        (
            vec![("MEMTEST_SGLANG_LEAK", "image-tensor")],
            "use one of abort, detokenizer, gc_cycle, image_tensor",
        ),
    ] {
        let o = python(&env);
        let all = text(&o);
        assert!(
            !o.status.success() && !all.contains("started"),
            "{env:?}: {all}"
        );
        assert!(all.contains(sentence), "{env:?}: {all}");
    }
    // Valid settings start the interpreter (the patch waits for SGLang's module).
    for device in ["cuda", "cuda:1", "cpu"] {
        let o = python(&[
            ("MEMTEST_SGLANG_LEAK", "scheduler_tensor"),
            ("MEMTEST_SGLANG_LEAK_DEVICE", device),
        ]);
        assert!(o.status.success(), "{device}: {}", text(&o));
    }
}
