//! What a plot shows, decided before anything is drawn so that PNG and SVG show the same thing:
//! the panels and their lines, the shaded phases, the headline and its details.

use plotters::style::{BLACK, RGBColor};

use crate::analysis::{MetricAnalysis, Outcome, Verdict};
use crate::tracker::{Phase, Timeline};
use crate::util::signed_bytes;

/// Processes drawn per panel; more make the picture unreadable.
pub(super) const MAX_PROCESSES: usize = 6;
/// Points per drawn line; longer series are reduced to a min/max envelope.
const MAX_POINTS: usize = 2000;

pub(super) const MIB: f64 = 1024.0 * 1024.0;
pub(super) const GIB: f64 = 1024.0 * MIB;

/// Colours of the per-process lines (Tableau 10, minus the reds kept for leaks and the grey).
const PALETTE: [RGBColor; 7] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
pub(super) const LEAK_RED: RGBColor = RGBColor(200, 30, 30);
const PASS_GREEN: RGBColor = RGBColor(30, 130, 50);
const UNSURE_ORANGE: RGBColor = RGBColor(200, 110, 0);

/// What is drawn, decided before drawing so that PNG and SVG show the same thing.
pub(super) struct Figure {
    pub(super) title: String,
    pub(super) headline: Option<(String, RGBColor)>,
    pub(super) details: Vec<String>,
    pub(super) panels: Vec<Panel>,
    pub(super) shades: Vec<(f64, f64, &'static str)>,
    pub(super) x_max: f64,
}

pub(super) struct Panel {
    pub(super) title: &'static str,
    /// Divisor and name of the unit shown: MiB, or GiB above 4 GiB.
    pub(super) unit: (f64, &'static str),
    pub(super) lines: Vec<Line>,
    /// Processes left out to keep the panel readable.
    pub(super) hidden: usize,
}

pub(super) struct Line {
    pub(super) label: String,
    /// (seconds, bytes), finite values only.
    pub(super) points: Vec<(f64, f64)>,
    pub(super) color: RGBColor,
    pub(super) bold: bool,
    pub(super) leak: bool,
}

impl Figure {
    pub(super) fn new(timeline: &Timeline, verdict: Option<&Verdict>, title: &str) -> Self {
        let leaking = |metric: &str| verdict.is_some_and(|v| v.leaks().any(|m| m.metric == metric));
        let line = |metric: &str, label: String, bold: bool| {
            let points: Vec<(f64, f64)> = timeline
                .series
                .get(metric)?
                .points
                .iter()
                .filter(|p| p.v.is_finite())
                .map(|p| (p.t_us as f64 / 1e6, p.v))
                .collect();
            (!points.is_empty()).then(|| Line {
                label,
                points: decimate(points, MAX_POINTS),
                color: BLACK,
                bold,
                leak: leaking(metric),
            })
        };
        let process_label = |pid: u32| match timeline.processes.get(&pid) {
            Some(p) if !p.label().is_empty() => format!("{} ({pid})", p.label()),
            _ => format!("pid {pid}"),
        };
        // Per-process lines of one family, largest peak first, at most MAX_PROCESSES.
        let processes = |prefix: &str| -> (Vec<Line>, usize) {
            let mut lines: Vec<Line> = timeline
                .series
                .keys()
                .filter_map(|name| {
                    let pid = name.strip_prefix(prefix)?.parse::<u32>().ok()?;
                    line(name, process_label(pid), false)
                })
                .collect();
            // A leaking process is always drawn, however small: it is the point of the plot.
            lines.sort_by(|a, b| b.leak.cmp(&a.leak).then(peak(b).total_cmp(&peak(a))));
            let hidden = lines.len().saturating_sub(MAX_PROCESSES);
            lines.truncate(MAX_PROCESSES);
            (lines, hidden)
        };

        let mut panels = Vec::new();
        let (mut host, hidden) = processes("host.rss@pid:");
        host.splice(0..0, line("host.rss@tree", "whole tree".to_owned(), true));
        panels.push(Panel::new("host memory (RSS)", host, hidden));

        let mut gpu: Vec<Line> = timeline
            .series
            .keys()
            .filter_map(|name| {
                let dev = name.strip_prefix("gpu.used@dev:")?;
                line(name, format!("GPU {dev} used (all processes)"), false)
            })
            .collect();
        gpu.extend(line("gpu.proc@tree", "whole tree on GPU".to_owned(), true));
        let (gpu_procs, hidden) = processes("gpu.proc@pid:");
        gpu.extend(gpu_procs);
        panels.push(Panel::new("GPU memory", gpu, hidden));

        let shm = line("shm.bytes", "/dev/shm allocated".to_owned(), true);
        panels.push(Panel::new("/dev/shm", shm.into_iter().collect(), 0));
        panels.retain(|p| !p.lines.is_empty());

        let last_point = panels
            .iter()
            .flat_map(|p| &p.lines)
            .filter_map(|l| l.points.last())
            .map(|&(t, _)| t)
            .fold(0.0, f64::max);
        let last_mark = timeline
            .phases
            .iter()
            .map(|p| p.to_us as f64 / 1e6)
            .fold(0.0, f64::max);
        let x_max = last_point.max(last_mark);
        let x_max = if x_max > 0.0 { x_max } else { 1.0 };
        let shades = [(Phase::Warmup, "warm-up"), (Phase::Cooldown, "cooldown")]
            .into_iter()
            .filter_map(|(phase, label)| {
                let (from, to) = timeline.phase_range(phase)?;
                // An open phase (`u64::MAX`) runs to the end of the data.
                let to = (to as f64 / 1e6).min(x_max);
                Some((from as f64 / 1e6, to, label))
            })
            .filter(|(from, to, _)| to > from)
            .collect();

        let (headline, details) = verdict.map_or((None, Vec::new()), |v| {
            let (h, d) = headline(v, timeline);
            (Some(h), d)
        });
        Self {
            title: title.to_owned(),
            headline,
            details,
            panels,
            shades,
            x_max,
        }
    }
}

impl Panel {
    fn new(title: &'static str, mut lines: Vec<Line>, hidden: usize) -> Self {
        let mut colors = PALETTE.iter().cycle();
        for line in lines.iter_mut().filter(|l| !l.bold) {
            line.color = *colors.next().unwrap_or(&BLACK);
        }
        let max = lines.iter().map(peak).fold(0.0, f64::max);
        let unit = if max > 4.0 * GIB {
            (GIB, "GiB")
        } else {
            (MIB, "MiB")
        };
        Self {
            title,
            unit,
            lines,
            hidden,
        }
    }

