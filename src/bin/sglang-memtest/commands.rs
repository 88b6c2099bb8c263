//! The subcommands that do not run one configured scenario: compare, demo, calibrate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use sglang_memtest::analysis::calibrate::{self, CalibrationConfig};
use sglang_memtest::config::ScenarioConfig;
use sglang_memtest::load::{DEFAULT_BUDGET_FACTOR, Workload};
use sglang_memtest::report::compare::compare_with as compare_reports;
use sglang_memtest::report::{Report, RunOutcome};

use crate::{EXIT_FAILURE, EXIT_LEAK, EXIT_PASS, interrupt, run_interruptible};

/// `calibrate`'s flags.
#[derive(Args)]
pub struct CalibrateArgs {
    /// Markdown file whose Results section (between the `calibrate:begin`/`end` markers) is
    /// rewritten; a missing file is created.
    #[arg(long, default_value = "docs/calibration.md")]
    out: PathBuf,
    /// Runs per shape (clean and leaking).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Seed of every draw.
    #[arg(long, default_value_t = 20_261_127)]
    seed: u64,
    /// Measured requests per synthetic run (100 for the main table; 10000 and 1000000 for the
    /// long-run tables, written between `calibrate-n<N>` markers).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=100_000_000))]
    requests: u64,
    /// Judge with the adaptive rule (looks before, at and after the planned count) up to a
    /// budget of 4 × `--requests` (written between `calibrate-adaptive` markers).
    #[arg(long)]
    adaptive: bool,
    /// Also run this many scenarios per shape against the reference server (slow: about
    /// 1.5 s each; 200 for the published table, planted leaks get a quarter of that).
    #[arg(long, default_value_t = 0)]
    reference_runs: usize,
    /// Only the shapes whose name starts with this (repeatable), e.g. `--only "host: GC"`:
    /// a partial table, for tuning (it still rewrites the section of `--out`).
    #[arg(long, value_name = "PREFIX")]
    only: Vec<String>,
    /// Print the reasons of up to N wrong verdicts per shape (a clean run not passing, a
    /// planted leak not called) to stderr.
    #[arg(long, value_name = "N", default_value_t = 0)]
    explain: usize,
}

/// `compare BEFORE AFTER`: exit 3 when AFTER regressed, 1 when either has no verdict.
pub fn compare(
    before: &Path,
    after: &Path,
    json: bool,
    rule: &sglang_memtest::report::compare::RegressionRule,
) -> anyhow::Result<u8> {
    let a = Report::read_json(before)?;
    let b = Report::read_json(after)?;
    for (which, r, path) in [("baseline", &a, before), ("new", &b, after)] {
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
    let cmp = compare_reports(&a, &b, rule);
    if json {
        println!("{}", serde_json::to_string_pretty(&cmp)?);
    } else {
        print!("{}", cmp.to_table());
    }
    Ok(if cmp.regressed() {
        EXIT_LEAK
    } else {
        EXIT_PASS
    })
}

/// `analyze PATH`: every report at PATH (a JSON file, or the `*.json` of a folder) rebuilt from
/// its raw files; the exit status is the worst outcome.
pub fn analyze(path: &Path, plots: bool) -> anyhow::Result<u8> {
    let reports: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && p.with_extension("samples.csv").is_file()
            })
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_owned()]
    };
    if reports.is_empty() {
        bail!(
            "{} holds no report with raw files (<scenario>.json beside <scenario>.samples.csv): give a run's --out-dir or one report",
            path.display()
        );
    }
    let mut worst = EXIT_PASS;
    for json in &reports {
        let report = sglang_memtest::scenario::reanalyze(json, plots)
            .with_context(|| format!("cannot rebuild {}", json.display()))?;
        print!("{}", report.summary());
        let code = crate::exit_code(&report);
        if crate::severity(code) > crate::severity(worst) {
            worst = code;
        }
    }
    Ok(worst)
}

