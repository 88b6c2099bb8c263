//! `bisect-run` (a `git bisect run` predicate) and `sweep` (growth against a knob).

use clap::Args;
use sglang_memtest::report::{Report, RunOutcome};

use crate::{MonitorArgs, configure, interrupt, print_report};

/// `git bisect run`: this commit is good.
pub(crate) const BISECT_GOOD: u8 = 0;
/// `git bisect run`: this commit is bad.
pub(crate) const BISECT_BAD: u8 = 1;
/// `git bisect run`: this commit cannot be tested (skip it).
pub(crate) const BISECT_SKIP: u8 = 125;
/// `git bisect run`: stop bisecting (a bad flag is bad at every commit).
pub(crate) const BISECT_ABORT: u8 = 128;

/// The `git bisect run` exit status of a run: pass is good, a leak is bad, anything that did
/// not judge the commit (inconclusive, setup error, a server that died) skips it.
pub(crate) fn bisect_code(report: &Report) -> u8 {
    match report.outcome {
        RunOutcome::Pass if report.files.json.is_some() => BISECT_GOOD,
        RunOutcome::Leak => BISECT_BAD,
        _ => BISECT_SKIP,
    }
}

/// `bisect-run`: one scenario, as `monitor`, with `git bisect run`'s exit codes.
pub(crate) async fn bisect_run(args: &MonitorArgs) -> u8 {
    let scenario = match configure(args.test_type.clone(), &args.scenario, false)
        .and_then(|c| Ok(c.build()?))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            eprintln!(
                "bisect-run: exit {BISECT_ABORT}: the settings are wrong at every commit, so the bisection stops"
            );
            return BISECT_ABORT;
        }
    };
    let report = crate::run_interruptible(&scenario).await;
    if let Err(e) = print_report(&report, args.scenario.json) {
        eprintln!("warning: {e:#}");
    }
    let code = bisect_code(&report);
    let what = match code {
        BISECT_GOOD => "good (no leak)",
        BISECT_BAD => "bad (leak)",
        _ => "skip (this commit could not be judged)",
    };
    eprintln!("bisect-run: {:?} -> exit {code}: {what}", report.outcome);
    code
}

/// `sweep`'s own flags; the rest are `monitor`'s.
#[derive(Args)]
pub(crate) struct SweepArgs {
    /// The knob to vary: image-size, images-per-request, max-new-tokens or concurrency.
    #[arg(long)]
    knob: String,
    /// Its values, comma-separated (e.g. 224x224,448x448,896x896).
    #[arg(long, value_delimiter = ',', required = true)]
    values: Vec<String>,
    /// The metric whose growth per request is fitted (a role works for a process:
    /// host.rss@scheduler).
    #[arg(long, default_value = "host.rss@tree")]
    metric: String,
    #[command(flatten)]
    monitor: MonitorArgs,
}

/// `sweep`: the scenario once per value, the fit, one table, one plot.
pub(crate) async fn sweep(args: &SweepArgs) -> anyhow::Result<u8> {
    let knob = args.knob.replace('-', "_");
    let base = configure(
        args.monitor.test_type.clone(),
        &args.monitor.scenario,
        false,
    )?;
    let out_dir = base.clone().build()?.out_dir().to_owned();
    let plan = sglang_memtest::campaign::sweep::SweepPlan {
        knob: &knob,
        values: &args.values,
        metric: &args.metric,
    };
    let mut worst = crate::EXIT_PASS;
    let sweep = sglang_memtest::campaign::sweep::run(&base, &plan, interrupt(), |r| {
        let _ = print_report(r, false);
        let code = crate::exit_code(r);
        if crate::severity(code) > crate::severity(worst) {
            worst = code;
        }
    })
    .await
    .map_err(anyhow::Error::msg)?;
    println!("\n{}", sglang_memtest::campaign::sweep::table(&sweep));
    for p in &sweep.plots {
        println!("plot: {}", p.display());
    }
    println!(
        "sweep: {}",
        out_dir.join(format!("sweep_{knob}.json")).display()
    );
    Ok(worst)
}
