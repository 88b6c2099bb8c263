//! `sglang-memtest`: catch memory leaks in SGLang (or any inference server) from the command
//! line. Thin over the library: every subcommand builds a `Scenario` or reads reports.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use sglang_memtest::analysis::calibrate::{self, CalibrationConfig};
use sglang_memtest::fixture::ServerSpec;
use sglang_memtest::load::{Api, ImageConfig, ImageFormat, ImageMode, ImageSource, Workload};
use sglang_memtest::report::compare::compare;
use sglang_memtest::report::{ErrorKind, Report, RunOutcome};
use sglang_memtest::scenario::{Scenario, Target, parse_bytes, presets};
use sglang_memtest::tracker::GpuMode;
use sglang_memtest::{fixture, load, reference};

/// Exit status: within thresholds.
const EXIT_PASS: u8 = 0;
/// Exit status: any other failure (the server died, requests failed).
const EXIT_FAILURE: u8 = 1;
/// Exit status: usage or setup error (bad flag, SGLang missing, server never ready).
const EXIT_SETUP: u8 = 2;
/// Exit status: leak verdict.
const EXIT_LEAK: u8 = 3;
/// Exit status: inconclusive (more requests needed to decide).
const EXIT_INCONCLUSIVE: u8 = 4;

#[derive(Parser)]
#[command(
    name = "sglang-memtest",
    version,
    about = "Catch memory leaks in LLM/VLM inference servers before users hit OOM"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario against a server and judge its memory growth.
    Monitor(MonitorArgs),
    /// Run the three scenarios (text, vlm-text, vlm-image) one after the other.
    Suite(SuiteArgs),
    /// Compare two JSON reports metric by metric (exit 3 when the second regressed).
    Compare {
        /// The baseline report.
        before: PathBuf,
        /// The new report.
        after: PathBuf,
    },
    /// No GPU, no Python: a clean and a leaking reference server, side by side.
    Demo {
        /// Where reports and plots go.
        #[arg(long, default_value = "target/memtest/demo")]
        out_dir: PathBuf,
        /// Measured requests per run.
        #[arg(long, default_value_t = 100)]
        num_requests: u64,
    },
    /// Serve the reference server (planted leaks on demand).
    ServeReference(reference::ReferenceArgs),
    /// Measure the verdict rules' false-positive rate and power on synthetic series.
    Calibrate {
        /// Markdown file whose Results section (between the `calibrate:begin`/`end` markers) is
        /// rewritten; a missing file is created.
        #[arg(long, default_value = "docs/calibration.md")]
        out: PathBuf,
        /// Runs per shape (clean and leaking).
        #[arg(long, default_value_t = 1000)]
        runs: usize,
        /// Seed of every draw.
        #[arg(long, default_value_t = 20_261_127)]
        seed: u64,
        /// Also run this many scenarios per shape against the reference server (slow: about
        /// 1.5 s each; 200 for the published table, planted leaks get a quarter of that).
        #[arg(long, default_value_t = 0)]
        reference_runs: usize,
    },
    /// Internal: a child process of the reference server.
    #[command(hide = true)]
    ReferenceChild(reference::ChildArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TestType {
    /// Text requests.
    Text,
    /// Text requests to a VLM (no image processing).
    VlmText,
    /// Image requests to a VLM.
    VlmImage,
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// Run against a freshly launched reference server (the default when no other target is given).
    #[arg(long)]
    reference: bool,
    /// A reference-server knob, e.g. `--reference-arg=--leak-bytes-per-request=1048576` (repeatable).
    #[arg(long = "reference-arg", allow_hyphen_values = true, value_name = "ARG")]
    reference_args: Vec<String>,
    /// Launch SGLang with this model path.
    #[arg(long)]
    model: Option<String>,
    /// Python interpreter that has SGLang.
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// `--mem-fraction-static` for SGLang.
    #[arg(long, default_value_t = 0.7)]
    mem_fraction: f64,
    /// Where SGLang runs the model: `gpu`, or `cpu` (SGLang's CPU engine: torch-native
    /// attention, a bounded KV pool, GPU metrics off).
    #[arg(long, default_value = "gpu", value_parser = parse_device)]
    device: fixture::Device,
    /// SGLang's `--max-total-tokens` (KV pool size; default 65536 on CPU, SGLang's choice on GPU).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_total_tokens: Option<u64>,
    /// Extra SGLang argument (repeatable), e.g. `--server-arg=--tp-size=2`.
    #[arg(long = "server-arg", allow_hyphen_values = true, value_name = "ARG")]
    server_args: Vec<String>,
    /// Environment variable for the launched server, `KEY=VALUE` (repeatable), e.g.
    /// `--server-env SGLANG_VLM_CACHE_SIZE_MB=100` or `--server-env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4`.
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    server_env: Vec<(String, String)>,
    /// Launch any command; `{port}` is replaced by a free port. Quotes group words; no shell.
    #[arg(long)]
    server_cmd: Option<String>,
    /// Health path polled until the server is ready.
    #[arg(long, default_value = "/health")]
    health_path: String,
    /// Attach to a running server instead of launching one.
    #[arg(long)]
    base_url: Option<String>,
    /// With --base-url: the server's root PID, so its process tree is measured too.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Seconds to wait for the server to become ready.
    #[arg(long, default_value_t = 600.0)]
    startup_timeout: f64,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// Measured requests (default: 100; 50 for vlm-image).
    #[arg(long)]
    num_requests: Option<u64>,
    /// Seconds between requests (default: 0.1; 0.2 for vlm-image).
    #[arg(long)]
    request_interval: Option<f64>,
    /// Requests sent first and not measured.
    #[arg(long, default_value_t = 5)]
    warmup_requests: u64,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: u32,
    /// API used by the requests.
    #[arg(long, value_enum, default_value_t = Api::OpenAi)]
    api: Api,
    /// Share of failed requests above which the run is an error.
    #[arg(long, default_value_t = 0.01)]
    max_error_rate: f64,
    /// Image size for vlm-image, WIDTHxHEIGHT.
    #[arg(long, default_value = "448x448")]
    image_size: String,
    /// Images per request for vlm-image.
    #[arg(long, default_value_t = 1)]
    images_per_request: u32,
    /// `unique` (default: repeated images hit caches and hide leaks) or `repeated`.
    #[arg(long, default_value = "unique")]
    image_mode: String,
    /// Image format of generated images: png or jpeg.
    #[arg(long, default_value = "png")]
    image_format: String,
    /// Image placeholder put before the prompt on `--api native` image requests (the native
    /// route does not apply the chat template). Default: Qwen2-VL's.
    #[arg(long)]
    image_token: Option<String>,
    /// Send the PNG/JPEG images of this folder instead of generated ones.
    #[arg(long)]
    image_dir: Option<PathBuf>,
    /// GPU metrics: auto, off, or required (default: required for SGLang, auto otherwise).
    #[arg(long)]
    gpu: Option<String>,
    /// Leak threshold for metrics matching a pattern, e.g. `--max-slope host.rss@tree=64KiB` (repeatable).
    #[arg(long = "max-slope", value_name = "PATTERN=SIZE")]
    max_slope: Vec<String>,
    /// Seed of the statistics' random draws.
    #[arg(long)]
    seed: Option<u64>,
    /// Sampling interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    sample_interval_ms: u64,
    /// Where the JSON report, plots and server log go.
    #[arg(long, default_value = "target/memtest")]
    out_dir: PathBuf,
    /// Skip the PNG/SVG plots.
    #[arg(long)]
    no_plot: bool,
    /// Print the JSON report to stdout instead of the summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MonitorArgs {
    /// What to send.
    #[arg(long, value_enum, default_value_t = TestType::Text)]
    test_type: TestType,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct SuiteArgs {
    /// VLM model for the two VLM scenarios when --model is the text model.
    #[arg(long)]
    vlm_model: Option<String>,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    run: RunArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEMTEST_LOG")
        .unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Cmd::ReferenceChild(args) => reference::run_child(args)
            .map(|()| EXIT_PASS)
            .map_err(anyhow::Error::from),
        cmd => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(run(cmd)),
            Err(e) => Err(anyhow::Error::from(e).context("failed to start the async runtime")),
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

async fn run(cmd: Cmd) -> anyhow::Result<u8> {
    match cmd {
        Cmd::ServeReference(args) => {
            reference::serve(args).await?;
            Ok(EXIT_PASS)
        }
        Cmd::Monitor(args) => {
            let scenario = build(args.test_type, &args.target, &args.run, None)?;
            let report = run_interruptible(&scenario).await;
            print_report(&report, args.run.json)?;
            Ok(exit_code(&report))
        }
        Cmd::Suite(args) => suite(args).await,
        Cmd::Compare { before, after } => {
            let a = Report::read_json(&before)?;
            let b = Report::read_json(&after)?;
            for (which, r, path) in [("baseline", &a, &before), ("new", &b, &after)] {
                if r.verdict.is_none() {
                    let why = r
                        .error
                        .as_ref()
                        .map_or("no verdict", |e| e.message.as_str());
                    eprintln!(
                        "error: the {which} report {} has no verdict to compare ({why})",
                        path.display()
                    );
                    return Ok(EXIT_FAILURE);
                }
            }
            let cmp = compare(&a, &b);
            print!("{}", cmp.to_table());
            Ok(if cmp.regressed() {
                EXIT_LEAK
            } else {
                EXIT_PASS
            })
        }
        Cmd::Demo {
            out_dir,
            num_requests,
        } => demo(out_dir, num_requests).await,
        Cmd::Calibrate {
            out,
            runs,
            seed,
            reference_runs,
        } => {
            let config = CalibrationConfig {
                runs,
                seed,
                ..CalibrationConfig::default()
            };
            eprintln!(
                "calibrating: {runs} runs per shape, {} requests each (seed {seed}) …",
                config.requests
            );
            let text = calibrate::run(&config).to_markdown();
            print!("{text}");
            write_calibration(&out, "calibrate", &text)?;
            if reference_runs > 0 {
                let text = calibrate_reference(reference_runs).await?;
                print!("{text}");
                write_calibration(&out, "calibrate-reference", &text)?;
            }
            eprintln!("results written into {}", out.display());
            Ok(EXIT_PASS)
        }
        Cmd::ReferenceChild(_) => unreachable!("handled before the runtime starts"),
    }
}

/// Run a scenario; the first Ctrl-C ends the requests early (the report is still written), a
/// second one kills every server and exits.
async fn run_interruptible(scenario: &Scenario) -> Report {
    let watcher = tokio::spawn(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        for round in 0..2 {
            let term_recv = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = term_recv => {}
            }
            if round == 0 {
                eprintln!(
                    "interrupted: stopping the requests and writing the report (again to kill the server now)"
                );
                load::interrupt();
            } else {
                fixture::kill_all_registered();
                std::process::exit(130);
            }
        }
    });
    let report = scenario.run().await;
    watcher.abort();
    report
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.summary());
    }
    Ok(())
}

