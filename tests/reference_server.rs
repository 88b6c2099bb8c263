//! Integration tests of `sglang-memtest serve-reference`: the real binary, real HTTP, real
//! memory read from `/proc`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// A running reference server; Drop kills its whole process group, whatever the test did.
struct Server {
    child: Child,
    url: String,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    fn start(args: &[&str]) -> Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sglang-memtest"))
            .arg("serve-reference")
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("spawn the reference server")?;
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let (err_tx, err_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = line_tx.send(url.to_owned());
                }
            }
        });
        let mut server = Self {
            child,
            url: String::new(),
            stderr: err_rx,
        };
        match line_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(url) => server.url = url,
            Err(_) => bail!("no `listening on` line; stderr: {}", server.stderr_text()),
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Waits for the process to exit (or kills it after `timeout`).
    fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("pid {} still running after {timeout:?}", self.pid());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// stderr so far (complete once the process exited).
    fn stderr_text(&self) -> String {
        self.stderr
            .recv_timeout(Duration::from_secs(2))
            .unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kb * 1024)
}

fn children_of(pid: u32) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?;
    Ok(text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn generate(server: &Server, body: &Value) -> Result<reqwest::Response> {
    Ok(client()
        .post(server.url("/generate"))
        .json(body)
        .send()
        .await?)
}

fn text_request() -> Value {
    json!({"text": "hello world", "sampling_params": {"max_new_tokens": 4, "temperature": 0}})
}

async fn growth_over(server: &Server, pid: u32, requests: usize) -> Result<i64> {
    // One request first so that one-off allocations (runtime, first connection) are excluded.
    assert!(
        generate(server, &text_request())
            .await?
            .status()
            .is_success()
    );
    let before = rss(pid)?;
    for _ in 0..requests {
        let r = generate(server, &text_request()).await?;
        assert_eq!(r.status(), 200);
    }
    Ok(rss(pid)? as i64 - before as i64)
}

fn png_data_url(seed: u8) -> String {
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([seed, x as u8, y as u8]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .expect("encode png");
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes.into_inner());
    format!("data:image/png;base64,{b64}")
}

#[tokio::test]
async fn endpoints_answer_with_sglang_shapes() -> Result<()> {
    let server = Server::start(&["--enable-metrics"])?;
    let c = client();
    assert_eq!(c.get(server.url("/health")).send().await?.status(), 200);
    assert_eq!(
        c.get(server.url("/health_generate")).send().await?.status(),
        200
    );
    for path in ["/get_model_info", "/model_info"] {
        let info: Value = c.get(server.url(path)).send().await?.json().await?;
        assert_eq!(info["model_path"], "reference");
        assert_eq!(info["is_generation"], true);
    }
    let out: Value = generate(&server, &text_request()).await?.json().await?;
    assert_eq!(out["text"].as_str().map(|t| t.split(' ').count()), Some(4));
    assert_eq!(out["meta_info"]["completion_tokens"], 4);
    assert_eq!(out["meta_info"]["finish_reason"]["type"], "length");
    let batch: Value = generate(&server, &json!({"text": ["a", "b c"]}))
        .await?
        .json()
        .await?;
    assert_eq!(batch.as_array().map(Vec::len), Some(2));
    let chat: Value = c
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"model": "reference", "max_tokens": 3, "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": png_data_url(1)}}]}]}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["choices"][0]["message"]["role"], "assistant");
    assert_eq!(chat["usage"]["completion_tokens"], 3);
    let models: Value = c.get(server.url("/v1/models")).send().await?.json().await?;
    assert_eq!(models["data"][0]["id"], "reference");
    for path in ["/get_server_info", "/server_info"] {
        let info: Value = c.get(server.url(path)).send().await?.json().await?;
        assert!(
            info["version"]
                .as_str()
                .is_some_and(|v| v.starts_with("reference-"))
        );
        assert_eq!(
            info["internal_states"][0]["memory_usage"]["token_capacity"],
            4096
        );
        assert_eq!(info["enable_metrics"], true);
        assert_eq!(info["reference"]["requests"], 3);
        assert_eq!(info["reference"]["images_processed"], 1);
    }
    let metrics = c.get(server.url("/metrics")).send().await?.text().await?;
    assert!(
        metrics.contains("sglang:num_requests_total{model_name=\"reference\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("sglang:max_total_num_tokens"));
    let bad = c
        .post(server.url("/generate"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await?.contains("invalid JSON"));
    Ok(())
}

#[tokio::test]
async fn metrics_are_404_without_the_flag() -> Result<()> {
    let server = Server::start(&[])?;
    assert_eq!(
        client().get(server.url("/metrics")).send().await?.status(),
        404
    );
    Ok(())
}

#[tokio::test]
async fn planted_leak_grows_rss_and_clean_server_does_not() -> Result<()> {
    let leaky = Server::start(&["--leak-bytes-per-request", "4194304"])?;
    let clean = Server::start(&[])?;
    let grown = growth_over(&leaky, leaky.pid(), 10).await?;
    assert!(
        grown >= 35 * MIB as i64,
        "leaky server grew only {grown} bytes"
    );
    let flat = growth_over(&clean, clean.pid(), 10).await?;
    assert!(flat < 8 * MIB as i64, "clean server grew {flat} bytes");
    Ok(())
}

#[tokio::test]
async fn leak_in_child_grows_the_scheduler_not_the_parent() -> Result<()> {
    let server = Server::start(&[
        "--children",
        "2",
        "--leak-in-child",
        "--leak-bytes-per-request",
        "4194304",
    ])?;
    let kids = children_of(server.pid())?;
    assert_eq!(kids.len(), 2, "children: {kids:?}");
    let titles: Vec<String> = kids.iter().map(|&p| cmdline(p)).collect();
    let tp0 = kids
        .iter()
        .zip(&titles)
        .find(|(_, t)| t.split_whitespace().next() == Some("sglang::scheduler"))
        .map(|(&p, _)| p)
        .with_context(|| format!("no sglang::scheduler among {titles:?}"))?;
    assert!(
        titles.iter().any(|t| t.starts_with("sglang::detokenizer")),
        "{titles:?}"
    );
    let comm = std::fs::read_to_string(format!("/proc/{tp0}/comm"))?;
    assert_eq!(comm.trim_end(), "sglang::schedul");
    assert!(
        generate(&server, &text_request())
            .await?
            .status()
            .is_success()
    );
    let (child_before, parent_before) = (rss(tp0)?, rss(server.pid())?);
    for _ in 0..10 {
        assert_eq!(generate(&server, &text_request()).await?.status(), 200);
    }
    let child_growth = rss(tp0)? as i64 - child_before as i64;
    let parent_growth = rss(server.pid())? as i64 - parent_before as i64;
    assert!(
        child_growth >= 35 * MIB as i64,
        "child grew only {child_growth}"
    );
    assert!(
        parent_growth < 8 * MIB as i64,
        "parent grew {parent_growth}"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_server_and_children_cleanly() -> Result<()> {
    let mut server = Server::start(&["--children", "2"])?;
    let kids = children_of(server.pid())?;
    nix::sys::signal::kill(Pid::from_raw(server.pid() as i32), Signal::SIGTERM)?;
    let status = server.wait_exit(Duration::from_secs(5))?;
    assert!(
        status.success(),
        "exit {status:?}: {}",
        server.stderr_text()
    );
    for kid in kids {
        assert!(
            !std::path::Path::new(&format!("/proc/{kid}")).exists() || cmdline(kid).is_empty(),
            "child {kid} survived"
        );
    }
    Ok(())
}

#[tokio::test]
async fn bounded_cache_plateaus_and_flushes() -> Result<()> {
    let server = Server::start(&[
        "--cache-bytes-per-request",
        "2097152",
        "--cache-cap-bytes",
        "8388608",
    ])?;
    // Fill the cache (4 entries), then 10 more requests must not grow it.
    for _ in 0..5 {
        assert_eq!(generate(&server, &text_request()).await?.status(), 200);
    }
    let full = rss(server.pid())?;
    for _ in 0..10 {
        assert_eq!(generate(&server, &text_request()).await?.status(), 200);
    }
    let later = rss(server.pid())? as i64;
    assert!(
        later - (full as i64) < 4 * MIB as i64,
        "cache grew {}",
        later - full as i64
    );
    let info: Value = client()
        .get(server.url("/server_info"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(info["reference"]["cache_bytes"], 8 * MIB);
    for flush in [
        client().get(server.url("/flush_cache")),
        client().post(server.url("/flush_cache")),
    ] {
        let r = flush.send().await?;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await?, "Cache flushed.");
    }
    let info: Value = client()
        .get(server.url("/server_info"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(info["reference"]["cache_bytes"], 0);
    assert!(
        rss(server.pid())? < full - 4 * MIB,
        "flush gave no memory back"
    );
    Ok(())
}

#[tokio::test]
async fn crash_after_exits_at_the_next_request() -> Result<()> {
    let mut server = Server::start(&["--crash-after", "2"])?;
    for _ in 0..2 {
        assert_eq!(generate(&server, &text_request()).await?.status(), 200);
    }
    assert!(
        generate(&server, &text_request()).await.is_err(),
        "3rd request answered"
    );
    let status = server.wait_exit(Duration::from_secs(5))?;
    assert_eq!(status.code(), Some(1));
    assert!(server.stderr_text().contains("crash"));
    Ok(())
}

#[tokio::test]
async fn error_rate_one_answers_500() -> Result<()> {
    let server = Server::start(&["--error-rate", "1.0"])?;
    for _ in 0..3 {
        let r = generate(&server, &text_request()).await?;
        assert_eq!(r.status(), 500);
        let body: Value = r.json().await?;
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("error-rate"))
        );
    }
    Ok(())
}

#[tokio::test]
async fn shm_leak_creates_files_and_segment_is_sparse() -> Result<()> {
    let server = Server::start(&[
        "--shm-leak-bytes-per-request",
        "65536",
        "--shm-segment-bytes",
        "16777216",
    ])?;
    let pid = server.pid();
    let leak_files = || -> Vec<std::path::PathBuf> {
        let prefix = format!("sgl_shm_reference_{pid}_");
        std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    struct Cleanup(Vec<std::path::PathBuf>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let segment = std::path::PathBuf::from(format!("/dev/shm/psm_reference_{pid}"));
    let mut cleanup = Cleanup(vec![segment.clone()]);
    for _ in 0..3 {
        let r = generate(&server, &text_request()).await;
        cleanup.0.extend(leak_files());
        assert_eq!(r?.status(), 200);
    }
    let files = leak_files();
    cleanup.0.extend(files.iter().cloned());
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert_eq!(std::fs::metadata(f)?.len(), 65536);
    }
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&segment)?;
    assert_eq!(meta.len(), 16 * MIB);
    assert!(meta.blocks() * 512 < MIB, "segment not sparse");
    Ok(())
}

#[tokio::test]
async fn bad_images_are_400() -> Result<()> {
    let server = Server::start(&["--leak-bytes-per-image", "1024"])?;
    let corrupt = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(b"not a png at all")
    );
    for image in [corrupt.as_str(), "https://example.com/cat.png", "%%%"] {
        let r = generate(&server, &json!({"text": "x", "image_data": image})).await?;
        assert_eq!(r.status(), 400, "{image}");
        assert!(r.text().await?.contains("image 0"));
    }
    let ok = generate(
        &server,
        &json!({"text": "x", "image_data": [png_data_url(1), png_data_url(2)]}),
    )
    .await?;
    assert_eq!(ok.status(), 200);
    Ok(())
}

#[tokio::test]
async fn mm_cache_hits_skip_the_image_leak() -> Result<()> {
    let server = Server::start(&[
        "--leak-bytes-per-image",
        "1048576",
        "--mm-cache-cap-bytes",
        "1048576",
    ])?;
    let same = png_data_url(7);
    for _ in 0..4 {
        let r = generate(&server, &json!({"text": "x", "image_data": same})).await?;
        assert_eq!(r.status(), 200);
    }
    let info: Value = client()
        .get(server.url("/server_info"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(info["reference"]["images_processed"], 1);
    assert_eq!(info["reference"]["mm_cache_hits"], 3);
    assert_eq!(info["reference"]["leaked_bytes"], MIB);
    Ok(())
}

#[test]
fn usage_errors_exit_nonzero_with_a_message() -> Result<()> {
    let mut cases: Vec<(&[&str], &str)> = vec![
        (&["--leak-in-child"], "--children"),
        (&["--error-rate", "2"], "--error-rate"),
        (&["--cache-bytes-per-request", "10"], "--cache-cap-bytes"),
    ];
    if cfg!(not(feature = "cuda")) {
        cases.push((&["--gpu-leak-bytes-per-request", "1"], "--features cuda"));
        cases.push((&["--gpu-alloc-bytes-per-request", "1"], "no GPU support"));
    } else if !std::path::Path::new("/proc/driver/nvidia").exists() {
        // A cuda build on a machine without the NVIDIA driver must refuse, not panic.
        cases.push((&["--gpu-leak-bytes-per-request", "1"], "libcuda.so.1"));
    }
    for (args, needle) in &cases {
        let out = Command::new(env!("CARGO_BIN_EXE_sglang-memtest"))
            .arg("serve-reference")
            .args(["--port", "0"])
            .args(args.iter())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"));
    }
    Ok(())
}
