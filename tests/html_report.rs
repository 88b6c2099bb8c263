//! The HTML report in a real browser: headless Chromium (the system's `chromium` package) loads
//! the page a run wrote, and the test checks that it renders (a screenshot that is not blank),
//! logs nothing to the console, loads nothing from the network, and shows the verdict, the
//! processes by role, the plot and the suite's links.
//!
//! Without Chromium the test says how to install it and passes — except under CI (`CI=true`),
//! where a missing browser is a failure: `.ci/run` installs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{quick, run};
use sglang_memtest::load::Workload;
use sglang_memtest::report::{Report, RunOutcome, html};

/// The browser: `MEMTEST_CHROMIUM`, else the first of the usual names on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MEMTEST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

fn browser_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "CI=true but no Chromium was found: install it (`apt-get install -y chromium`, as .ci/run does) or set MEMTEST_CHROMIUM"
        );
        eprintln!(
            "skipped: no Chromium on PATH (apt-get install -y chromium, or set MEMTEST_CHROMIUM)"
        );
    }
    found
}

/// What the browser made of a page.
struct Loaded {
    /// The DOM after loading (`--dump-dom`).
    dom: String,
    /// The page's console messages (Chromium logs them as `INFO:CONSOLE…`).
    console: Vec<String>,
    /// A screenshot of the top of the page.
    screenshot: PathBuf,
}

/// Runs Chromium headless on `args` + `url`, killed after a minute; its stdout and stderr.
/// They go to files, not pipes: a page's DOM is larger than a pipe holds, and a browser blocked
/// on a full pipe never exits.
fn chromium_run(exe: &Path, profile: &Path, args: &[&str], url: &str) -> (String, String) {
    std::fs::create_dir_all(profile).expect("a profile dir");
    let (out_path, err_path) = (profile.join("stdout.txt"), profile.join("stderr.txt"));
    let file = |p: &Path| std::fs::File::create(p).expect("an output file");
    let mut child = Command::new(exe)
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            // Nothing may come from the network: every host name fails to resolve.
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("data").display()
        ))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(file(&out_path))
        .stderr(file(&err_path))
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    assert!(status.success(), "chromium failed on {url}: {stderr}");
    (stdout, stderr)
}

fn load(exe: &Path, page: &Path) -> Loaded {
    let dir = tempfile::tempdir().expect("a temp dir");
    let url = format!(
        "file://{}",
        page.canonicalize().expect("the page exists").display()
    );
    let (dom, stderr) = chromium_run(exe, &dir.path().join("profile"), &["--dump-dom"], &url);
    let screenshot = page.with_extension("screenshot.png");
    let shot = format!("--screenshot={}", screenshot.display());
    chromium_run(
        exe,
        &dir.path().join("profile2"),
        &[&shot, "--window-size=1400,1600"],
        &url,
    );
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    Loaded {
        dom,
        console,
        screenshot,
    }
}

/// Share of pixels that are not (near) white.
fn ink(png_path: &Path) -> f64 {
    let file = std::io::BufReader::new(std::fs::File::open(png_path).expect("the screenshot"));
    let mut reader = png::Decoder::new(file).read_info().expect("a png");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let px = buf[..info.buffer_size()].chunks(channels);
    let total = (info.width * info.height) as f64;
    px.filter(|p| p.iter().take(3).any(|&c| c < 235)).count() as f64 / total
}

/// A page made to fail proves the checks can fail: its console error is seen.
#[test]
fn the_console_check_catches_a_page_that_throws() {
    let Some(exe) = browser_or_skip() else { return };
    let dir = tempfile::tempdir().expect("a temp dir");
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><p>x</p><script>throw new Error('boom')</script></body></html>",
    )
    .expect("write");
    let loaded = load(&exe, &page);
    assert!(
        loaded
            .console
            .iter()
            .any(|l| l.contains("Uncaught Error: boom")),
        "the thrown error was not seen: {:?}",
        loaded.console
    );
}

#[test]
fn a_runs_page_and_its_suite_page_render_in_chromium_and_show_the_verdict() {
    let Some(exe) = browser_or_skip() else { return };
    let leak = run(&quick(
        "html_leak",
        &[
            "--children=2",
            "--leak-in-child=0",
            "--leak-bytes-per-request=1048576",
        ],
        Workload::Text,
    )
    .plots(true));
    assert_eq!(leak.outcome, RunOutcome::Leak, "{}", leak.summary());
    let page = leak
        .files
        .html
        .clone()
        .expect("the run wrote its HTML page");
    assert_eq!(
        page,
        leak.files.json.as_ref().unwrap().with_extension("html")
    );
    let text = std::fs::read_to_string(&page).expect("the page");
    // Self-contained: nothing fetched, nothing scripted.
    for remote in [
        "src=\"http",
        "href=\"http",
        "url(http",
        "<script",
        "@import",
    ] {
        assert!(!text.contains(remote), "the page loads or runs {remote}…");
    }

    let loaded = load(&exe, &page);
    assert!(
        loaded.console.is_empty(),
        "console messages: {:?}",
        loaded.console
    );
    let dom = &loaded.dom;
    assert!(
        dom.contains("id=\"verdict\">Leak: host.rss@scheduler grows +1.0"),
        "the verdict is not shown: {:.3000}",
        dom
    );
    assert!(dom.contains("<svg"), "no plot");
    assert!(
        dom.contains("host.rss@scheduler (pid "),
        "the plot does not name the process by role"
    );
    assert!(dom.contains("<h2>Processes</h2>") && dom.contains("<td>scheduler</td>"));
    assert!(dom.contains("<h2>Requests</h2>") && dom.contains("<h2>Server log"));
    assert!(dom.contains("<h2>Caches and settings</h2>"));
    let shown = ink(&loaded.screenshot);
    assert!(
        shown > 0.02,
        "the page looks blank: {:.1} % ink",
        shown * 100.0
    );

    // A suite of two: the index links both, each page links the other.
    let clean = run(&quick("html_clean", &[], Workload::Text).out_dir(page.parent().unwrap()));
    assert_eq!(clean.outcome, RunOutcome::Pass, "{}", clean.summary());
    let reports: Vec<Report> = vec![clean, leak];
    let index = html::write_suite(page.parent().unwrap(), "two runs", &reports).expect("suite");
    let loaded = load(&exe, &index);
    assert!(
        loaded.console.is_empty(),
        "console messages: {:?}",
        loaded.console
    );
    assert!(
        loaded
            .dom
            .contains("2 scenarios: html_clean pass, html_leak leak"),
        "{}",
        loaded.dom
    );
    assert!(
        loaded.dom.contains("href=\"html_leak.html\"")
            && loaded.dom.contains("href=\"html_clean.html\"")
    );
    let again = load(&exe, &page);
    assert!(
        again
            .dom
            .contains("href=\"html_clean.html\">html_clean · pass</a>"),
        "no link to the other scenario"
    );
    assert!(again.dom.contains("href=\"index.html\""));
}
