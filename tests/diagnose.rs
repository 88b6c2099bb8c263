//! After "leak": the report says where the memory grew (by mapping kind, in the guilty process)
//! and holds a `py-spy dump` of that process. py-spy and Python are looked for on the machine:
//! without them a test says what to install and passes — except under CI (`CI=true`), where it
//! fails (`.ci/run` installs py-spy into ~/.cache/sglang-memtest/tools).

mod common;

use common::{quick, run};
use sglang_memtest::ScenarioConfig;
use sglang_memtest::diagnose::PySpy;
use sglang_memtest::load::Workload;
use sglang_memtest::report::RunOutcome;
use std::time::Duration;

const LEAK: u64 = 1024 * 1024;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A Python 3 on PATH (the reference server's `--python-children` runs its children with it).
fn python() -> Option<String> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import ctypes"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| "python3".to_owned())
}

/// py-spy, or `None` after saying why the test does not check it (a failure under CI).
fn py_spy_or_skip(what: &str) -> Option<std::path::PathBuf> {
    match PySpy::Auto.locate() {
        Ok(p) => p,
        Err(line) if ci() => panic!(
            "CI=true but py-spy was not found ({line}): .ci/run installs it into ~/.cache/sglang-memtest/tools"
        ),
        Err(line) => {
            eprintln!("skipped {what}: {line}");
            None
        }
    }
}

#[test]
fn a_leak_in_a_python_child_is_placed_in_its_mappings_and_its_stacks_are_dumped() {
    let Some(py) = python() else {
        assert!(
            !ci(),
            "CI=true but python3 is missing: py-spy's install needs it too"
        );
        eprintln!("skipped: no python3 on PATH (the Python children need it)");
        return;
    };
    let py_spy = py_spy_or_skip("the py-spy part");
    let r = run(&quick(
        "diagnose_python_child",
        &[
            "--children=2",
            "--leak-in-child=0",
            &format!("--python-children={py}"),
            &format!("--leak-bytes-per-request={LEAK}"),
        ],
        Workload::Text,
    )
    .requests(40));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let d = r.diagnosis.as_ref().expect("a diagnosis");
    let m = d.mappings.as_ref().expect("the mappings were read");
    let scheduler = r
        .timeline
        .processes
        .values()
        .find(|p| p.role.as_deref() == Some("scheduler"))
        .expect("the Python child is seen as the scheduler");
    assert_eq!(d.guilty, vec![scheduler.pid], "{}", r.summary());
    let grown = m
        .processes
        .iter()
        .find(|p| p.pid == scheduler.pid)
        .expect("the scheduler's mappings");
    let top = grown.top().expect("a kind grew");
    assert!(
        top.kind.starts_with("anon"),
        "1 MiB Python buffers are anonymous mmaps, not {}: {grown:?}",
        top.kind
    );
    let expected = (LEAK * m.requests) as f64;
    assert!(
        (top.growth as f64) > 0.8 * expected && (top.growth as f64) < 1.3 * expected,
        "{} grew {} over {} requests, expected about {expected}",
        top.kind,
        top.growth,
        m.requests
    );
    let per = top.per_request.expect("per request");
    assert!((per - LEAK as f64).abs() < 0.3 * LEAK as f64, "{per}");
    assert!(
        r.summary().contains("where: scheduler"),
        "the console names the process and the kind: {}",
        r.summary()
    );
    // The other processes did not grow like that.
    for p in m.processes.iter().filter(|p| p.pid != scheduler.pid) {
        assert!((p.growth as f64) < 0.1 * expected, "{p:?}");
    }
    let Some(_) = py_spy else { return };
    let s = d.stacks.first().expect("a stack snapshot");
    assert_eq!(s.pid, scheduler.pid);
    assert!(s.ok, "py-spy dumped the child: {s:?}");
    let file = s.file.as_ref().expect("the dump is in the run folder");
    assert_eq!(
        file.parent(),
        r.files.json.as_ref().and_then(|j| j.parent())
    );
    let text = std::fs::read_to_string(file).expect("the dump is readable");
    assert!(
        text.contains("MainThread") && text.contains("serve ("),
        "Python stacks of the child: {text}"
    );
    let html = std::fs::read_to_string(r.files.html.as_ref().expect("a page")).expect("html");
    let name = file.file_name().expect("a name").to_string_lossy();
    assert!(
        html.contains(&format!("href=\"{name}\"")),
        "the page links the dump"
    );
}

