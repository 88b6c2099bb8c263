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
use crate::util::{human_bytes, signed_bytes};

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

/// A metric's trace on the x axis: readings mapped by time outside the measured phase, the
/// per-request values inside it.
struct Traces<'a> {
    timeline: &'a Timeline,
    map: Option<XMap>,
}

impl Traces<'_> {
    fn absolute(&self, metric: &str) -> Vec<(f64, f64)> {
        let series = self.timeline.series.get(metric);
        let readings = series.into_iter().flat_map(|s| &s.points);
        let Some(map) = &self.map else {
            let pts = readings
                .filter(|p| p.v.is_finite())
                .map(|p| (p.t_us as f64 / 1e6, p.v))
                .collect();
            return decimate(pts, MAX_POINTS);
        };
        let per_request = self.timeline.per_request.get(metric);
        let mut before = Vec::new();
        let mut inside = Vec::new();
        let mut after = Vec::new();
        for p in readings.filter(|p| p.v.is_finite()) {
            let t = p.t_us as f64;
            if map.inside_measure(t) {
                inside.push((map.x(t), p.v));
            } else if t < map.measure.0 {
                before.push((map.x(t), p.v));
            } else {
                after.push((map.x(t), p.v));
            }
        }
        // The per-request values where the metric has them (what the verdict judged), else its
        // readings placed by time.
        let measured: Vec<(f64, f64)> = match per_request {
            Some(b) => {
                b.x.iter()
                    .zip(&b.y)
                    .filter(|(_, y)| y.is_finite())
                    .map(|(&x, &y)| (x, y))
                    .collect()
            }
            None => inside,
        };
        if measured.is_empty() && before.is_empty() && after.is_empty() {
            return Vec::new();
        }
        let mut pts = decimate(before, MAX_POINTS / 4);
        pts.extend(decimate(measured, MAX_POINTS));
        pts.extend(decimate(after, MAX_POINTS / 4));
        pts
    }

    /// The value at the first measured request (median of the first three), else the first.
    fn origin(&self, metric: &str, pts: &[(f64, f64)]) -> Option<f64> {
        let first: Vec<f64> = self
            .timeline
            .per_request
            .get(metric)
            .map(|b| {
                b.y.iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .take(3)
                    .collect()
            })
            .unwrap_or_default();
        if first.is_empty() {
            return pts.first().map(|p| p.1);
        }
        let mut sorted = first;
        sorted.sort_by(f64::total_cmp);
        Some(sorted[sorted.len() / 2])
    }

    /// The last per-request value (the end of the measured requests), else the last reading.
    fn last_measured(&self, metric: &str, pts: &[(f64, f64)]) -> Option<f64> {
        self.timeline
            .per_request
            .get(metric)
            .and_then(|b| b.y.iter().rev().copied().find(|v| v.is_finite()))
            .or_else(|| pts.last().map(|p| p.1))
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

/// Largest minus smallest growth over the measured requests and after (or the whole line when
/// drawn against time).
fn range_over(points: &[(f64, f64)], by_request: bool) -> f64 {
    let (lo, hi) = points
        .iter()
        .filter(|p| !by_request || p.0 >= 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    if hi >= lo { hi - lo } else { 0.0 }
}

fn x_range(panels: &[Panel], focus: &[Focus], traces: &Traces<'_>) -> (f64, f64) {
    let xs = panels
        .iter()
        .flat_map(|p| &p.lines)
        .flat_map(|l| &l.points)
        .chain(focus.iter().flat_map(|f| &f.points))
        .map(|p| p.0);
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    let last_mark = traces
        .timeline
        .phases
        .iter()
        .map(|p| p.to_us as f64)
        .fold(0.0, f64::max);
    let (lo, hi) = match &traces.map {
        // Before the warm-up (the server starting, a slow first request) only the level
        // matters: a few requests' worth of it, not minutes at the measured pace.
        Some(map) => {
            let warmup = traces.timeline.requests_in(Phase::Warmup) as f64;
            let floor = -(warmup + (0.05 * map.requests as f64).max(2.0));
            (lo.max(floor), hi.max(map.x(last_mark)))
        }
        None => (lo, hi.max(last_mark / 1e6)),
    };
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

fn shades(input: &PlotInput<'_>, traces: &Traces<'_>, x_hi: f64) -> Vec<Shade> {
    let tl = traces.timeline;
    let pos = |t_us: u64| match &traces.map {
        Some(map) => map.x(t_us as f64),
        None => t_us as f64 / 1e6,
    };
    let mut out = Vec::new();
    for (phase, kind) in [
        (Phase::Warmup, ShadeKind::Warmup),
        (Phase::Idle, ShadeKind::Idle),
        (Phase::Cooldown, ShadeKind::Cooldown),
    ] {
        let Some((from, to)) = tl.phase_range(phase) else {
            continue;
        };
        let last_reading = tl
            .series
            .values()
            .filter_map(|s| s.points.last())
            .map(|p| p.t_us)
            .max()
            .unwrap_or(from);
        let end_us = if to == u64::MAX {
            last_reading.max(tl.phase(phase).map_or(from, |p| p.to_us))
        } else {
            to
        };
        let secs = end_us.saturating_sub(from) as f64 / 1e6;
        // An open phase (the last) runs to the end of the data.
        let (a, b) = (
            pos(from),
            if to == u64::MAX {
                x_hi
            } else {
                pos(to).min(x_hi)
            },
        );
        if b <= a {
            continue;
        }
        let label = match kind {
            ShadeKind::Warmup => {
                format!("warm-up: {} requests, {secs:.1} s", tl.requests_in(phase))
            }
            ShadeKind::Idle => format!("idle: no requests, {secs:.1} s"),
            _ => format!("cooldown: flush and settle, {secs:.1} s"),
        };
        out.push(Shade {
            from: a,
            to: b,
            kind,
            label,
        });
    }
    if let (Some(planned), Some(map)) = (input.planned_requests, &traces.map)
        && map.requests > planned
    {
        out.push(Shade {
            from: planned as f64 - 0.5,
            to: map.x(map.measure.1) + 0.5,
            kind: ShadeKind::Extension,
            label: format!(
                "adaptive extension: requests {planned}–{} (ran on past the planned {planned})",
                map.requests - 1
            ),
        });
    }
    out
}

/// The metrics that decided the run: leaking, then undecided; else plateaus; else the tree.
fn focus_metrics<'a>(
    input: &PlotInput<'a>,
    _keys: &BTreeMap<u32, String>,
) -> Vec<&'a MetricAnalysis> {
    let Some(v) = input.verdict else {
        return Vec::new();
    };
    let bytes = |m: &&MetricAnalysis| {
        m.judged
            && m.unit == crate::tracker::Unit::Bytes
            && input.timeline.per_request.contains_key(&m.metric)
    };
    let mut chosen: Vec<&MetricAnalysis> = v
        .metrics
        .iter()
        .filter(bytes)
        .filter(|m| m.outcome != Outcome::Pass)
        .collect();
    chosen.sort_by_key(|m| std::cmp::Reverse(m.outcome));
    if chosen.is_empty() {
        chosen = v
            .metrics
            .iter()
            .filter(bytes)
            .filter(|m| m.plateau.is_some())
            .collect();
    }
    if chosen.is_empty() {
        chosen = ["host.rss@tree", "gpu.proc@tree"]
            .iter()
            .filter_map(|name| v.metrics.iter().filter(bytes).find(|m| m.metric == *name))
            .take(1)
            .collect();
    }
    chosen.truncate(MAX_FOCUS);
    chosen
}

impl Focus {
    fn new(
        m: &MetricAnalysis,
        input: &PlotInput<'_>,
        traces: &Traces<'_>,
        keys: &BTreeMap<u32, String>,
    ) -> Option<Self> {
        let pts = traces.absolute(&m.metric);
        let origin = traces.origin(&m.metric, &pts)?;
        let growth: Vec<(f64, f64)> = pts.iter().map(|&(x, v)| (x, v - origin)).collect();
        let name = relabel(&m.metric, keys);
        let title = match crate::tracker::metric::pid_of(&m.metric) {
            Some(pid) => format!("{name} (pid {pid})"),
            None => name,
        };
        let trend = trend(m, traces.timeline, origin);
        let color = outcome_color(m.outcome);
        let fmt_slope = |v: f64| format!("{}/req", signed_bytes(v));
        let mut summary = vec![
            ("initial".to_owned(), human_bytes(origin), BLACK),
            (
                "final".to_owned(),
                human_bytes(traces.last_measured(&m.metric, &pts).unwrap_or(m.last)),
                BLACK,
            ),
            ("peak".to_owned(), human_bytes(m.peak), PEAK_ORANGE),
            (
                "growth, judged".to_owned(),
                format!("{} over {} req", signed_bytes(m.growth), m.requests),
                BLACK,
            ),
        ];
        if let Some(s) = m.slope {
            summary.push(("slope".to_owned(), fmt_slope(s.point), color));
            summary.push((
                format!("{:.0} % interval", s.ci.level * 100.0),
                interval(s.ci.lo, s.ci.hi),
                color,
            ));
        }
        let rule = input.verdict.and_then(|v| v.thresholds.rule_for(&m.metric));
        if let Some(rule) = rule {
            summary.push((
                "limit".to_owned(),
                format!(
                    "{} (floor {})",
                    fmt_slope(rule.max_slope_per_request),
                    human_bytes(rule.min_growth)
                ),
                BLACK,
            ));
        }
        let verdict = match (m.outcome, &m.plateau) {
            (Outcome::Pass, Some(p)) => format!("PASS: plateau since req {}", p.since_request),
            (Outcome::Pass, None) => "PASS".to_owned(),
            (Outcome::Leak, _) => "LEAK".to_owned(),
            (Outcome::Inconclusive, _) => match m.requests_to_decide {
                Some(n) => format!("UNDECIDED: ~{n} requests would decide"),
                None => "UNDECIDED".to_owned(),
            },
        };
        summary.push(("verdict".to_owned(), verdict, color));
        if let Some(b) = m.seed_band {
            summary.push((
                "seed band".to_owned(),
                format!("{b:?}").to_lowercase(),
                BLACK,
            ));
        }
        if let Some(n) = m.requests_to_oom.filter(|n| n.is_finite() && *n > 0.0) {
            summary.push((
                "out of memory in".to_owned(),
                format!("~{} req", crate::util::human_count(n)),
                BLACK,
            ));
        }
        let judged = |x: f64| x >= m.warmup_cut as f64;
        let peak = growth
            .iter()
            .filter(|p| {
                judged(p.0)
                    && p.0
                        < traces
                            .map
                            .as_ref()
                            .map_or(f64::INFINITY, |map| map.requests as f64)
            })
            .map(|p| p.1)
            .fold(f64::NEG_INFINITY, f64::max);
        let plateau = m
            .plateau
            .map(|p| (p.since_request as f64, p.level - origin));
        Some(Self {
            title,
            outcome: m.outcome,
            origin,
            points: growth,
            trend,
            peak: peak.is_finite().then_some(peak),
            plateau: plateau.filter(|p| p.1.is_finite()),
            summary,
        })
    }

    /// Y range (growth bytes) over the measured requests and after: the warm-up may start far
    /// below and is clipped, not allowed to flatten the rest.
    pub(super) fn y_range(&self) -> (f64, f64) {
        let mut values: Vec<f64> = self
            .points
            .iter()
            .filter(|p| p.0 >= 0.0)
            .map(|p| p.1)
            .collect();
        if let Some(t) = self.trend {
            values.extend([
                t.at(t.x0, t.lo),
                t.at(t.x0, t.hi),
                t.at(t.x1, t.lo),
                t.at(t.x1, t.hi),
            ]);
        }
        values.extend(self.peak);
        values.push(0.0);
        pad(values.into_iter())
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

/// The fitted line of the judged window: the slope through the window's median point (as
/// Theil–Sen's intercept), with the interval's slopes through the same pivot.
fn trend(m: &MetricAnalysis, timeline: &Timeline, origin: f64) -> Option<Trend> {
    let s = m.slope?;
    let b = timeline.per_request.get(&m.metric)?;
    let window: Vec<(f64, f64)> =
        b.x.iter()
            .zip(&b.y)
            .filter(|(x, y)| **x >= m.warmup_cut as f64 && y.is_finite())
            .map(|(&x, &y)| (x, y - origin))
            .collect();
    let (x0, x1) = (window.first()?.0, window.last()?.0);
    if x1 <= x0 {
        return None;
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let xp = median(window.iter().map(|p| p.0).collect());
    let intercept = median(window.iter().map(|p| p.1 - s.point * p.0).collect());
    Some(Trend {
        x0,
        x1,
        xp,
        yp: intercept + s.point * xp,
        slope: s.point,
        lo: s.ci.lo,
        hi: s.ci.hi,
        level: s.ci.level,
    })
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

/// `LEAK: host.rss@scheduler +1.0 MiB/request [+0.98 MiB .. +1.02 MiB]` / `PASS: …` /
/// `INCONCLUSIVE: …`, and up to two reasons, processes named by role.
pub(super) fn headline(
    verdict: &crate::analysis::Verdict,
    keys: &BTreeMap<u32, String>,
) -> ((String, RGBColor), Vec<String>) {
    let judged: Vec<&MetricAnalysis> = verdict.metrics.iter().filter(|m| m.judged).collect();
    let describe = |m: &MetricAnalysis| {
        let slope = m
            .slope
            .map(|s| {
                format!(
                    " {}/request [{}]",
                    signed_bytes(s.point),
                    interval(s.ci.lo, s.ci.hi)
                )
            })
            .unwrap_or_else(|| format!(" {} over the run", signed_bytes(m.growth)));
        format!("{}{slope}", relabel(&m.metric, keys))
    };
    let worst: Vec<&&MetricAnalysis> = judged
        .iter()
        .filter(|m| m.outcome == verdict.outcome)
        .collect();
    let more = match worst.len() {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    let head = match verdict.outcome {
        Outcome::Leak => match worst.first() {
            Some(m) => format!("LEAK: {}{more}", describe(m)),
            None => "LEAK".to_owned(),
        },
        Outcome::Inconclusive => match worst.first() {
            Some(m) => format!("INCONCLUSIVE: {}{more}", describe(m)),
            None => "INCONCLUSIVE: nothing was judged".to_owned(),
        },
        Outcome::Pass => {
            let plateaus: Vec<String> = judged
                .iter()
                .filter(|m| m.plateau.is_some())
                .map(|m| relabel(&m.metric, keys))
                .collect();
            if plateaus.is_empty() {
                format!("PASS: {} judged metrics within their limits", judged.len())
            } else {
                format!(
                    "PASS: {} judged metrics within their limits; bounded growth in {}",
                    judged.len(),
                    plateaus.join(", ")
                )
            }
        }
    };
    let details = verdict
        .reasons
        .iter()
        .take(2)
        .map(|r| relabel(r, keys))
        .collect();
    ((head, outcome_color(verdict.outcome)), details)
}
