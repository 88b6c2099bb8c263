//! Fixture lifecycle against real processes: readiness, teardown of whole trees (children,
//! orphans, SIGTERM-ignorers), startup failures, panics, `/dev/shm` hygiene.
//!
//! Every test runs plain commands (`sh`, `sleep`, `python3 -m http.server`) through
//! `ServerSpec::command`, and every fixture is torn down by `stop` or `Drop` even when an
//! assertion fails. Tests are `#[parallel]` except the ones that touch process-global state.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serial_test::{parallel, serial};
use sglang_memtest::engine::Server;
use sglang_memtest::fixture::{
    ExitInfo, FixtureError, RootOutcome, ServerFixture, ServerSpec, WaitFor, kill_all_registered,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const HTTP_SERVER: &str = "exec python3 -m http.server {port} --bind 127.0.0.1";

/// A spec running `sh -c script`, ready when `GET /` answers 200, logging into `logs`.
fn sh(script: &str, logs: &Path) -> ServerSpec {
    ServerSpec::command("sh", ["-c", script])
        .with_wait_for(WaitFor::http_ok("/"))
        .with_log_dir(logs)
        .with_startup_timeout(Duration::from_secs(20))
        .with_grace(Duration::from_secs(5))
}

/// `/proc/PID/stat`'s state letter, `None` once the pid is gone (reaped).
fn state(pid: u32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text.get(text.rfind(')')? + 2..)?.chars().next()
}

fn alive(pid: u32) -> bool {
    state(pid).is_some_and(|s| s != 'Z' && s != 'X')
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn ppid(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text.get(text.rfind(')')? + 2..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test]
#[parallel]
async fn ready_server_answers_and_stops_cleanly() -> TestResult {
    let logs = tempfile::tempdir()?;
    let spec = ServerSpec::command(
        "python3",
        ["-m", "http.server", "{port}", "--bind", "{host}"],
    )
    .with_name("plain")
    .with_wait_for(WaitFor::http_ok("/"))
    .with_log_dir(logs.path());
    let fx = ServerFixture::start(spec).await?;
    let root = fx.root_pid().ok_or("no root pid")?;
    assert!(fx.base_url().starts_with("http://127.0.0.1:") && !fx.base_url().ends_with('/'));
    let answer = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .get(fx.base_url())
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 200);
    let pids = fx.pids();
    assert!(pids.contains(&root), "{pids:?} lacks {root}");
    assert_eq!(fx.exit_info(), None);
    assert_eq!(fx.log_path(), Some(logs.path().join("plain.log").as_path()));

    let report = fx.stop().await?;
    assert!(
        matches!(report.outcome, RootOutcome::Exited { .. }),
        "{report:?}"
    );
    assert!(
        report.leftovers.is_empty() && report.killed.is_empty(),
        "{report:?}"
    );
    assert!(
        pids.iter().all(|p| state(*p).is_none()),
        "{pids:?} not all reaped"
    );
    let log = std::fs::read_to_string(logs.path().join("plain.log"))?;
    assert!(
        log.starts_with("# memtest: ") && log.contains("python3 -m http.server"),
        "{log}"
    );
    Ok(())
}

#[tokio::test]
#[parallel]
async fn whole_tree_is_gone_after_drop() -> TestResult {
    let logs = tempfile::tempdir()?;
    let script = format!("sleep 300 & sleep 300 & {HTTP_SERVER}");
    let fx = ServerFixture::start(sh(&script, logs.path())).await?;
    let pids = fx.pids();
    assert!(pids.len() >= 3, "{pids:?}");
    assert_eq!(
        pids.iter().filter(|p| comm(**p) == "sleep").count(),
        2,
        "{pids:?}"
    );
    drop(fx);
    let left: Vec<u32> = pids.into_iter().filter(|p| state(*p).is_some()).collect();
    assert!(left.is_empty(), "still present after drop: {left:?}");
    Ok(())
}

#[tokio::test]
#[parallel]
async fn orphan_is_found_killed_and_reaped() -> TestResult {
    let logs = tempfile::tempdir()?;
    let script = format!("(sleep 300 &) ; {HTTP_SERVER}");
    let fx = ServerFixture::start(sh(&script, logs.path())).await?;
    let root = fx.root_pid().ok_or("no root pid")?;
    let orphan = fx
        .pids()
        .into_iter()
        .find(|p| comm(*p) == "sleep")
        .ok_or("orphan not in pids()")?;
    // Its parent (the subshell) is gone: the harness, as subreaper, adopted it.
    assert_eq!(ppid(orphan), Some(std::process::id()));
    assert_ne!(ppid(orphan), Some(root));
    let report = fx.stop().await?;
    assert!(report.reaped_orphans >= 1, "{report:?}");
    assert!(report.leftovers.is_empty(), "{report:?}");
    assert_eq!(state(orphan), None, "orphan {orphan} not reaped");
    Ok(())
}

#[tokio::test]
#[parallel]
async fn sigterm_ignorer_is_killed_after_grace() -> TestResult {
    let logs = tempfile::tempdir()?;
    let script = format!("trap '' TERM; {HTTP_SERVER}");
    let spec = sh(&script, logs.path()).with_grace(Duration::from_millis(300));
    let fx = ServerFixture::start(spec).await?;
    let pids = fx.pids();
    let report = fx.stop().await?;
    match &report.outcome {
        RootOutcome::Killed { after, status } => {
            assert!(*after >= Duration::from_millis(300), "{after:?}");
            assert_eq!(*status, Some(ExitInfo::Signal(9)));
        }
        other => panic!("expected Killed, got {other:?}"),
    }
    assert!(report.leftovers.is_empty(), "{report:?}");
    assert!(pids.iter().all(|p| state(*p).is_none()));
    Ok(())
}

#[tokio::test]
#[parallel]
async fn exit_during_startup_fails_fast_with_status_and_log() -> TestResult {
    let logs = tempfile::tempdir()?;
    let t0 = Instant::now();
    let spec = sh("echo model not found >&2; exit 3", logs.path())
        .with_startup_timeout(Duration::from_secs(30));
    let err = ServerFixture::start(spec)
        .await
        .err()
        .ok_or("start succeeded")?;
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        matches!(err, FixtureError::ExitedDuringStartup { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("exit status: 3") && text.contains("model not found"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
#[parallel]
async fn never_ready_times_out_names_the_error_and_cleans_up() -> TestResult {
    let logs = tempfile::tempdir()?;
    let pid_file = logs.path().join("pid");
    let pid_arg = pid_file.display().to_string();
    let spec = ServerSpec::command(
        "sh",
        ["-c", "echo $$ > \"$1\"; exec sleep 300", "sh", &pid_arg],
    )
    .with_wait_for(WaitFor::http_ok("/health"))
    .with_startup_timeout(Duration::from_secs(1))
    .with_log_dir(logs.path());
    let t0 = Instant::now();
    let err = ServerFixture::start(spec)
        .await
        .err()
        .ok_or("start succeeded")?;
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t0.elapsed()
    );
    let FixtureError::StartupTimeout { last_error, .. } = &err else {
        return Err(format!("expected StartupTimeout, got {err:?}").into());
    };
    assert!(
        last_error.to_lowercase().contains("connect"),
        "{last_error}"
    );
    assert!(err.to_string().contains("was not ready within 1s"), "{err}");
    let pid: u32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    assert_eq!(state(pid), None, "sleep {pid} still there");
    Ok(())
}

#[test]
#[parallel]
fn panic_with_live_fixture_still_tears_down() -> TestResult {
    let logs = tempfile::tempdir()?;
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let seen2 = Arc::clone(&seen);
    let script = format!("sleep 300 & (sleep 300 &) ; {HTTP_SERVER}");
    let spec = sh(&script, logs.path());
    let joined = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let fx = rt.block_on(ServerFixture::start(spec))?;
        seen2.lock().map_err(|e| e.to_string())?.extend(fx.pids());
        panic!("test body fails while the server runs");
        #[expect(unreachable_code)]
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    })
    .join();
    assert!(joined.is_err(), "the thread should have panicked");
    let pids = seen.lock().map_err(|e| e.to_string())?.clone();
    assert!(pids.len() >= 3, "{pids:?}");
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "alive after the panic: {left:?}");
    Ok(())
}

#[tokio::test]
#[parallel]
async fn missing_program_is_a_spawn_error_naming_the_path() -> TestResult {
    let logs = tempfile::tempdir()?;
    let spec = ServerSpec::command("/nonexistent/memtest-no-such-server", ["--port", "{port}"])
        .with_log_dir(logs.path());
    let err = ServerFixture::start(spec)
        .await
        .err()
        .ok_or("start succeeded")?;
    assert!(matches!(err, FixtureError::Spawn { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/memtest-no-such-server"),
        "{text}"
    );
    assert!(text.contains("install"), "{text}");

    let spec = Server::sglang("m")
        .with_python("/nonexistent/python")
        .into_spec();
    let spec = spec.with_log_dir(logs.path());
    let text = ServerFixture::start(spec)
        .await
        .err()
        .ok_or("start succeeded")?
        .to_string();
    assert!(
        text.contains("/nonexistent/python -c 'import sglang'"),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
#[parallel]
async fn port_placeholder_is_substituted_and_log_readiness_works() -> TestResult {
    let logs = tempfile::tempdir()?;
    let spec = ServerSpec::command(
        "sh",
        [
            "-c",
            "echo \"listening on $1\"; exec python3 -m http.server \"$1\" --bind 127.0.0.1",
            "sh",
            "{port}",
        ],
    )
    .with_wait_for(WaitFor::Log {
        pattern: "listening on".into(),
    })
    .with_wait_for(WaitFor::http_ok("/"))
    .with_log_dir(logs.path());
    assert_eq!(spec.argv().last().map(String::as_str), Some("{port}"));
    let fx = ServerFixture::start(spec).await?;
    let port = fx.port().to_string();
    assert!(fx.base_url().ends_with(&format!(":{port}")));
    assert_eq!(fx.argv().last(), Some(&port));
    assert_eq!(fx.argv().first().map(String::as_str), Some("sh"));
    assert!(
        fx.log_tail(10).contains(&format!("listening on {port}")),
        "{:?}",
        fx.log_tail(10)
    );

    let fixed = ServerSpec::command("srv", ["--port={port}", "--host={host}"]).with_port(4321);
    assert_eq!(fixed.argv(), ["srv", "--port=4321", "--host=127.0.0.1"]);
    fx.stop().await?;
    Ok(())
}

#[tokio::test]
#[parallel]
async fn exit_status_is_reported_after_the_root_dies() -> TestResult {
    let logs = tempfile::tempdir()?;
    let fx = ServerFixture::start(sh(HTTP_SERVER, logs.path())).await?;
    let root = fx.root_pid().ok_or("no root")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(root)?),
        nix::sys::signal::SIGKILL,
    )?;
    let t0 = Instant::now();
    while fx.exit_info().is_none() && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fx.exit_info(), Some(ExitInfo::Signal(9)));
    assert!(fx.pids().is_empty());
    let report = fx.stop().await?;
    assert!(
        matches!(report.outcome, RootOutcome::AlreadyExited { .. }),
        "{report:?}"
    );
    Ok(())
}

#[tokio::test]
#[parallel]
async fn shm_segments_of_the_run_are_removed_others_reported() -> TestResult {
    let logs = tempfile::tempdir()?;
    let shm = tempfile::tempdir()?;
    std::fs::write(shm.path().join("psm_before"), b"old")?;
    // The server holds psm_held open (fd 3 survives the exec), makes an SGLang-named segment,
    // and two it never holds: a psm_* (CPython's prefix, anyone's) and an unrelated name.
    let script = format!(
        "touch \"$1/psm_held\" \"$1/sgl_shm_0\" \"$1/psm_unheld\" \"$1/unrelated\"; exec 3<\"$1/psm_held\"; {HTTP_SERVER}"
    );
    let spec = ServerSpec::command(
        "sh",
        ["-c", &script, "sh", &shm.path().display().to_string()],
    )
    .with_wait_for(WaitFor::http_ok("/"))
    .with_log_dir(logs.path())
    .with_shm_dir(shm.path());
    let fx = ServerFixture::start(spec).await?;
    let report = fx.stop().await?;
    assert_eq!(report.shm_removed, ["psm_held", "sgl_shm_0"]);
    assert_eq!(report.shm_left, ["psm_unheld", "unrelated"]);
    assert!(shm.path().join("psm_before").exists() && shm.path().join("unrelated").exists());
    assert!(
        shm.path().join("psm_unheld").exists(),
        "psm_ alone is nobody's evidence"
    );
    assert!(!shm.path().join("psm_held").exists());
    let json = serde_json::to_value(&report)?;
    assert_eq!(json["outcome"]["kind"], "exited");
    Ok(())
}

#[tokio::test]
#[parallel]
async fn attached_server_is_not_ours() -> TestResult {
    let fx = ServerFixture::attach("http://127.0.0.1:30000/");
    assert_eq!(
        (fx.base_url(), fx.port()),
        ("http://127.0.0.1:30000", 30000)
    );
    assert!(fx.pids().is_empty() && fx.root_pid().is_none() && fx.tree().is_none());
    assert_eq!(fx.stop().await?.outcome, RootOutcome::NotOwned);
    Ok(())
}

#[tokio::test]
#[serial]
async fn kill_all_registered_tears_down_live_fixtures() -> TestResult {
    let logs = tempfile::tempdir()?;
    let script = format!("sleep 300 & {HTTP_SERVER}");
    let fx = ServerFixture::start(sh(&script, logs.path())).await?;
    let pids = fx.pids();
    let reports = tokio::task::spawn_blocking(kill_all_registered).await?;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(pids.iter().all(|p| state(*p).is_none()), "{pids:?}");
    let report = fx.stop().await?;
    assert!(
        matches!(report.outcome, RootOutcome::AlreadyExited { .. }),
        "{report:?}"
    );
    Ok(())
}

#[tokio::test]
#[serial]
async fn keep_server_leaves_it_running() -> TestResult {
    let logs = tempfile::tempdir()?;
    let fx = ServerFixture::start(sh(HTTP_SERVER, logs.path()).with_keep(true)).await?;
    let root = fx.root_pid().ok_or("no root")?;
    let report = fx.stop().await?;
    let still = alive(root);
    // Clean up by hand before asserting: the fixture no longer owns it.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(i32::try_from(root)?),
        nix::sys::signal::SIGKILL,
    );
    assert_eq!(report.outcome, RootOutcome::KeptRunning);
    assert!(still, "kept server {root} was stopped");
    Ok(())
}