#[test]
fn a_leak_in_a_native_child_names_its_mappings_and_says_py_spy_cannot_read_it() {
    let r = run(&quick(
        "diagnose_native_child",
        &[
            "--children=2",
            "--leak-in-child=1",
            &format!("--leak-bytes-per-request={LEAK}"),
        ],
        Workload::Text,
    )
    .requests(40));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let d = r.diagnosis.as_ref().expect("a diagnosis");
    let detok = r
        .timeline
        .processes
        .values()
        .find(|p| p.role.as_deref() == Some("detokenizer"))
        .expect("child 1 of 2 is the detokenizer");
    assert_eq!(d.guilty, vec![detok.pid]);
    let m = d.mappings.as_ref().expect("mappings");
    assert_eq!(m.processes.first().map(|p| p.pid), Some(detok.pid));
    let top = m.processes[0].top().expect("a kind grew");
    assert!(top.kind.starts_with("anon"), "{top:?}");
    if py_spy_or_skip("the py-spy failure path").is_some() {
        let s = d.stacks.first().expect("a snapshot was attempted");
        assert!(!s.ok);
        assert!(
            s.message
                .as_deref()
                .is_some_and(|m| m.contains("not a Python process")),
            "{s:?}"
        );
    }
}

#[test]
fn without_py_spy_the_report_says_what_to_install_and_a_clean_run_blames_nobody() {
    let r = run(&quick(
        "diagnose_no_py_spy",
        &[
            "--children=1",
            "--leak-in-child",
            &format!("--leak-bytes-per-request={LEAK}"),
        ],
        Workload::Text,
    )
    .set("py_spy", "/nonexistent/py-spy")
    .requests(30));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let d = r.diagnosis.as_ref().expect("a diagnosis");
    assert!(d.stacks.is_empty());
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("/nonexistent/py-spy does not exist")),
        "{:?}",
        d.notes
    );
    assert!(
        r.summary().contains("diagnosis: no stack snapshot"),
        "{}",
        r.summary()
    );

    let clean = run(&quick("diagnose_clean", &["--children=1"], Workload::Text).requests(30));
    clean.assert_pass();
    let d = clean
        .diagnosis
        .as_ref()
        .expect("the mappings are read on every run");
    assert!(
        d.guilty.is_empty() && d.stacks.is_empty() && d.notes.is_empty(),
        "{d:?}"
    );
    assert!(d.mappings.as_ref().is_some_and(|m| !m.processes.is_empty()));
}

/// The line of the reference server's Python child that keeps each planted leak.
fn planted_line() -> u32 {
    let src = include_str!("../src/bin/sglang-memtest/reference/python_child.py");
    let at = src
        .lines()
        .position(|l| l.trim() == "block = bytearray(n)")
        .expect("python_child.py allocates the planted block");
    at as u32 + 1
}

