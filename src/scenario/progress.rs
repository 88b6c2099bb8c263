//! The live progress of a run on stderr: requests done, the memory of the leading metric (the
//! one that grew most so far, processes by role), the ETA, and an adaptive extension when the
//! run goes past its planned count. A bar (`indicatif`) on a terminal; plain lines, one every
//! `every`, when stderr is a file or a pipe (CI logs).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::tracker::{Marker, Phase, Progress};
use crate::util::{human_bytes, signed_bytes};

/// What the progress needs to know of the run.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) name: String,
    pub(super) warmup: u64,
    pub(super) planned: u64,
    pub(super) budget: u64,
    /// A run of a duration (no request count to aim at).
    pub(super) duration: Option<Duration>,
}

/// The running display; [`stop`](Self::stop) clears the bar.
pub(super) struct Display {
    task: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Display {
    pub(super) fn stop(self) {
        self.task.abort();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The metrics whose growth the progress shows: the tree totals and every process.
const WATCHED: [&str; 5] = [
    "host.rss@tree",
    "gpu.proc@tree",
    "shm.bytes",
    "host.rss@pid:*",
    "gpu.proc@pid:*",
];

/// `host.rss@scheduler 1.2 GiB (+100 MiB)`: the watched metric that grew most.
pub(super) fn leading(p: &Progress) -> Option<String> {
    let (metric, first, last) = p
        .values
        .iter()
        .max_by(|a, b| (a.2 - a.1).total_cmp(&(b.2 - b.1)))?;
    let keys: std::collections::BTreeMap<u32, String> = p.labels.clone();
    let name = crate::report::roles::relabel(metric, &keys);
    Some(format!(
        "{name} {} ({})",
        human_bytes(*last),
        signed_bytes(last - first)
    ))
}

/// `(phase word, target count, extension note)` for a snapshot.
pub(super) fn stage(plan: &Plan, p: &Progress) -> Option<(&'static str, Option<u64>, String)> {
    match p.phase? {
        Phase::Warmup => Some(("warm-up", Some(plan.warmup), String::new())),
        Phase::Measure if plan.duration.is_some() => Some(("measure", None, String::new())),
        Phase::Measure if p.done > plan.planned => Some((
            "measure",
            Some(plan.budget),
            format!(
                " · extended: undecided at {} (budget {})",
                plan.planned, plan.budget
            ),
        )),
        Phase::Measure => Some(("measure", Some(plan.planned), String::new())),
        _ => None,
    }
}

/// A plain line: `text_model · measure 40/100 · ETA 6 s · host.rss@tree 1.2 GiB (+3 MiB)`.
pub(super) fn line(plan: &Plan, p: &Progress, rate: Option<f64>) -> Option<String> {
    let (phase, total, extension) = stage(plan, p)?;
    let count = match total {
        Some(t) => format!("{}/{t}", p.done),
        None => format!("{} requests", p.done),
    };
    let eta = match (total, rate) {
        (Some(t), Some(r)) if r > 0.0 && t >= p.done => {
            format!(
                " · ETA {}",
                humantime::format_duration(Duration::from_secs(
                    ((t - p.done) as f64 / r).ceil() as u64
                ))
            )
        }
        _ => String::new(),
    };
    let memory = leading(p).map(|m| format!(" · {m}")).unwrap_or_default();
    Some(format!(
        "  {} · {phase} {count}{eta}{memory}{extension}",
        plan.name
    ))
}

/// Start the display: a bar redrawn 5 times a second on a terminal, else a line every `every`.
pub(super) fn spawn(plan: Plan, marker: Marker, every: Duration) -> Display {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("  {prefix} [{bar:30}] {pos}/{len} · ETA {eta} · {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        bar.set_style(style);
        bar
    });
    let shown = bar.clone();
    let task = tokio::spawn(async move {
        let tick_every = if shown.is_some() {
            Duration::from_millis(200)
        } else {
            every
        };
        let mut tick = tokio::time::interval(tick_every);
        tick.tick().await;
        let mut phase_start: Option<(Phase, Instant)> = None;
        loop {
            tick.tick().await;
            let p = marker.progress(&WATCHED);
            let Some((word, total, extension)) = stage(&plan, &p) else {
                continue;
            };
            let phase = p.phase.unwrap_or(Phase::Measure);
            if phase_start.is_none_or(|(ph, _)| ph != phase) {
                phase_start = Some((phase, Instant::now()));
                if let Some(bar) = &shown {
                    bar.reset();
                }
            }
            match &shown {
                Some(bar) => {
                    match total {
                        Some(t) => bar.set_length(t),
                        None => bar.unset_length(),
                    }
                    bar.set_position(p.done);
                    bar.set_prefix(format!("{} · {word}", plan.name));
                    bar.set_message(format!("{}{extension}", leading(&p).unwrap_or_default()));
                }
                None => {
                    let rate = phase_start
                        .map(|(_, at)| p.done as f64 / at.elapsed().as_secs_f64().max(1e-3));
                    if let Some(text) = line(&plan, &p, rate) {
                        eprintln!("{text}");
                    }
                }
            }
        }
    });
    Display { task, bar }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            name: "text_model".into(),
            warmup: 5,
            planned: 100,
            budget: 400,
            duration: None,
        }
    }

    fn progress(phase: Phase, done: u64) -> Progress {
        Progress {
            phase: Some(phase),
            done,
            values: vec![
                ("host.rss@tree".into(), 1e9, 1.1e9),
                ("host.rss@pid:944".into(), 5e8, 6e8 + 1.0),
                ("shm.bytes".into(), 0.0, 0.0),
            ],
            labels: [(944, "scheduler".to_owned())].into_iter().collect(),
        }
    }

    #[test]
    fn a_plain_line_has_the_count_the_eta_and_the_metric_that_grew_most_by_role() {
        let text = line(&plan(), &progress(Phase::Measure, 40), Some(10.0)).unwrap();
        assert!(
            text.contains("text_model · measure 40/100 · ETA 6s"),
            "{text}"
        );
        assert!(
            text.contains("host.rss@scheduler 572.2 MiB (+95.4 MiB)"),
            "{text}"
        );
        assert!(!text.contains("extended"));
    }

    #[test]
    fn an_extension_past_the_planned_count_is_named_against_the_budget() {
        let text = line(&plan(), &progress(Phase::Measure, 150), None).unwrap();
        assert!(text.contains("measure 150/400"), "{text}");
        assert!(
            text.contains("extended: undecided at 100 (budget 400)"),
            "{text}"
        );
        let warm = line(&plan(), &progress(Phase::Warmup, 2), None).unwrap();
        assert!(warm.contains("warm-up 2/5"), "{warm}");
        assert!(line(&plan(), &progress(Phase::Cooldown, 0), None).is_none());
        let soak = Plan {
            duration: Some(Duration::from_secs(60)),
            ..plan()
        };
        let text = line(&soak, &progress(Phase::Measure, 7), Some(1.0)).unwrap();
        assert!(
            text.contains("measure 7 requests") && !text.contains("ETA"),
            "{text}"
        );
    }
}
