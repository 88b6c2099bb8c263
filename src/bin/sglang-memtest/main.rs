//! `sglang-memtest`: catch memory leaks in SGLang (or any inference server) from the command
//! line. Thin over the library: the scenario flags are generated from its knob table, every
//! subcommand builds a `ScenarioConfig` or reads reports, and errors become sentences here.

mod commands;
mod diagnose_cmd;
mod judge;
mod knob_args;
mod reference;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use clap::{Args, Parser, Subcommand, ValueEnum};
use sglang_memtest::config::ScenarioConfig;
use sglang_memtest::load::{ImageConfig, Workload};
use sglang_memtest::report::{ErrorKind, Report, RunOutcome};
use sglang_memtest::{CancellationToken, fixture};

use knob_args::KnobArgs;

/// Exit status: within thresholds.
pub(crate) const EXIT_PASS: u8 = 0;
/// Exit status: any other failure (the server died, requests failed, no report written).
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit status: usage or setup error (bad flag, SGLang missing, server never ready).
pub(crate) const EXIT_SETUP: u8 = 2;
/// Exit status: leak verdict.
pub(crate) const EXIT_LEAK: u8 = 3;
/// Exit status: inconclusive (more requests needed to decide).
pub(crate) const EXIT_INCONCLUSIVE: u8 = 4;

#[derive(Parser)]
#[command(
    name = "sglang-memtest",
    version,
    about = "Catch memory leaks in LLM/VLM inference servers before users hit OOM",
    after_help = "Every scenario flag also reads its MEMTEST_* variable (shown in each flag's help); a flag beats its variable. `sglang-memtest knobs` lists them all."
)]
struct Cli {
    /// Log filter (`info`, `debug`, `sglang_memtest=debug`).
    #[arg(long, global = true, env = "MEMTEST_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process: the size of the reference server's knobs does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run one scenario against a server and judge its memory growth.
    Monitor(MonitorArgs),
    /// `git bisect run` predicate: one scenario as `monitor`; exit 0 pass (good), 1 leak (bad),
    /// 125 cannot judge this commit (inconclusive, setup error, the server died: skip), 128 bad
    /// flags (the bisection stops).
    BisectRun(MonitorArgs),
    /// Dose–response: one scenario at several values of one knob, growth per request fitted
    /// against it (a table, a plot, `sweep_<knob>.json`).
    Sweep(diagnose_cmd::SweepArgs),
    /// Run the three scenarios (text, vlm-text, vlm-image) one after the other.
    Suite(ScenarioArgs),
    /// The seed tool's runner: `run --test text-model|vlm-no-mm-processor|vlm-with-images|all`.
    Run(RunArgs),
    /// Judge a running fleet from its Prometheus: one verdict per replica, process or GPU.
    Judge(judge::JudgeArgs),
    /// Rebuild reports from the raw files beside them (after a harness was killed, or to judge
    /// again): a report's JSON, or a folder of them.
    Analyze {
        /// A `<scenario>.json` report, or the folder a run wrote into.
        path: PathBuf,
        /// Skip the PNG/SVG plots.
        #[arg(long)]
        no_plot: bool,
    },
    /// Compare two JSON reports metric by metric, processes matched by role: exit 3 when the
    /// new one regressed (a metric leaks now, or grows faster by more than its limit).
    Compare {
        /// The baseline report (e.g. the main branch's build).
        before: PathBuf,
        /// The new report (e.g. the pull request's build).
        after: PathBuf,
        /// Print the comparison as JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// The smallest rise in growth per request that regresses, e.g. 1KiB or 512B: the
        /// difference's interval must lie wholly above it.
        #[arg(long, value_name = "SIZE", default_value = "1KiB", value_parser = judge::parse_size)]
        regression_threshold: f64,
        /// Also require the new slope to be this many percent above the baseline's, e.g. 50.
        #[arg(long, value_name = "PERCENT", default_value_t = 0.0)]
        regression_ratio: f64,
    },
    /// No GPU, no Python: a clean and a leaking reference server, side by side.
    Demo {
        /// Where reports and plots go.
        #[arg(long, default_value = "target/memtest/demo")]
        out_dir: PathBuf,
        /// Measured requests per run.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(3..))]
        num_requests: u64,
    },
    /// Serve the reference server (planted leaks on demand).
    ServeReference(reference::ReferenceArgs),
    /// Measure the verdict rules' false-positive rate and power on synthetic series.
    Calibrate(commands::CalibrateArgs),
    /// Every scenario setting: variable, flag, default, meaning (a Markdown table).
    Knobs,
    /// Internal: a child process of the reference server.
    #[command(hide = true)]
    ReferenceChild(reference::ChildArgs),
    /// Internal: the process the reference server's --escape-child starts.
    #[command(hide = true)]
    ReferenceEscape {
        /// Stay (the grandchild) instead of leaving the group and starting it.
        #[arg(long)]
        stay: bool,
    },
}

