//! What a plot shows, decided before anything is drawn so that PNG and SVG show the same thing.
//!
//! - **Focus panels**, one per leaking or undecided judged metric (else the plateaus, else the
//!   tree's total): its growth since the first measured request on its own scale, absolute
//!   values on the right axis, the fitted trend over the judged window with its interval, the
//!   peak dashed, and a summary box (initial, final, growth, slope with interval, verdict).
//! - **Overview panels** per kind of memory (host, GPU, `/dev/shm`): every process's growth
//!   since the first measured request on one axis, so a 1 MiB/request leak in a small process
//!   is a climbing line next to a flat 2 GiB one; absolute sizes are in the legend. A panel in
//!   which nothing moved during the measured requests is collapsed into one line of text.
//!
//! Processes are named by role (`scheduler`, `EngineCore`), the PID only in the legend.

use std::collections::BTreeMap;

use plotters::style::{BLACK, RGBColor};

use super::PlotInput;
use super::axis::XMap;
use crate::analysis::{MetricAnalysis, Outcome};
use crate::report::roles::{process_keys, relabel};
use crate::tracker::{Phase, Timeline};
pub(super) use crate::util::{GIB, KIB, MIB};

mod focus;
mod headline;
mod traces;
mod xaxis;
use crate::util::{human_bytes, signed_bytes};
use focus::focus_metrics;
pub(super) use headline::headline;
use traces::Traces;
use xaxis::{range_over, shades, x_range};

/// Processes drawn per overview panel; more make the picture unreadable.
pub(super) const MAX_PROCESSES: usize = 6;
/// Focus panels at most.
pub(super) const MAX_FOCUS: usize = 3;
/// Points per drawn line; longer series are reduced to a min/max envelope.
const MAX_POINTS: usize = 2000;
/// A panel whose lines all moved less than this during the measured requests is collapsed.
pub(super) const FLAT_BYTES: f64 = 64.0 * 1024.0;

/// Colours of the per-process lines (Tableau 10, minus the reds and oranges kept for leaks and
/// undecided metrics, and the grey).
pub(crate) const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];
pub(crate) const LEAK_RED: RGBColor = RGBColor(200, 30, 30);
pub(super) const PASS_GREEN: RGBColor = RGBColor(30, 130, 50);
pub(crate) const UNSURE_ORANGE: RGBColor = RGBColor(215, 110, 0);
/// The seed tool's colours: current memory in blue, the peak dashed in orange.
pub(super) const CURRENT_BLUE: RGBColor = RGBColor(31, 119, 180);
pub(super) const PEAK_ORANGE: RGBColor = RGBColor(255, 127, 14);

/// What is drawn.
pub(super) struct Figure {
    pub(super) title: String,
    pub(super) headline: Option<(String, RGBColor)>,
    pub(super) details: Vec<String>,
    pub(super) x: XAxis,
    pub(super) shades: Vec<Shade>,
    pub(super) focus: Vec<Focus>,
    pub(super) panels: Vec<Panel>,
    /// One line per panel left out because nothing moved in it.
    pub(super) collapsed: Vec<String>,
}

/// The shared x axis.
pub(super) struct XAxis {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) label: String,
    /// Requests (else seconds).
    pub(super) by_request: bool,
}

/// A shaded stretch of the x axis.
pub(super) struct Shade {
    pub(super) from: f64,
    pub(super) to: f64,
    pub(super) kind: ShadeKind,
    /// The key's text (`warm-up: 5 requests, 0.6 s`).
    pub(super) label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ShadeKind {
    Warmup,
    Extension,
    Idle,
    Cooldown,
}

/// Divisor and name of the unit a panel's axis shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scale {
    pub(crate) div: f64,
    pub(crate) name: &'static str,
}

impl Scale {
    /// The unit in which `max_abs` bytes read as a number of at least about 2.
    pub(crate) fn for_bytes(max_abs: f64) -> Self {
        let (div, name) = if max_abs >= 2.0 * GIB {
            (GIB, "GiB")
        } else if max_abs >= 2.0 * MIB {
            (MIB, "MiB")
        } else if max_abs >= 2.0 * KIB {
            (KIB, "KiB")
        } else {
            (1.0, "B")
        };
        Self { div, name }
    }
}

/// One decisive metric on its own scale.
pub(super) struct Focus {
    /// `host.rss@scheduler (pid 944)`.
    pub(super) title: String,
    pub(super) outcome: Outcome,
    /// Absolute value at growth 0 (the first measured request).
    pub(super) origin: f64,
    /// (x, growth in bytes).
    pub(super) points: Vec<(f64, f64)>,
    pub(super) trend: Option<Trend>,
    /// Highest value over the judged window, as growth.
    pub(super) peak: Option<f64>,
    /// (from x, level as growth) of a plateau.
    pub(super) plateau: Option<(f64, f64)>,
    /// The summary box: (name, value, colour of the value).
    pub(super) summary: Vec<(String, String, RGBColor)>,
}