/// `calibrate`.
pub async fn calibrate(args: CalibrateArgs) -> anyhow::Result<u8> {
    let config = CalibrationConfig {
        runs: usize::try_from(args.runs).unwrap_or(usize::MAX),
        seed: args.seed,
        requests: usize::try_from(args.requests).unwrap_or(usize::MAX),
        budget: args.adaptive.then(|| {
            usize::try_from(args.requests.saturating_mul(DEFAULT_BUDGET_FACTOR))
                .unwrap_or(usize::MAX)
        }),
        only: args.only.clone(),
        explain: args.explain,
        ..CalibrationConfig::default()
    };
    let stem = if args.adaptive {
        "calibrate-adaptive"
    } else {
        "calibrate"
    };
    let marker = if args.requests == 100 {
        stem.to_owned()
    } else {
        format!("{stem}-n{}", args.requests)
    };
    eprintln!(
        "calibrating: {} runs per shape, {} requests each (seed {}) …",
        args.runs, config.requests, args.seed
    );
    let table = calibrate::run(&config);
    if table.rows.is_empty() {
        anyhow::bail!(
            "no calibration shape starts with {:?}: the shapes are the first column of docs/calibration.md's tables",
            args.only
        );
    }
    for row in table.rows.iter().filter(|r| !r.wrong.is_empty()) {
        eprintln!("{}:", row.shape);
        for w in &row.wrong {
            eprintln!("  {w}");
        }
    }
    let text = table.to_markdown();
    print!("{text}");
    write_calibration(&args.out, &marker, &text)?;
    if args.reference_runs > 0 {
        let text = calibrate_reference(args.reference_runs).await?;
        print!("{text}");
        write_calibration(&args.out, "calibrate-reference", &text)?;
    }
    eprintln!("results written into {}", args.out.display());
    Ok(EXIT_PASS)
}

/// `demo`: the reference server clean and leaking, side by side; checks its own verdicts.
pub async fn demo(out_dir: PathBuf, num_requests: u64) -> anyhow::Result<u8> {
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
        // 1 MiB/request in the small scheduler beside a server process grown to 2 GiB in the
        // warm-up: on one absolute axis the leak would be a faint slope.
        (
            "demo_small_leak_big_neighbour",
            vec![
                "--children=2".to_owned(),
                "--leak-in-child=0".to_owned(),
                "--leak-bytes-per-request=1048576".to_owned(),
                "--warmup-step-bytes=2147483648".to_owned(),
            ],
        ),
    ];
    println!(
        "demo: the reference server, {num_requests} requests each, reports in {}\n",
        out_dir.display()
    );
    let mut table = Vec::new();
    let mut reports = Vec::new();
    let mut ok = true;
    for (name, knobs) in runs {
        let s = ScenarioConfig::new(name, Workload::Text)
            .reference(knobs.clone())
            .quick()
            .requests(num_requests)
            .request_interval(Duration::from_millis(20))
            .out_dir(&out_dir)
            .build()?;
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
            "  {name:<30} {:<14} {knobs}",
            format!("{:?}", report.outcome).to_uppercase()
        ));
        reports.push(report);
        if interrupt().is_cancelled() {
            break;
        }
    }
    let index = write_suite_page(&out_dir, "sglang-memtest demo", &reports);
    println!("side by side:\n{}{index}", table.join("\n"));
    if !ok {
        eprintln!("the demo's verdicts differ from the planted leaks: please report this");
        return Ok(EXIT_FAILURE);
    }
    Ok(EXIT_PASS)
}

/// The suite's `index.html` beside its reports, each report's page rewritten with links to the
/// others; returns the line that names it (or says why it was not written).
pub fn write_suite_page(dir: &Path, title: &str, reports: &[Report]) -> String {
    match sglang_memtest::report::html::write_suite(dir, title, reports) {
        Ok(index) => format!("\n\nHTML report: {}", index.display()),
        Err(e) => format!("\n\nHTML suite page not written: {e:#}"),
    }
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
    use sglang_memtest::campaign::calibrate;
    let exe = sglang_memtest::config::reference_exe()?;
    let dir = calibrate::scratch_dir();
    let mut rows = Vec::new();
    for shape in calibrate::default_shapes() {
        let n = if shape.leaks { runs.div_ceil(4) } else { runs };
        eprintln!("reference server: {} × {n} …", shape.name);
        let tally = calibrate::run_shape(&exe, &shape, n, 100, &dir, interrupt()).await;
        rows.push((shape, tally));
        if interrupt().is_cancelled() {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(calibrate::to_markdown(&rows, 100))
}