    /// Y range in the shown unit, padded so lines do not sit on the frame.
    pub(super) fn y_range(&self) -> (f64, f64) {
        let values = self
            .lines
            .iter()
            .flat_map(|l| &l.points)
            .map(|&(_, v)| v / self.unit.0);
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let pad = if hi > lo {
            (hi - lo) * 0.08
        } else {
            (hi.abs() * 0.05).max(1.0)
        };
        let floor = if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
        ((lo - pad).max(floor), hi + pad)
    }
}

fn peak(line: &Line) -> f64 {
    line.points
        .iter()
        .map(|&(_, v)| v)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Reduce a long series to per-bucket min and max, in time order: the envelope (and any
/// spike) survives, the SVG stays small.
pub(super) fn decimate(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points;
    }
    let bucket = points.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max);
    for chunk in points.chunks(bucket) {
        let lo = chunk.iter().min_by(|a, b| a.1.total_cmp(&b.1));
        let hi = chunk.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(&lo), Some(&hi)) = (lo, hi) {
            let (first, second) = if lo.0 <= hi.0 { (lo, hi) } else { (hi, lo) };
            out.push(first);
            out.push(second);
        }
    }
    out
}

/// "LEAK: host.rss@pid:4321 +1.0 MiB/request" / "PASS" / "INCONCLUSIVE", and detail lines.
pub(super) fn headline(
    verdict: &Verdict,
    timeline: &Timeline,
) -> ((String, RGBColor), Vec<String>) {
    let describe = |m: &MetricAnalysis| {
        let slope = m
            .slope
            .map(|s| format!(", {}/request", signed_bytes(s.point)))
            .unwrap_or_default();
        let process = m
            .metric
            .rsplit_once("@pid:")
            .and_then(|(_, pid)| timeline.processes.get(&pid.parse().ok()?))
            .map(|p| format!(" ({})", p.label()))
            .unwrap_or_default();
        format!(
            "{}{process}: {} over the run{slope}",
            m.metric,
            signed_bytes(m.growth)
        )
    };
    let head = match verdict.outcome {
        Outcome::Leak => {
            let leaks: Vec<&MetricAnalysis> = verdict.leaks().collect();
            let text = match leaks.first() {
                Some(m) => {
                    let slope = m
                        .slope
                        .map(|s| format!(" {}/request", signed_bytes(s.point)));
                    let more = match leaks.len() {
                        0 | 1 => String::new(),
                        n => format!(" (and {} more)", n - 1),
                    };
                    format!("LEAK: {}{}{more}", m.metric, slope.unwrap_or_default())
                }
                None => "LEAK".to_owned(),
            };
            (text, LEAK_RED)
        }
        Outcome::Pass => ("PASS".to_owned(), PASS_GREEN),
        Outcome::Inconclusive => ("INCONCLUSIVE".to_owned(), UNSURE_ORANGE),
    };
    // The metrics that decided the outcome first (the analysis sorts judged, worst first).
    let mut details: Vec<String> = verdict
        .metrics
        .iter()
        .filter(|m| m.judged)
        .take(2)
        .map(describe)
        .collect();
    details.extend(verdict.reasons.iter().take(1).cloned());
    (head, details)
}