/// The fitted line over the judged window and its interval: lines through the pivot with the
/// interval's slopes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Trend {
    pub(super) x0: f64,
    pub(super) x1: f64,
    /// Pivot (x, growth): the window's middle.
    pub(super) xp: f64,
    pub(super) yp: f64,
    pub(super) slope: f64,
    pub(super) lo: f64,
    pub(super) hi: f64,
    /// `95 %`.
    pub(super) level: f64,
}

impl Trend {
    pub(super) fn at(&self, x: f64, slope: f64) -> f64 {
        self.yp + slope * (x - self.xp)
    }
}

/// One kind of memory, every process on one axis.
pub(super) struct Panel {
    pub(super) title: String,
    pub(super) lines: Vec<Line>,
    /// Processes left out to keep the panel readable.
    pub(super) hidden: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Emphasis {
    /// A tree or device total: black, bold.
    Total,
    /// A judged metric that leaks: red, bold.
    Leak,
    /// A judged metric still undecided: orange, bold.
    Undecided,
    Plain,
}

pub(super) struct Line {
    /// The metric drawn.
    pub(super) metric: String,
    /// `scheduler (pid 944)`.
    pub(super) label: String,
    /// `2.00 GiB, +100 MiB`: size at the first measured request, growth to the last.
    pub(super) detail: String,
    /// (x, growth in bytes), finite values only.
    pub(super) points: Vec<(f64, f64)>,
    pub(super) color: RGBColor,
    pub(super) emphasis: Emphasis,
}

impl Line {
    pub(super) fn width(&self) -> u32 {
        match self.emphasis {
            Emphasis::Plain => 2,
            _ => 3,
        }
    }

    pub(super) fn tag(&self) -> &'static str {
        match self.emphasis {
            Emphasis::Leak => " [LEAK]",
            Emphasis::Undecided => " [undecided]",
            _ => "",
        }
    }
}

impl Figure {
    pub(super) fn new(input: &PlotInput<'_>) -> Self {
        let timeline = input.timeline;
        let verdict = input.verdict;
        let keys = process_keys(timeline);
        let requests = timeline
            .per_request
            .values()
            .map(|b| b.readings)
            .max()
            .unwrap_or(0);
        let traces = Traces {
            timeline,
            map: XMap::new(timeline, requests),
        };
        let judged = |metric: &str| -> Option<&MetricAnalysis> {
            verdict.and_then(|v| v.metrics.iter().find(|m| m.judged && m.metric == metric))
        };
        let emphasis_of = |metric: &str, total: bool| match judged(metric).map(|m| m.outcome) {
            Some(Outcome::Leak) => Emphasis::Leak,
            Some(Outcome::Inconclusive) => Emphasis::Undecided,
            _ if total => Emphasis::Total,
            _ => Emphasis::Plain,
        };
        let name_of = |metric: &str| -> String {
            match crate::tracker::metric::pid_of(metric) {
                Some(pid) => format!(
                    "{} (pid {pid})",
                    keys.get(&pid).map_or("process", String::as_str)
                ),
                None => String::new(),
            }
        };
        let line = |metric: &str, label: String, total: bool| -> Option<Line> {
            let pts = traces.absolute(metric);
            let origin = traces.origin(metric, &pts)?;
            let last = traces.last_measured(metric, &pts).unwrap_or(origin);
            Some(Line {
                metric: metric.to_owned(),
                label,
                detail: format!("{}, {}", human_bytes(origin), signed_bytes(last - origin)),
                points: pts.into_iter().map(|(x, v)| (x, v - origin)).collect(),
                color: BLACK,
                emphasis: emphasis_of(metric, total),
            })
        };
        let processes = |prefix: &str| -> (Vec<Line>, usize, Vec<f64>) {
            let mut lines: Vec<(Line, f64)> = timeline
                .series
                .keys()
                .filter(|name| name.starts_with(prefix))
                .filter_map(|name| {
                    let l = line(name, name_of(name), false)?;
                    let size = timeline.series[name]
                        .points
                        .iter()
                        .map(|p| p.v)
                        .fold(0.0, f64::max);
                    Some((l, size))
                })
                .collect();
            // A leaking or undecided process is always drawn, however small: it is the point.
            lines.sort_by(|a, b| {
                let rank = |l: &Line| l.emphasis == Emphasis::Plain;
                rank(&a.0).cmp(&rank(&b.0)).then(b.1.total_cmp(&a.1))
            });
            let hidden = lines.len().saturating_sub(MAX_PROCESSES);
            lines.truncate(MAX_PROCESSES);
            let sizes = lines.iter().map(|l| l.1).collect();
            (lines.into_iter().map(|l| l.0).collect(), hidden, sizes)
        };

        let mut panels = Vec::new();
        let (procs, hidden, _) = processes("host.rss@pid:");
        let mut host: Vec<Line> = line("host.rss@tree", "whole tree".into(), true)
            .into_iter()
            .collect();
        host.extend(procs);
        panels.push(Panel::new(
            "host memory (RSS): growth since the first measured request",
            host,
            hidden,
        ));

        let mut gpu: Vec<Line> = timeline
            .series
            .keys()
            .filter_map(|name| {
                let dev = name.strip_prefix("gpu.used@dev:")?;
                line(name, format!("GPU {dev} used (all processes)"), false)
            })
            .collect();
        gpu.extend(line("gpu.proc@tree", "whole tree on GPU".into(), true));
        let (gpu_procs, hidden, _) = processes("gpu.proc@pid:");
        gpu.extend(gpu_procs);
        panels.push(Panel::new(
            "GPU memory: growth since the first measured request",
            gpu,
            hidden,
        ));

        let shm = line("shm.bytes", "/dev/shm allocated".into(), true);
        panels.push(Panel::new(
            "/dev/shm: growth since the first measured request",
            shm.into_iter().collect(),
            0,
        ));
        panels.retain(|p| !p.lines.is_empty());

        let mut collapsed = Vec::new();
        let by_request = traces.map.is_some();
        // Flat: every line moved less than the growth that could count as a leak for it (its
        // rule's floor, 2 MiB for host memory), and at least less than FLAT_BYTES.
        let floor = |metric: &str| {
            verdict
                .and_then(|v| v.thresholds.rule_for(metric))
                .map_or(FLAT_BYTES, |r| r.min_growth.max(FLAT_BYTES))
        };
        panels.retain(|p| {
            let moved = p.lines.iter().any(|l| {
                l.emphasis == Emphasis::Leak
                    || l.emphasis == Emphasis::Undecided
                    || range_over(&l.points, by_request) >= floor(&l.metric)
            });
            if !moved {
                let short = p.title.split(':').next().unwrap_or(&p.title);
                let sizes: Vec<String> = p
                    .lines
                    .iter()
                    .take(3)
                    .map(|l| format!("{} {}", l.label, l.detail.split(',').next().unwrap_or("")))
                    .collect();
                let moved = p
                    .lines
                    .iter()
                    .map(|l| range_over(&l.points, by_request))
                    .fold(0.0, f64::max);
                collapsed.push(format!(
                    "{short}: flat during the measured requests (moved at most {}, under the growth that can count as a leak): {}",
                    human_bytes(moved),
                    sizes.join(", ")
                ));
            }
            moved
        });

        let focus = focus_metrics(input, &keys)
            .into_iter()
            .filter_map(|m| Focus::new(m, input, &traces, &keys))
            .collect::<Vec<_>>();

        let (x_lo, x_hi) = x_range(&panels, &focus, &traces);
        let shades = shades(input, &traces, x_hi);
        let x = XAxis {
            lo: x_lo,
            hi: x_hi,
            label: match &traces.map {
                Some(map) => format!(
                    "measured request ({} in {:.1} s; before and after them, time at the same pace)",
                    map.requests,
                    (map.measure.1 - map.measure.0) / 1e6
                ),
                None => "seconds since start".into(),
            },
            by_request,
        };
        let (headline, details) = verdict.map_or((None, Vec::new()), |v| {
            let (h, d) = headline(v, &keys);
            (Some(h), d)
        });
        Self {
            title: input.title.to_owned(),
            headline,
            details,
            x,
            shades,
            focus,
            panels,
            collapsed,
        }
    }
}