/// `--py-heap` on the reference server's Python children, launched as a command so that a
/// user's own `sitecustomize` is on the server's PYTHONPATH too: the leaking line of the child
/// is named first, in the child, with the planted bytes; the user's `sitecustomize` still ran in
/// every Python process (the tracer chains to it).
#[test]
fn py_heap_names_the_leaking_line_in_the_leaking_python_child_and_chains_to_a_users_sitecustomize()
{
    let Some(py) = python() else {
        assert!(!ci(), "CI=true but python3 is missing");
        eprintln!("skipped: no python3 on PATH (the Python children need it)");
        return;
    };
    const REQUESTS: u64 = 30;
    const BYTES: u64 = 256 * 1024;
    let users = tempfile::tempdir().expect("tempdir");
    let marks = users.path().join("marks");
    std::fs::create_dir(&marks).expect("mkdir");
    std::fs::write(
        users.path().join("sitecustomize.py"),
        "import os\nopen(os.path.join(os.environ['USER_MARKS'], str(os.getpid())), 'w').close()\n",
    )
    .expect("write the user's sitecustomize");
    let exe = common::exe().display().to_string();
    let r = run(&ScenarioConfig::new("py_heap_python_child", Workload::Text)
        .quick()
        .warmup_requests(5)
        .out_dir(common::out_dir("py_heap_python_child"))
        .plots(false)
        .startup_timeout(Duration::from_secs(30))
        .set(
            "server_cmd",
            format!(
                "{exe} serve-reference --port {{port}} --children=2 --leak-in-child=0 --python-children={py} --leak-bytes-per-request={BYTES}"
            ),
        )
        .server_env("PYTHONPATH", users.path().display().to_string())
        .server_env("USER_MARKS", marks.display().to_string())
        .set("py_heap", "1")
        .set("py_heap_frames", "4")
        .set("py_spy", "off")
        .requests(REQUESTS)
        .max_requests(REQUESTS));
    eprintln!("{}", r.summary());
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let scheduler = r
        .timeline
        .processes
        .values()
        .find(|p| p.role.as_deref() == Some("scheduler"))
        .expect("the Python child is seen as the scheduler")
        .pid;
    let h = r
        .diagnosis
        .as_ref()
        .and_then(|d| d.py_heap.as_ref())
        .unwrap_or_else(|| panic!("a Python heap section\n{}", r.summary()));
    assert_eq!(h.focus, Some(scheduler), "{}", r.summary());
    assert_eq!(h.focus_reason.as_deref(), Some("its memory leaked"));
    assert_eq!(h.frames, 4);
    let p = &h.processes[0];
    assert_eq!(p.pid, scheduler);
    let top = p.sites.first().expect("a site grew");
    assert_eq!(
        (top.file.as_str(), top.line),
        ("python_child.py", planted_line()),
        "{}",
        r.summary()
    );
    let planted = (BYTES * h.requests) as f64;
    assert!(
        (0.9 * planted..1.1 * planted).contains(&(top.growth as f64)),
        "{} grew {} B over {} requests, planted {planted}",
        top.place(),
        top.growth,
        h.requests
    );
    assert_eq!(
        top.count as u64,
        2 * h.requests,
        "two blocks per request: the bytearray and its buffer"
    );
    assert!(
        top.stacks[0].frames[1].starts_with("python_child.py:"),
        "the caller is in the stack: {:?}",
        top.stacks
    );
    // The detokenizer child is Python too, and did not grow like that.
    let detok = h
        .processes
        .iter()
        .find(|p| p.label == "detokenizer")
        .unwrap_or_else(|| panic!("the detokenizer was traced: {h:?}"));
    assert!((detok.growth as f64) < 0.01 * planted, "{detok:?}");
    // The reference server itself is native: said, not silently missing.
    assert!(
        h.notes.iter().any(|n| n.starts_with("not traced: ")),
        "{:?}",
        h.notes
    );
    let summary = r.summary();
    assert!(
        summary.contains(&format!(
            "py-heap: scheduler (pid {scheduler}), its memory leaked"
        )) && summary.contains(&format!("python_child.py:{}", planted_line())),
        "{summary}"
    );
    // The user's sitecustomize ran in both Python children, beside the tracer.
    for p in &h.processes {
        assert!(
            marks.join(p.pid.to_string()).exists(),
            "the user's sitecustomize did not run in {} (pid {})",
            p.label,
            p.pid
        );
    }
    let html = std::fs::read_to_string(r.files.html.as_ref().expect("a page")).expect("html");
    assert!(
        html.contains("Where, in Python terms")
            && html.contains(&format!("python_child.py:{}", planted_line())),
        "the page has the section"
    );
}

/// `--py-heap` against a server with no Python in it says so in the section, and a run without
/// `--py-heap` leaves no trace of it: no section, no folder.
#[test]
fn py_heap_without_python_says_so_and_without_the_switch_nothing_is_added() {
    let r = run(&quick(
        "py_heap_native",
        &[
            "--children=1",
            "--leak-in-child",
            &format!("--leak-bytes-per-request={LEAK}"),
        ],
        Workload::Text,
    )
    .set("py_heap", "1")
    .set("py_spy", "off")
    .requests(20));
    assert_eq!(r.outcome, RunOutcome::Leak, "{}", r.summary());
    let h = r
        .diagnosis
        .as_ref()
        .and_then(|d| d.py_heap.as_ref())
        .expect("a Python heap section, even empty");
    assert!(h.processes.is_empty() && h.focus.is_none(), "{h:?}");
    assert!(
        h.notes[0]
            .contains("no process of the server started the tracer — the server is not Python"),
        "{:?}",
        h.notes
    );
    assert!(
        r.summary()
            .contains("py-heap: no Python heap attribution: "),
        "{}",
        r.summary()
    );

    let dir = common::out_dir("py_heap_off");
    let r = run(&quick("py_heap_off", &["--children=1"], Workload::Text).requests(20));
    r.assert_pass();
    assert!(r.diagnosis.as_ref().is_some_and(|d| d.py_heap.is_none()));
    assert!(!dir.join("py_heap_off.py-heap").exists());
    assert!(!r.summary().contains("py-heap:"), "{}", r.summary());
}
