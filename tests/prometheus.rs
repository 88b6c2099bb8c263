//! The fleet tier through a real Prometheus (the system's `prometheus` package): it scrapes two
//! reference servers every 250 ms while they answer requests, one with a leak planted in its
//! launcher process, one clean; `sglang-memtest judge` then reads them through the HTTP API and
//! must call the leak and pass the clean server. `monitor --base-url --prometheus` does the same
//! with the harness driving the load. No mock: real processes, real scrapes, real PromQL.
//!
//! Without Prometheus the tests say how to install it and pass — except under CI (`CI=true`),
//! where they fail: `.ci/run` installs it.

mod common;

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use sglang_memtest::fixture::{ServerFixture, ServerSpec};
use sglang_memtest::fleet::{PrometheusServer, server::prometheus_binary};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SCRAPE: Duration = Duration::from_millis(250);
/// 256 KiB per request: 256× the default budget of 1 GiB per million requests.
const LEAK: &str = "--leak-bytes-per-request=262144";

/// Whether Prometheus is installed; under CI its absence fails the test.
fn have_prometheus() -> bool {
    if prometheus_binary().is_some() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "CI=true but no Prometheus was found: install it (`apt-get install -y prometheus`, as .ci/run does) or set MEMTEST_PROMETHEUS"
    );
    eprintln!(
        "skipped: no Prometheus on PATH (apt-get install -y prometheus, or set MEMTEST_PROMETHEUS)"
    );
    false
}

async fn reference(
    name: &str,
    knobs: &[&str],
    logs: &std::path::Path,
) -> Result<ServerFixture, Box<dyn std::error::Error>> {
    let mut args = vec![
        "serve-reference",
        "--port",
        "{port}",
        "--enable-metrics",
        "--children=1",
    ];
    args.extend_from_slice(knobs);
    let spec = ServerSpec::command(common::exe(), args)
        .with_name(name)
        .with_log_dir(logs)
        .with_startup_timeout(Duration::from_secs(30));
    Ok(ServerFixture::start(spec).await?)
}