impl Panel {
    fn new(title: &str, mut lines: Vec<Line>, hidden: usize) -> Self {
        let mut colors = PALETTE.iter().cycle();
        for line in &mut lines {
            line.color = match line.emphasis {
                Emphasis::Leak => LEAK_RED,
                Emphasis::Undecided => UNSURE_ORANGE,
                Emphasis::Total => BLACK,
                Emphasis::Plain => *colors.next().unwrap_or(&BLACK),
            };
        }
        Self {
            title: title.to_owned(),
            lines,
            hidden,
        }
    }

    /// Y range (growth bytes) over the measured requests and after, padded.
    pub(super) fn y_range(&self, by_request: bool) -> (f64, f64) {
        let values = self
            .lines
            .iter()
            .flat_map(|l| &l.points)
            .filter(|p| !by_request || p.0 >= 0.0)
            .map(|p| p.1)
            .chain([0.0]);
        pad(values)
    }
}

/// (lo, hi) of `values`, padded so lines do not sit on the frame; never an empty range.
fn pad(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !(lo.is_finite() && hi.is_finite()) {
        return (-1.0, 1.0);
    }
    let span = (hi - lo).max(KIB);
    (lo - span * 0.08, hi + span * 0.12)
}

/// `+0.98 .. +1.02 MiB`: see [`crate::util::byte_interval`].
pub(super) fn interval(lo: f64, hi: f64) -> String {
    crate::util::byte_interval(lo, hi)
}

pub(super) fn outcome_color(o: Outcome) -> RGBColor {
    match o {
        Outcome::Leak => LEAK_RED,
        Outcome::Pass => PASS_GREEN,
        Outcome::Inconclusive => UNSURE_ORANGE,
    }
}

/// Reduce a long series to per-bucket min and max, in x order: the envelope (and any spike)
/// survives, the SVG stays small.
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