/// `--test-type`: a shipped [`Workload`] by its name (`text`, `vlm-text`, `vlm-image`).
fn test_type_parser() -> impl clap::builder::TypedValueParser<Value = Workload> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("text").help("Text requests"),
        PossibleValue::new("vlm-text").help("Text requests to a VLM (no image processing)"),
        PossibleValue::new("vlm-image").help("Image requests to a VLM"),
    ])
    .try_map(|name| name.parse::<Workload>())
}

/// The three shipped workloads, in the suite's order.
fn shipped() -> [Workload; 3] {
    [
        Workload::Text,
        Workload::VlmText,
        Workload::VlmImage(ImageConfig::default()),
    ]
}

/// The seed tool's test names.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SeedTest {
    /// The text scenario.
    TextModel,
    /// A VLM receiving text only.
    VlmNoMmProcessor,
    /// A VLM receiving images.
    VlmWithImages,
    /// All three.
    All,
}

#[derive(Args, Clone)]
struct ScenarioArgs {
    #[command(flatten)]
    knobs: KnobArgs,
    /// Print the JSON report to stdout instead of the summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MonitorArgs {
    /// What to send.
    #[arg(long, value_parser = test_type_parser(), default_value = "text")]
    test_type: Workload,
    #[command(flatten)]
    scenario: ScenarioArgs,
    #[command(flatten)]
    prometheus: judge::MonitorPrometheus,
}