/// `count` text requests to `base`, about 20 a second.
async fn load(base: String, count: usize) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    for i in 0..count {
        let body = format!(r#"{{"text":"request {i}","sampling_params":{{"max_new_tokens":4}}}}"#);
        let r = client
            .post(format!("{base}/generate"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("{base}: HTTP {}", r.status()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Run the CLI (on a blocking thread: the test's runtime keeps serving nothing it needs).
async fn cli(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::exe())
            .args(&args)
            .output()
            .expect("the CLI runs")
    })
    .await
    .expect("the CLI thread")
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// The rows of a fleet report whose `instance` label is `instance`: `(role, outcome)`.
fn rows_of(report: &Value, instance: &str) -> Vec<(String, String)> {
    report["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["labels"]["instance"] == instance)
        .map(|r| {
            (
                r["labels"]["role"].as_str().unwrap_or("?").to_owned(),
                r["outcome"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_catches_the_planted_leak_and_passes_the_clean_server() -> TestResult {
    if !have_prometheus() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let leak = reference("leaky", &[LEAK], dir.path()).await?;
    let clean = reference("clean", &[], dir.path()).await?;
    let (leak_at, clean_at) = (host_port(leak.base_url()), host_port(clean.base_url()));
    let prom = PrometheusServer::start(
        &[leak_at.clone(), clean_at.clone()],
        SCRAPE,
        Duration::from_secs(60),
    )
    .await?;
    let (a, b) = tokio::join!(
        load(leak.base_url().to_owned(), 400),
        load(clean.base_url().to_owned(), 400)
    );
    a?;
    b?;
    // Two more scrapes, so that the last requests are in Prometheus.
    tokio::time::sleep(4 * SCRAPE).await;
    let out = dir.path().join("fleet");
    let judge = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "judge",
            "--prometheus",
            prom.base_url(),
            "--since",
            "3m",
            "--step",
            "250ms",
            "--out-dir",
            out.to_str().unwrap_or("."),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        cli(args)
    };
    let run = judge(&["--preset", "process", "--json"]).await;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let report: Value = serde_json::from_str(&stdout).map_err(|e| {
        format!(
            "{e}: stdout {stdout}\nstderr {stderr}\nprometheus log {:?}",
            prom.log_tail(20)
        )
    })?;
    let leaky = rows_of(&report, &leak_at);
    let clean_rows = rows_of(&report, &clean_at);
    let context = format!("{leaky:?} {clean_rows:?}\n{stderr}\n{stdout}");
    assert!(
        leaky.contains(&("tokenizer_manager".into(), "leak".into())),
        "the leaking launcher is not called a leak: {context}"
    );
    assert!(
        leaky.contains(&("scheduler".into(), "pass".into())),
        "the leaky server's clean child: {context}"
    );
    assert_eq!(clean_rows.len(), 2, "{context}");
    assert!(clean_rows.iter().all(|(_, o)| o == "pass"), "{context}");
    assert_eq!(
        report["rows"][0]["outcome"], "leak",
        "worst first: {context}"
    );
    assert_eq!(report["kind"], "fleet");
    assert_eq!(run.status.code(), Some(3), "a leak exits 3: {context}");
    // The request counter matched: growth per request was judged.
    assert!(
        report["rows"][0]["requests"]
            .as_u64()
            .is_some_and(|n| n >= 300),
        "{context}"
    );
    for f in ["fleet.json", "fleet.png", "fleet.svg", "fleet.html"] {
        assert!(out.join(f).is_file(), "{f} not written: {context}");
    }

    // Only the clean server: a pass, exit 0.
    let only_clean = format!(r#"instance="{clean_at}""#);
    let run = judge(&["--preset", "process", "--selector", &only_clean]).await;
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    // Bad input through the real API: Prometheus' own error text, and an empty result.
    let run = judge(&["--query", "rate(process_resident_memory_bytes[1m]))"]).await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Prometheus rejected the query") && stderr.contains("parse error"),
        "{stderr}"
    );
    let run = judge(&["--query", "no_such_metric_memtest"]).await;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("matched nothing"), "{stderr}");

    // `monitor --base-url --prometheus`: the harness drives the load, Prometheus has the memory.
    let monitor = |base: String, instance: String, name: &str| {
        let query = format!(
            r#"process_resident_memory_bytes{{instance="{instance}",role="tokenizer_manager"}}"#
        );
        cli(vec![
            "monitor".into(),
            "--base-url".into(),
            base,
            "--prometheus".into(),
            prom.base_url().to_owned(),
            "--query".into(),
            query,
            "--step".into(),
            "250ms".into(),
            "--num-requests".into(),
            "200".into(),
            "--warmup-requests".into(),
            "5".into(),
            "--request-interval".into(),
            "0.05".into(),
            "--no-plot".into(),
            "--out-dir".into(),
            dir.path().join(name).display().to_string(),
        ])
    };
    let (leak_run, clean_run) = tokio::join!(
        monitor(leak.base_url().to_owned(), leak_at.clone(), "monitor-leak"),
        monitor(
            clean.base_url().to_owned(),
            clean_at.clone(),
            "monitor-clean"
        )
    );
    let show = |o: &Output| {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert_eq!(leak_run.status.code(), Some(3), "{}", show(&leak_run));
    assert_eq!(clean_run.status.code(), Some(0), "{}", show(&clean_run));
    // Nothing of the remote server is visible here: said once, not as an error.
    let out = show(&leak_run);
    assert!(out.contains("judged from Prometheus"), "{out}");
    assert!(!out.contains("nothing could be judged"), "{out}");

    prom.stop().await?;
    leak.stop().await?;
    clean.stop().await?;
    Ok(())
}

#[test]
fn judge_says_what_to_do_when_prometheus_is_not_there() {
    // Port 9 (discard) on loopback: nothing listens there in a test machine.
    let out = std::process::Command::new(common::exe())
        .args([
            "judge",
            "--prometheus",
            "http://127.0.0.1:9",
            "--preset",
            "process",
            "--no-plot",
        ])
        .args(["--out-dir", env!("CARGO_TARGET_TMPDIR")])
        .output()
        .expect("the CLI runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot reach Prometheus at http://127.0.0.1:9"),
        "{stderr}"
    );
    let out = std::process::Command::new(common::exe())
        .args([
            "judge",
            "--prometheus",
            "prometheus:9090",
            "--preset",
            "process",
        ])
        .args(["--out-dir", env!("CARGO_TARGET_TMPDIR")])
        .output()
        .expect("the CLI runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("write it as http://HOST:PORT"), "{stderr}");
    let out = std::process::Command::new(common::exe())
        .args(["judge", "--prometheus", "http://127.0.0.1:9"])
        .args(["--out-dir", env!("CARGO_TARGET_TMPDIR")])
        .output()
        .expect("the CLI runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pass --preset"), "{stderr}");
}