fn exit_code(report: &Report) -> u8 {
    if report.files.json.is_none() && report.outcome != RunOutcome::Error {
        // The report is what a run leaves behind: without it the run counts as failed.
        return EXIT_FAILURE;
    }
    match report.outcome {
        RunOutcome::Pass => EXIT_PASS,
        RunOutcome::Leak => EXIT_LEAK,
        RunOutcome::Inconclusive => EXIT_INCONCLUSIVE,
        RunOutcome::Error => match report.error.as_ref().map(|e| e.kind) {
            Some(ErrorKind::Setup) => EXIT_SETUP,
            _ => EXIT_FAILURE,
        },
    }
}

fn target(t: &TargetArgs, model_override: Option<&str>, vlm: bool) -> anyhow::Result<Target> {
    let chosen = [
        t.reference || !t.reference_args.is_empty(),
        t.model.is_some(),
        t.server_cmd.is_some(),
        t.base_url.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if chosen > 1 {
        bail!("choose one target: --reference, --model, --server-cmd or --base-url");
    }
    if let Some(url) = &t.base_url {
        return Ok(Target::Attach {
            base_url: url.trim_end_matches('/').to_owned(),
            pid: t.server_pid,
        });
    }
    if let Some(cmd) = &t.server_cmd {
        let argv = sglang_memtest::scenario::presets::split_command(cmd)?;
        let (program, args) = argv.split_first().context("--server-cmd is empty")?;
        let mut spec = ServerSpec::command(program, args.to_vec())
            .with_name("server")
            .with_wait_for(fixture::WaitFor::http_ok(t.health_path.clone()));
        for (k, v) in &t.server_env {
            spec = spec.with_env(k, v);
        }
        return Ok(Target::Command(spec));
    }
    if let Some(model) = model_override.or(t.model.as_deref()) {
        let mut server =
            presets::sglang_server(model, &t.python, t.mem_fraction, t.server_args.clone(), vlm)
                .with_device(t.device);
        if let Some(tokens) = t.max_total_tokens {
            server = server.with_max_total_tokens(tokens);
        }
        for (k, v) in &t.server_env {
            server = server.with_env(k, v);
        }
        return Ok(Target::Sglang(server));
    }
    Ok(Target::reference(t.reference_args.iter().cloned())?)
}

fn image_config(r: &RunArgs) -> anyhow::Result<ImageConfig> {
    let format = match r.image_format.as_str() {
        "png" => ImageFormat::Png,
        "jpeg" | "jpg" => ImageFormat::Jpeg,
        other => bail!("--image-format {other}: use png or jpeg"),
    };
    let (w, h) = r
        .image_size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|(w, h)| (1..=8192).contains(w) && (1..=8192).contains(h))
        .with_context(|| {
            format!(
                "--image-size {}: use WIDTHxHEIGHT, e.g. 448x448",
                r.image_size
            )
        })?;
    let mode = match r.image_mode.as_str() {
        "unique" => ImageMode::Unique,
        "repeated" => ImageMode::Repeated,
        other => bail!("--image-mode {other}: use unique or repeated"),
    };
    let source = match &r.image_dir {
        Some(dir) => ImageSource::Files(presets::image_files(dir)?),
        None => ImageSource::Generated {
            width: w,
            height: h,
            format,
        },
    };
    Ok(ImageConfig {
        source,
        mode,
        per_request: r.images_per_request.max(1),
        ..ImageConfig::default()
    })
}

