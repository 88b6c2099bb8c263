use super::exchange::{SiteFile, States};
use super::*;
use crate::tracker::ProcessInfo;

fn info(pid: u32, role: &str) -> ProcessInfo {
    ProcessInfo {
        pid,
        ppid: 1,
        name: role.to_owned(),
        role: Some(role.to_owned()),
        cmdline: String::new(),
        first_seen_ms: 0,
        last_seen_ms: 0,
    }
}

fn ended(pid: u32, growth: i64, file: &str) -> StateFile {
    StateFile {
        pid,
        state: "ended".into(),
        seq: 2,
        growth,
        top: vec![SiteFile {
            file: file.into(),
            line: 7,
            growth,
            count: 3,
            ..SiteFile::default()
        }],
        ..StateFile::default()
    }
}

/// A PID that certainly ran and exited: a child we reaped.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let pid = c.id();
    c.wait().expect("wait");
    pid
}

/// Mapping readings in which each `(pid, growth)` grew that much, the largest first.
fn mappings(grown: &[(u32, i64)]) -> crate::diagnose::Mappings {
    let mut processes: Vec<crate::diagnose::ProcessGrowth> = grown
        .iter()
        .map(|&(pid, growth)| crate::diagnose::ProcessGrowth {
            pid,
            label: format!("pid {pid}"),
            before: 0,
            after: growth as u64,
            growth,
            per_request: None,
            kinds: Vec::new(),
        })
        .collect();
    processes.sort_by_key(|p| std::cmp::Reverse(p.growth));
    crate::diagnose::Mappings {
        from: String::new(),
        to: String::new(),
        requests: 10,
        processes,
        unreadable: Vec::new(),
    }
}

fn run_with(
    begun: Vec<u32>,
    ended_states: Option<(States, u64)>,
) -> (PyHeapRun, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tempdir");
    let run = PyHeapRun::prepare(out.path(), "t", PyHeapConfig::default());
    {
        let mut st = run.state();
        st.begun = begun;
        st.ended = ended_states;
    }
    (run, out)
}

#[test]
fn the_guilty_process_comes_first_and_every_failure_is_a_sentence() {
    let me = std::process::id();
    let dead = dead_pid();
    let (unreadable, failed) = (dead + 100_000, dead + 100_001);
    let mut timeline = Timeline::default();
    timeline.processes.insert(me, info(me, "scheduler"));
    timeline.processes.insert(dead, info(dead, "detokenizer"));
    timeline
        .processes
        .insert(4_000_000, info(4_000_000, "launcher"));
    let mut states = States::new();
    states.insert(
        me,
        Ok(ended(
            me,
            1000,
            "/v/lib/python3.11/site-packages/sglang/a.py",
        )),
    );
    let mut stuck = ended(dead, 0, "x");
    stuck.state = "begun".into();
    states.insert(dead, Ok(stuck));
    states.insert(unreadable, Err("could not read /x/1.json: denied".into()));
    states.insert(
        failed,
        Ok(StateFile {
            state: "error".into(),
            error: Some("RuntimeError: boom".into()),
            ..StateFile::default()
        }),
    );
    let (run, _out) = run_with(vec![me, dead, unreadable, failed], Some((states, 100)));
    let h = run.finish(&timeline, &[me], Some(&mappings(&[(dead, 5000), (me, 10)])));
    assert_eq!(h.focus, Some(me));
    assert_eq!(h.focus_reason.as_deref(), Some("its memory leaked"));
    assert_eq!(h.requests, 100);
    let p = &h.processes[0];
    assert_eq!(
        (p.label.as_str(), p.growth, p.per_request),
        ("scheduler", 1000, Some(10.0))
    );
    assert_eq!(p.sites[0].place(), "sglang/a.py:7");
    let notes = h.notes.join("\n");
    assert!(
        notes.contains(&format!(
            "detokenizer (pid {dead}) exited before the second Python heap snapshot"
        )),
        "{notes}"
    );
    assert!(
        notes.contains("denied: no Python heap growth for it"),
        "{notes}"
    );
    assert!(notes.contains("RuntimeError: boom"), "{notes}");
    assert!(
        notes.contains("not traced: launcher (pid 4000000)"),
        "a process of the tree without the tracer is named: {notes}"
    );
}

