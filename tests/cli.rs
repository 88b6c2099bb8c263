//! The command line's contract: exit codes, reports on disk, clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_sglang-memtest")
}

fn out_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cli")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn memtest(args: &[&str]) -> Output {
    Command::new(exe())
        .args(args)
        .env("MEMTEST_LOG", "warn")
        .output()
        .expect("the CLI runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `monitor` against the reference server: fast settings, output into `dir`.
fn monitor(dir: &Path, test_type: &str, knobs: &[&str]) -> Output {
    let mut args = vec![
        "monitor",
        "--test-type",
        test_type,
        "--reference",
        "--num-requests",
        "40",
        "--request-interval",
        "0.01",
        "--sample-interval",
        "0.05",
        "--no-plot",
        "--out-dir",
    ];
    let dir = dir.to_str().expect("utf-8 path");
    args.push(dir);
    let knob_args: Vec<String> = knobs
        .iter()
        .map(|k| format!("--reference-arg={k}"))
        .collect();
    args.extend(knob_args.iter().map(String::as_str));
    memtest(&args)
}

fn report_outcome(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    assert_eq!(v["schema_version"], 2);
    v["outcome"].as_str().expect("an outcome").to_owned()
}

#[test]
fn monitor_exits_3_on_a_planted_leak_and_0_without() {
    let dir = out_dir("leak");
    let o = monitor(&dir, "text", &["--leak-bytes-per-request=1048576"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(report_outcome(&dir.join("text_model.json")), "leak");

    let dir = out_dir("clean");
    let o = monitor(&dir, "text", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(report_outcome(&dir.join("text_model.json")), "pass");
    assert!(
        text(&o).contains("PASS"),
        "the summary names the outcome: {}",
        text(&o)
    );
}

#[test]
fn a_kv_token_leak_memory_cannot_see_exits_3_and_names_the_accounting() {
    let dir = out_dir("kv_leak");
    let o = monitor(&dir, "text", &["--leak-kv-tokens-per-request=4"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(report_outcome(&dir.join("text_model.json")), "leak");
    let out = text(&o);
    assert!(out.contains("LEAK      server.kv_tokens@idle"), "{out}");
    assert!(out.contains("pass      host.rss@tree"), "{out}");
}

#[test]
fn an_image_leak_fails_the_image_scenario_only() {
    let knobs = ["--leak-bytes-per-image=1048576"];
    let dir = out_dir("image_leak");
    let o = monitor(&dir, "vlm-image", &knobs);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(report_outcome(&dir.join("vlm_image.json")), "leak");

    let dir = out_dir("image_leak_text_only");
    let o = monitor(&dir, "vlm-text", &knobs);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        report_outcome(&dir.join("vlm_no_mm_processor.json")),
        "pass"
    );
}

#[test]
fn compare_matches_processes_by_role_across_runs_and_flags_a_regression() {
    let before = out_dir("compare_before");
    assert_eq!(
        monitor(&before, "text", &["--children=2"]).status.code(),
        Some(0)
    );
    let after = out_dir("compare_after");
    let leak = [
        "--children=2",
        "--leak-in-child=0",
        "--leak-bytes-per-request=1048576",
    ];
    assert_eq!(monitor(&after, "text", &leak).status.code(), Some(3));
    let a = before.join("text_model.json");
    let b = after.join("text_model.json");
    let pids = |p: &Path| -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).expect("report")).expect("json");
        v["timeline"]["processes"]
            .as_object()
            .expect("processes")
            .keys()
            .cloned()
            .collect()
    };
    let (pa, pb) = (pids(&a), pids(&b));
    assert!(
        pa.iter().all(|p| !pb.contains(p)),
        "the runs share PIDs: {pa:?} {pb:?}"
    );

    let (a, b) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    let o = memtest(&["compare", a, b]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("regressed: host.rss@scheduler: leaks now (pass before)"),
        "{out}"
    );
    assert!(!out.contains("@pid:"), "a metric keyed by PID: {out}");

    let o = memtest(&["compare", a, b, "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    let metric = |name: &str| {
        v["metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .find(|m| m["metric"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"))
            .clone()
    };
    let s = metric("host.rss@scheduler");
    assert_eq!(s["change"], "regressed");
    let (lo, hi) = (
        s["difference"]["ci"]["lo"].as_f64().expect("lo"),
        s["difference"]["ci"]["hi"].as_f64().expect("hi"),
    );
    assert!(
        lo < 1048576.0 * 1.05 && hi > 1048576.0 * 0.95,
        "[{lo}, {hi}]"
    );
    assert_eq!(metric("host.rss@detokenizer")["change"], "same");

    // The fix, the other way round: an improvement, exit 0; a report against itself: the same.
    let o = memtest(&["compare", b, a]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("improved"), "{}", text(&o));
    let o = memtest(&["compare", b, b]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no regression"), "{}", text(&o));
}

#[test]
fn the_seed_runner_writes_the_seeds_file_names_beside_ours_and_takes_its_port() {
    let dir = out_dir("seed_run");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let port = port.to_string();
    let o = memtest(&[
        "run",
        "--test",
        "text-model",
        "--reference",
        "--port",
        &port,
        "--num-requests",
        "20",
        "--request-interval",
        "0.01",
        "--out-dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ours = dir.join("text_model.json");
    assert_eq!(report_outcome(&ours), "pass");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ours).expect("report")).expect("json");
    assert!(
        v["target"]["base_url"]
            .as_str()
            .expect("a URL")
            .ends_with(&format!(":{port}")),
        "--port was not used: {}",
        v["target"]["base_url"]
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the folder")
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    let seed = |suffix: &str| {
        names
            .iter()
            .find(|n| n.starts_with("text_reference_") && n.ends_with(suffix))
            .unwrap_or_else(|| panic!("no text_reference_<unix>{suffix} in {names:?}"))
            .clone()
    };
    let data = seed("_memory_data.json");
    let unix = data
        .trim_start_matches("text_reference_")
        .trim_end_matches("_memory_data.json");
    assert!(
        unix.parse::<u64>().is_ok_and(|t| t > 1_700_000_000),
        "{data}"
    );
    assert_eq!(report_outcome(&dir.join(&data)), "pass");
    seed("_memory_plot.png");
    assert!(dir.join("text_model.html").is_file() && dir.join("text_model.png").is_file());
    let files = &v["files"]["seed"];
    assert_eq!(files.as_array().map(Vec::len), Some(2), "{files}");
}

#[test]
fn bad_input_is_a_clear_usage_error() {
    let o = memtest(&[
        "monitor",
        "--reference",
        "--num-requests",
        "1",
        "--no-plot",
        "--out-dir",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--num-requests \"1\" is not valid") && text(&o).contains("from 3 to"),
        "{}",
        text(&o)
    );

    let o = memtest(&["monitor", "--reference", "--model", "m"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("choose different servers"),
        "{}",
        text(&o)
    );

    // The environment is read by the same parser, with the variable's name in the message.
    let o = Command::new(env!("CARGO_BIN_EXE_sglang-memtest"))
        .args(["monitor", "--reference", "--no-plot"])
        .env("MEMTEST_CONCURRENCY", "0")
        .output()
        .expect("the CLI runs");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("MEMTEST_CONCURRENCY=\"0\""),
        "{}",
        text(&o)
    );

    // An image smaller than the generator can draw is refused with the range.
    let o = memtest(&["monitor", "--test-type", "vlm-image", "--image-size", "8x8"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("from 16 to 8192"), "{}", text(&o));

    let o = memtest(&["compare", "/nonexistent/a.json", "/nonexistent/b.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("/nonexistent/a.json"), "{}", text(&o));

    // The seed's flags: a port must be one, and an attached server's port is in its URL.
    let o = memtest(&["monitor", "--reference", "--port", "0", "--no-plot"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--port \"0\" is not valid"),
        "{}",
        text(&o)
    );
    let o = memtest(&[
        "monitor",
        "--base-url",
        "http://127.0.0.1:9",
        "--port",
        "8000",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--base-url"), "{}", text(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_sglang-memtest"))
        .args(["monitor", "--model", "m", "--no-plot"])
        .env("SGLANG_LOG_LEVEL", "loud")
        .output()
        .expect("the CLI runs");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("SGLANG_LOG_LEVEL=\"loud\" is not valid")
            && text(&o).contains("debug, info"),
        "{}",
        text(&o)
    );
    let o = memtest(&["monitor", "--mm-attention-backend", "fa 3", "--no-plot"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--mm-attention-backend"), "{}", text(&o));
    let o = memtest(&[
        "monitor",
        "--test-type",
        "vlm-image",
        "--vllm-model",
        "m",
        "--mm-attention-backend",
        "sdpa",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--mm-attention-backend") && text(&o).contains("--vllm-arg"),
        "{}",
        text(&o)
    );

    let o = memtest(&[
        "monitor",
        "--image-size",
        "big",
        "--test-type",
        "vlm-image",
        "--no-plot",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("WIDTHxHEIGHT"), "{}", text(&o));
}

#[test]
fn a_server_command_that_fails_to_start_is_a_setup_error_with_its_log() {
    let dir = out_dir("bad_server_cmd");
    let o = memtest(&[
        "monitor",
        "--server-cmd",
        "sh -c 'echo model not found >&2; exit 3'",
        "--no-plot",
        "--out-dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("model not found"), "{}", text(&o));
    assert_eq!(
        report_outcome(&dir.join("text_model.json")),
        "error",
        "the report is written on failure too"
    );
}

#[test]
fn demo_shows_clean_and_leaking_side_by_side() {
    let dir = out_dir("demo");
    let o = memtest(&[
        "demo",
        "--num-requests",
        "30",
        "--out-dir",
        dir.to_str().expect("utf-8"),
    ]);
    // The demo checks its own verdicts against the planted leaks and exits 1 when they differ.
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("demo_clean") && out.contains("demo_leaking"),
        "{out}"
    );
    let names = [
        "demo_clean",
        "demo_leaking",
        "demo_child_leak",
        "demo_bounded_cache",
        "demo_small_leak_big_neighbour",
    ];
    let index = std::fs::read_to_string(dir.join("index.html")).expect("the suite page");
    for name in names {
        for ext in ["json", "png", "svg", "html"] {
            assert!(dir.join(format!("{name}.{ext}")).is_file(), "{name}.{ext}");
        }
        assert!(
            index.contains(&format!("href=\"{name}.html\"")),
            "index lacks {name}"
        );
        let page = std::fs::read_to_string(dir.join(format!("{name}.html"))).expect("page");
        assert!(
            page.contains("href=\"index.html\""),
            "{name}.html does not link the suite"
        );
    }
    assert!(out.contains("HTML report: "), "{out}");
}

#[test]
fn suite_runs_the_three_scenarios_into_one_folder() {
    let dir = out_dir("suite");
    let o = memtest(&[
        "suite",
        "--reference",
        "--num-requests",
        "20",
        "--request-interval",
        "0.01",
        "--image-size",
        "64x64",
        "--no-plot",
        "--out-dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let index = std::fs::read_to_string(dir.join("index.html")).expect("the suite page");
    for name in ["text_model", "vlm_no_mm_processor", "vlm_image"] {
        assert_eq!(
            report_outcome(&dir.join(format!("{name}.json"))),
            "pass",
            "{name}"
        );
        assert!(
            index.contains(&format!("href=\"{name}.html\"")),
            "index lacks {name}"
        );
    }
}

#[test]
fn a_run_too_short_to_call_is_inconclusive_and_says_how_long_to_run() {
    // 32 KiB/request is a leak, but 20 requests grow only ~640 KiB: below the 1 MiB floor that
    // can count as one. With no budget to run longer (--max-requests 20) the honest answer is
    // "run longer", with exit status 4, never a pass.
    let dir = out_dir("inconclusive");
    let o = memtest(&[
        "monitor",
        "--reference",
        "--reference-arg=--leak-bytes-per-request=32768",
        "--num-requests",
        "20",
        "--max-requests",
        "20",
        "--request-interval",
        "0.01",
        "--no-plot",
        "--out-dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("measured requests would decide"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("budget was spent"), "{}", text(&o));
    assert_eq!(report_outcome(&dir.join("text_model.json")), "inconclusive");
}

#[test]
fn the_same_short_run_decides_itself_when_it_may_run_longer() {
    // The default budget (4 × 20): the run goes on until the leak has grown past the floor.
    let dir = out_dir("adaptive_cli");
    let o = memtest(&[
        "monitor",
        "--reference",
        "--reference-arg=--leak-bytes-per-request=32768",
        "--num-requests",
        "20",
        "--request-interval",
        "0.01",
        "--no-plot",
        "--out-dir",
        dir.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("planned 20, budget 80"), "{}", text(&o));
    assert_eq!(report_outcome(&dir.join("text_model.json")), "leak");
}

#[test]
fn a_harness_killed_mid_run_leaves_what_analyze_turns_into_a_verdict() {
    let dir = out_dir("sigkill");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sglang-memtest"))
        .args([
            "monitor",
            "--reference",
            "--reference-arg=--leak-bytes-per-request=1048576",
            "--num-requests",
            "100000",
            "--request-interval",
            "0.005",
            "--no-plot",
            "--out-dir",
            dir.to_str().expect("utf-8"),
        ])
        .env("MEMTEST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the CLI starts");
    let marks = dir.join("text_model.marks.csv");
    let started = std::time::Instant::now();
    loop {
        let measured = std::fs::read_to_string(&marks)
            .map(|t| t.lines().filter(|l| l.contains(",measure,")).count())
            .unwrap_or(0);
        if measured >= 80 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no measured requests on disk after a minute"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SIGKILL: no handler runs, nothing is written on the way out.
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let before =
        std::fs::read_to_string(dir.join("text_model.json")).expect("a provisional report");
    assert!(before.contains("did not finish"), "{before:.300}");
    let o = memtest(&["analyze", dir.to_str().expect("utf-8"), "--no-plot"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(report_outcome(&dir.join("text_model.json")), "leak");
    assert!(
        text(&o).contains("harness stopped before the end"),
        "{}",
        text(&o)
    );
}