fn build(
    test_type: TestType,
    t: &TargetArgs,
    r: &RunArgs,
    model_override: Option<&str>,
) -> anyhow::Result<Scenario> {
    let target = target(t, model_override, test_type != TestType::Text)?;
    let (name, workload, default_n, default_interval) = match test_type {
        TestType::Text => ("text_model", Workload::Text, 100, 0.1),
        TestType::VlmText => ("vlm_no_mm_processor", Workload::VlmText, 100, 0.1),
        TestType::VlmImage => ("vlm_image", Workload::VlmImage(image_config(r)?), 50, 0.2),
    };
    let is_sglang = matches!(target, Target::Sglang(_));
    let default_gpu = presets::default_gpu_mode(&target);
    let mut s = Scenario::new(name, target, workload)
        .with_out_dir(&r.out_dir)
        .with_plots(!r.no_plot);
    s.progress = Some(Duration::from_secs(2));
    s.startup_timeout = secs(t.startup_timeout, "--startup-timeout")?;
    s.driver.num_requests = r.num_requests.unwrap_or(default_n);
    s.driver.interval = secs(
        r.request_interval.unwrap_or(default_interval),
        "--request-interval",
    )?;
    s.driver.warmup_requests = r.warmup_requests;
    s.driver.concurrency = r.concurrency;
    s.driver.max_new_tokens = r.max_new_tokens;
    s.driver.api = r.api;
    s.driver.max_error_rate = r.max_error_rate;
    if let Some(token) = &r.image_token {
        s.driver.image_token = token.clone();
    }
    s.tracker.interval = Duration::from_millis(r.sample_interval_ms.max(1));
    s.tracker.gpu = match r.gpu.as_deref() {
        None => default_gpu,
        Some("auto") => GpuMode::Auto,
        Some("required") => GpuMode::Required,
        Some("off") => GpuMode::Off,
        Some(other) => bail!("--gpu {other}: use auto, off or required"),
    };
    for item in &r.max_slope {
        let (pattern, size) = item.split_once('=').with_context(|| {
            format!("--max-slope {item}: use PATTERN=SIZE, e.g. host.rss@tree=64KiB")
        })?;
        let bytes = parse_bytes(size)
            .with_context(|| format!("--max-slope {item}: sizes look like 64KiB or 1MiB"))?;
        s.thresholds.set_max_slope(pattern, bytes);
    }
    if let Some(seed) = r.seed {
        s.thresholds.seed = seed;
    }
    if is_sglang {
        s.caches = presets::sglang_caches(test_type != TestType::Text, t.device);
        if let Some((_, mb)) = t
            .server_env
            .iter()
            .rfind(|(k, _)| k == "SGLANG_VLM_CACHE_SIZE_MB")
            && let Some(c) = s
                .caches
                .iter_mut()
                .find(|c| c.name.starts_with("multimodal"))
            && mb != "0"
        {
            c.state = format!("on, {mb} MB (--server-env)");
        }
    }
    s.validate()?;
    Ok(s)
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err(format!(
            "{s:?}: use KEY=VALUE, e.g. SGLANG_VLM_CACHE_SIZE_MB=100"
        )),
    }
}