#[test]
fn without_a_guilty_process_the_one_that_grew_most_is_shown() {
    let me = std::process::id();
    let parent = std::os::unix::process::parent_id();
    let mut states = States::new();
    states.insert(me, Ok(ended(me, 10, "a.py")));
    states.insert(parent, Ok(ended(parent, 5000, "b.py")));
    let (run, _out) = run_with(vec![me, parent], Some((states.clone(), 10)));
    let h = run.finish(
        &Timeline::default(),
        &[],
        Some(&mappings(&[(me, 7000), (parent, 10)])),
    );
    assert_eq!(
        h.focus,
        Some(me),
        "resident growth decides, not the traced heap"
    );
    assert_eq!(
        h.focus_reason.as_deref(),
        Some("its resident memory grew most")
    );
    let (run, _out) = run_with(vec![me, parent], Some((states, 10)));
    let h = run.finish(&Timeline::default(), &[], None);
    assert_eq!(h.focus, Some(parent));
    assert_eq!(h.processes[0].pid, parent);
}

#[test]
fn no_python_no_snapshot_and_no_end_each_say_so() {
    let (run, _out) = run_with(Vec::new(), None);
    let h = run.finish(&Timeline::default(), &[], None);
    assert!(h.processes.is_empty());
    assert!(
        h.notes[0]
            .contains("no process of the server started the tracer — the server is not Python"),
        "{:?}",
        h.notes
    );
    let (run, _out) = run_with(vec![std::process::id()], None);
    let h = run.finish(&Timeline::default(), &[], None);
    assert!(
        h.notes[0].contains("the run ended before its last measured request"),
        "{:?}",
        h.notes
    );
    let blocked = tempfile::tempdir().expect("tempdir");
    let file = blocked.path().join("not-a-folder");
    std::fs::write(&file, "").expect("write");
    let run = PyHeapRun::prepare(&file, "t", PyHeapConfig::default());
    assert!(run.server_env().is_none());
    let h = run.finish(&Timeline::default(), &[], None);
    assert!(
        h.notes[0]
            .starts_with("no Python heap attribution: failed to write the Python heap tracer into")
            && h.notes[0].contains("check that the output folder is writable"),
        "{:?}",
        h.notes
    );
}

#[test]
fn paths_are_shortened_below_site_packages_and_the_standard_library() {
    assert_eq!(
        short_path("/v/lib/python3.11/site-packages/sglang/srt/x.py"),
        "sglang/srt/x.py"
    );
    assert_eq!(short_path("/usr/lib/python3/dist-packages/y.py"), "y.py");
    assert_eq!(
        short_path("/root/.pyenv/versions/3.11.7/lib/python3.11/asyncio/events.py"),
        "python3.11/asyncio/events.py"
    );
    assert_eq!(short_path("python_child.py"), "python_child.py");
}

#[test]
fn notes_about_a_pid_name_its_role() {
    let label = |pid: u32| {
        if pid == 7 {
            "scheduler".to_owned()
        } else {
            format!("pid {pid}")
        }
    };
    assert_eq!(
        relabel("pid 7 did not answer", &label),
        "scheduler (pid 7) did not answer"
    );
    assert_eq!(
        relabel("pid 8 did not answer", &label),
        "pid 8 did not answer"
    );
    assert_eq!(relabel("other", &label), "other");
}

/// `python3 -c CODE` with `PYTHONPATH` and more variables, or `None` without a python3 (a
/// failure under `CI=true`).
fn python(code: &str, env: &[(&str, &std::path::Path)]) -> Option<std::process::Output> {
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", code]).env_remove("MEMTEST_PY_HEAP_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(o) => Some(o),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("CI=true but python3 cannot run: {e}")
        }
        Err(e) => {
            eprintln!("skipped: python3 cannot run ({e})");
            None
        }
    }
}