#[derive(Args)]
struct RunArgs {
    /// Which scenario(s).
    #[arg(long, value_enum)]
    test: SeedTest,
    #[command(flatten)]
    scenario: ScenarioArgs,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A bad flag to bisect-run is bad at every commit: stop `git bisect run` (exit 128)
        // rather than let clap's 2 mark this commit bad.
        Err(e) if e.use_stderr() && std::env::args().nth(1).as_deref() == Some("bisect-run") => {
            let _ = e.print();
            return ExitCode::from(diagnose_cmd::BISECT_ABORT);
        }
        Err(e) => e.exit(),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Cmd::ReferenceChild(args) => reference::run_child(args)
            .map(|()| EXIT_PASS)
            .map_err(anyhow::Error::from),
        Cmd::ReferenceEscape { stay } => reference::run_escape(stay)
            .map(|()| EXIT_PASS)
            .map_err(anyhow::Error::from),
        cmd => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(run(cmd)),
            Err(e) => Err(anyhow::Error::from(e).context("failed to start the async runtime")),
        },
    };
    match result {
        Ok(code) => ExitCode::from(interrupted_exit().unwrap_or(code)),
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
        Cmd::Monitor(args) if args.prometheus.wanted() => {
            let config = configure(args.test_type.clone(), &args.scenario, false)?;
            let report = run_interruptible(&config.build()?).await;
            // Attached by URL to a server this machine cannot see: nothing was measured here,
            // which is expected; the memory comes from Prometheus below.
            let remote = report
                .error
                .as_ref()
                .and_then(|e| e.cause())
                .is_some_and(|e| {
                    matches!(
                        e,
                        sglang_memtest::Error::Scenario(
                            sglang_memtest::scenario::ScenarioError::NothingJudged
                        )
                    )
                });
            if remote && !args.scenario.json {
                let q = report.requests.as_ref();
                println!(
                    "{} · {} requests sent to {} ({} ok, {} failed); none of its processes is visible here, so its memory is judged from Prometheus",
                    report.scenario,
                    q.map_or(0, |q| q.sent),
                    report.target.base_url,
                    q.map_or(0, |q| q.ok),
                    q.map_or(0, |q| q.failed),
                );
            } else {
                print_report(&report, args.scenario.json)?;
            }
            judge::after_run(&args.prometheus, &report).await
        }
        Cmd::Monitor(args) => scenarios(&[args.test_type], &args.scenario, false).await,
        Cmd::Judge(args) => judge::judge(args).await,
        Cmd::BisectRun(args) => Ok(diagnose_cmd::bisect_run(&args).await),
        Cmd::Sweep(args) => diagnose_cmd::sweep(&args).await,
        Cmd::Suite(args) => scenarios(&shipped(), &args, false).await,
        Cmd::Run(args) => {
            let [text, vlm_text, vlm_image] = shipped();
            let tests = match args.test {
                SeedTest::TextModel => vec![text],
                SeedTest::VlmNoMmProcessor => vec![vlm_text],
                SeedTest::VlmWithImages => vec![vlm_image],
                SeedTest::All => vec![text, vlm_text, vlm_image],
            };
            // The seed runner's users find their files under the seed's names too.
            scenarios(&tests, &args.scenario, true).await
        }
        Cmd::Compare {
            before,
            after,
            json,
            regression_threshold,
            regression_ratio,
        } => commands::compare(
            &before,
            &after,
            json,
            &sglang_memtest::report::compare::RegressionRule {
                min_increase: regression_threshold,
                min_ratio: regression_ratio / 100.0,
            },
        ),
        Cmd::Analyze { path, no_plot } => commands::analyze(&path, !no_plot),
        Cmd::Demo {
            out_dir,
            num_requests,
        } => commands::demo(out_dir, num_requests).await,
        Cmd::Calibrate(args) => commands::calibrate(args).await,
        Cmd::Knobs => {
            print!("{}", sglang_memtest::config::markdown_table());
            Ok(EXIT_PASS)
        }
        Cmd::ReferenceChild(_) | Cmd::ReferenceEscape { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}

/// The CLI's configuration of one scenario: its preset, the reference server unless another
/// server is chosen, `seed_names` (the seed runner's default), `MEMTEST_*`, then the flags.
fn configure(
    workload: Workload,
    args: &ScenarioArgs,
    seed_names: bool,
) -> anyhow::Result<ScenarioConfig> {
    Ok(ScenarioConfig::preset(workload)
        .reference_by_default()
        .seed_names(seed_names)
        .progress(Some(std::time::Duration::from_secs(2)))
        .env_overrides()?
        .cli_overrides(args.knobs.overrides())?)
}

/// Runs `tests` one after the other (every setting checked before the first starts); the exit
/// status is the worst outcome, a leak first. Several scenarios also get a suite page
/// (`index.html`) linking theirs.
async fn scenarios(
    tests: &[Workload],
    args: &ScenarioArgs,
    seed_names: bool,
) -> anyhow::Result<u8> {
    let built = tests
        .iter()
        .map(|t| Ok(configure(t.clone(), args, seed_names)?.build()?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut worst = EXIT_PASS;
    let mut lines = Vec::new();
    let mut reports = Vec::new();
    for scenario in &built {
        let report = run_interruptible(scenario).await;
        print_report(&report, args.json)?;
        let code = exit_code(&report);
        lines.push(format!("{:<22} {:?}", scenario.name(), report.outcome));
        if severity(code) > severity(worst) {
            worst = code;
        }
        reports.push(report);
        if interrupt().is_cancelled() {
            break;
        }
    }
    if built.len() > 1 {
        let index = commands::write_suite_page(built[0].out_dir(), "suite", &reports);
        println!("\nsuite:\n  {}{index}", lines.join("\n  "));
    }
    Ok(worst)
}

/// The signal that interrupted this invocation (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// This invocation's cancellation token. The first SIGINT or SIGTERM cancels it: a start-up is
/// given up, the requests stop, the server is torn down, the report is written and no later
/// scenario starts. The second one tears every server down at once (on a thread of its own,
/// whatever the runtime is doing) and exits with 128 + the signal.
pub(crate) fn interrupt() -> &'static CancellationToken {
    static TOKEN: OnceLock<CancellationToken> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let token = CancellationToken::new();
        let cancel = token.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
            else {
                eprintln!("warning: no SIGINT/SIGTERM handler: Ctrl-C will not stop the server cleanly");
                return;
            };
            for round in 0..2 {
                let signo = tokio::select! {
                    _ = int.recv() => nix::libc::SIGINT,
                    _ = term.recv() => nix::libc::SIGTERM,
                };
                if round == 0 {
                    SIGNAL.store(signo, Ordering::SeqCst);
                    eprintln!(
                        "interrupted: stopping the server and writing the report (again to kill the server now)"
                    );
                    cancel.cancel();
                } else {
                    let killer = std::thread::Builder::new()
                        .name("memtest-kill-all".into())
                        .spawn(move || {
                            fixture::kill_all_registered();
                            std::process::exit(128 + signo);
                        });
                    if killer.is_err() {
                        fixture::kill_all_registered();
                        std::process::exit(128 + signo);
                    }
                }
            }
        });
        token
    })
}

/// The exit status of an interrupted invocation: 128 + the signal (130 for Ctrl-C).
pub(crate) fn interrupted_exit() -> Option<u8> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signo => u8::try_from(128 + signo).ok(),
    }
}

/// Run a scenario under this invocation's token (see [`interrupt`]).
pub(crate) async fn run_interruptible(scenario: &sglang_memtest::Scenario) -> Report {
    scenario.run_until(interrupt()).await
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.summary());
    }
    Ok(())
}

pub(crate) fn exit_code(report: &Report) -> u8 {
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

/// How bad an exit status is, for several scenarios: a leak outranks everything, then failures.
pub(crate) fn severity(code: u8) -> u8 {
    match code {
        EXIT_LEAK => 5,
        EXIT_FAILURE => 4,
        EXIT_SETUP => 3,
        EXIT_INCONCLUSIVE => 2,
        _ => 0,
    }
}