fn parse_device(s: &str) -> Result<fixture::Device, String> {
    s.parse()
}

fn secs(v: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("{flag} {v}: use a non-negative number of seconds"))
}

/// How bad an exit status is, for `suite`: a leak outranks everything, then failures.
fn severity(code: u8) -> u8 {
    match code {
        EXIT_LEAK => 5,
        EXIT_FAILURE => 4,
        EXIT_SETUP => 3,
        EXIT_INCONCLUSIVE => 2,
        _ => 0,
    }
}

async fn suite(args: SuiteArgs) -> anyhow::Result<u8> {
    // Every flag is checked before the first (possibly long) scenario starts.
    let scenarios = [TestType::Text, TestType::VlmText, TestType::VlmImage]
        .into_iter()
        .map(|tt| {
            let model = if tt == TestType::Text {
                None
            } else {
                args.vlm_model.as_deref()
            };
            build(tt, &args.target, &args.run, model)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut worst = EXIT_PASS;
    let mut lines = Vec::new();
    for scenario in &scenarios {
        let report = run_interruptible(scenario).await;
        print_report(&report, args.run.json)?;
        let code = exit_code(&report);
        lines.push(format!("{:<22} {:?}", scenario.name, report.outcome));
        if severity(code) > severity(worst) {
            worst = code;
        }
        if load::interrupted() {
            break;
        }
    }
    println!("\nsuite:\n  {}", lines.join("\n  "));
    Ok(worst)
}

async fn demo(out_dir: PathBuf, num_requests: u64) -> anyhow::Result<u8> {
    let runs = [
        ("demo_clean", vec![]),
        (
            "demo_leaking",
            vec!["--leak-bytes-per-request=1048576".to_owned()],
        ),
        (
            "demo_child_leak",
            vec![
                "--children=2".to_owned(),
                "--leak-in-child".to_owned(),
                "--leak-bytes-per-request=524288".to_owned(),
            ],
        ),
        (
            "demo_bounded_cache",
            vec![
                "--cache-bytes-per-request=1048576".to_owned(),
                "--cache-cap-bytes=16777216".to_owned(),
            ],
        ),
    ];
    println!(
        "demo: the reference server, {num_requests} requests each, reports in {}\n",
        out_dir.display()
    );
    let mut table = Vec::new();
    let mut ok = true;
    for (name, knobs) in runs {
        let mut s = Scenario::new(name, Target::reference(knobs.clone())?, Workload::Text)
            .with_out_dir(&out_dir);
        s.driver.num_requests = num_requests;
        s.driver.interval = Duration::from_millis(20);
        s.tracker.interval = Duration::from_millis(50);
        s.tracker.gpu = GpuMode::Off;
        s.cooldown.settle = Duration::from_millis(500);
        let report = run_interruptible(&s).await;
        print!("{}", report.summary());
        println!();
        let expected = if name == "demo_clean" || name == "demo_bounded_cache" {
            RunOutcome::Pass
        } else {
            RunOutcome::Leak
        };
        ok &= report.outcome == expected;
        let knobs = if knobs.is_empty() {
            "(no planted leak)".to_owned()
        } else {
            knobs.join(" ")
        };
        table.push(format!(
            "  {name:<20} {:<14} {knobs}",
            format!("{:?}", report.outcome).to_uppercase()
        ));
        if load::interrupted() {
            break;
        }
    }
    println!("side by side:\n{}", table.join("\n"));
    if !ok {
        eprintln!("the demo's verdicts differ from the planted leaks: please report this");
        return Ok(EXIT_FAILURE);
    }
    Ok(EXIT_PASS)
}

/// Replace the part of the calibration document between the `<!-- MARKER:begin … -->` and
/// `<!-- MARKER:end -->` lines, keeping the prose around it.
fn write_calibration(path: &std::path::Path, marker: &str, table: &str) -> anyhow::Result<()> {
    let begin = format!("<!-- {marker}:begin");
    let end = format!("<!-- {marker}:end -->");
    let new = match std::fs::read_to_string(path) {
        Ok(old) => {
            let (Some(b), Some(e)) = (old.find(&begin), old.find(&end)) else {
                bail!(
                    "{} has no `{begin} …` / `{end}` markers: add them around the results, or pass --out NEW_FILE",
                    path.display()
                );
            };
            let after_begin = old[b..].find('\n').map_or(old.len(), |i| b + i + 1);
            format!("{}{table}{}", &old[..after_begin], &old[e..])
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("# Calibration of the leak verdict\n\n{begin} -->\n{table}{end}\n")
        }
        Err(e) => {
            return Err(
                anyhow::Error::from(e).context(format!("failed to read {}", path.display()))
            );
        }
    };
    std::fs::write(path, new).with_context(|| format!("failed to write {}", path.display()))
}

/// Real runs against the reference server, per shape: clean shapes get `runs`, planted leaks a
/// quarter of that (their rate is near 100 % and needs fewer runs to pin down).
async fn calibrate_reference(runs: usize) -> anyhow::Result<String> {
    use sglang_memtest::scenario::calibrate;
    let exe = sglang_memtest::scenario::reference_exe()?;
    let dir = calibrate::scratch_dir();
    let mut rows = Vec::new();
    for shape in calibrate::default_shapes() {
        let n = if shape.leaks { runs.div_ceil(4) } else { runs };
        eprintln!("reference server: {} × {n} …", shape.name);
        let tally = calibrate::run_shape(&exe, &shape, n, 100, &dir).await;
        rows.push((shape, tally));
        if load::interrupted() {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(calibrate::to_markdown(&rows, 100))
}