#[test]
fn the_tracer_chains_to_the_sitecustomize_it_shadows_and_leaves_sys_path_as_it_was() {
    let out = tempfile::tempdir().expect("tempdir");
    let x =
        exchange::Exchange::prepare(out.path(), "chain", PyHeapConfig::default()).expect("prepare");
    let users = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        users.path().join("sitecustomize.py"),
        "import threading\nprint('users ran, tracer', [t.name for t in threading.enumerate()][1:])\n",
    )
    .expect("write");
    let path = std::env::join_paths([x.site(), users.path()]).expect("join");
    let path = std::path::PathBuf::from(path);
    let code = format!(
        "import sys, sitecustomize; print('main', {:?} in sys.path, sitecustomize.__file__)",
        x.site().display().to_string()
    );
    let Some(o) = python(
        &code,
        &[("PYTHONPATH", &path), ("MEMTEST_PY_HEAP_DIR", x.dir())],
    ) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ours = x.site().join("sitecustomize.py").display().to_string();
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "users ran, tracer ['memtest-py-heap']",
            &format!("main True {ours}")
        ],
        "the user's ran after ours started its thread, and ours is still `sitecustomize`"
    );
    let states = x.states();
    let (_, s) = states.iter().next().expect("the process wrote its state");
    let s = s.as_ref().expect("readable");
    assert_eq!((s.state.as_str(), s.frames), ("started", DEFAULT_FRAMES));

    // Nothing to chain to, and no exchange folder: the interpreter starts as usual.
    let Some(o) = python("print('ok')", &[("PYTHONPATH", x.site())]) else {
        return;
    };
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n");
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A chained sitecustomize that stops the interpreter still stops it, as it would alone
    // (the planted-leak fixture does so on a bad setting).
    std::fs::write(
        users.path().join("sitecustomize.py"),
        "import sys\nsys.exit('bad setting')\n",
    )
    .expect("write");
    let Some(o) = python("print('ran')", &[("PYTHONPATH", &path)]) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(stderr.contains("SystemExit: bad setting"), "{stderr}");
}

/// What `end` reports is what is still held: freed tuples parked on CPython's free list (up to
/// 2000 per length, which tracemalloc still counts at the line that made them: prometheus_client
/// on SGLang) and garbage in reference cycles are collected first; a kept block is named.
#[test]
fn the_end_snapshot_counts_what_is_held_not_free_lists_or_cyclic_garbage() {
    let out = tempfile::tempdir().expect("tempdir");
    let x = exchange::Exchange::prepare(out.path(), "freelist", PyHeapConfig::default())
        .expect("prepare");
    let code = r#"
import json, sitecustomize
h = sitecustomize._heap
h.begin()
def churn():
    ts = [tuple(str(i + j) for j in range(3)) for i in range(5000)]
    del ts
churn()
class Node:
    pass
for _ in range(300):
    a, b = Node(), Node()
    a.other, b.other = b, a
    a.payload = bytearray(1000)
    del a, b
kept = [bytearray(10000) for _ in range(100)]
h.end()
print(json.dumps([[t["line"], t["growth"], t["count"]] for t in h.state["top"]]))
print(h.state["gc_collected"])
"#;
    let Some(o) = python(
        code,
        &[("PYTHONPATH", x.site()), ("MEMTEST_PY_HEAP_DIR", x.dir())],
    ) else {
        return;
    };
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut lines = stdout.lines();
    let top: Vec<(u32, i64, i64)> = serde_json::from_str(lines.next().expect("top")).expect("json");
    let collected: u64 = lines.next().expect("collected").parse().expect("a count");
    assert_eq!(top[0].0, 16, "the kept bytearrays come first: {top:?}");
    assert!(top[0].1 >= 100 * 10_000, "{top:?}");
    let rest: i64 = top[1..].iter().map(|t| t.1).sum();
    assert!(
        rest < 20_000,
        "no freed tuple (line 6) nor cyclic garbage (lines 12-14) counts: {top:?}"
    );
    assert!(
        collected >= 600,
        "the 300 cycles were collected: {collected}"
    );
}
