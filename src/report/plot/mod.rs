//! PNG and SVG plots of a run: memory over time, one panel per kind of memory.
//!
//! The figure has up to three stacked panels sharing the x axis (seconds since the tracker
//! started): host RSS of the tree and its largest processes, GPU memory (when the tracker saw a
//! GPU), and `/dev/shm` (when sampled). Warm-up and cooldown are shaded; the verdict heads the
//! figure. Both files are written atomically (temp file + rename), so a reader never sees half
//! a plot.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (`assets/fonts/`): plotters' system
//! font lookup needs fontconfig and installed fonts, which CI images and GPU runners lack.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::analysis::{MetricAnalysis, Outcome, Verdict};
use crate::tracker::{Phase, Timeline};
use crate::util::signed_bytes;

/// Size of the figure in pixels (PNG) and user units (SVG).
const SIZE: (u32, u32) = (1600, 1000);
/// Width of the legend column to the right of each panel: labels never cover the data.
const LEGEND_WIDTH: u32 = 400;
/// Processes drawn per panel; more make the picture unreadable.
const MAX_PROCESSES: usize = 6;
/// Points per drawn line; longer series are reduced to a min/max envelope.
const MAX_POINTS: usize = 2000;
/// Font family every text of the figure asks for (registered from the embedded file).
const FAMILY: &str = "sans-serif";
static FONT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/fonts/DejaVuSans.ttf"
));

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

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
const LEAK_RED: RGBColor = RGBColor(200, 30, 30);
const PASS_GREEN: RGBColor = RGBColor(30, 130, 50);
const UNSURE_ORANGE: RGBColor = RGBColor(200, 110, 0);

/// Why the plots could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The file stem would escape the output directory or is empty.
    #[error("invalid plot file name `{stem}`: use a plain name without `/`")]
    InvalidStem {
        /// The stem that was given.
        stem: String,
    },
    /// The embedded font did not parse (a corrupt `assets/fonts/DejaVuSans.ttf`).
    #[error("failed to load the embedded plot font assets/fonts/DejaVuSans.ttf")]
    Font,
    /// The output directory could not be created.
    #[error("failed to create plot directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Plotters failed while drawing (its errors are backend-specific, kept as text).
    #[error("failed to draw plot {path}: {message}")]
    Draw {
        /// The file being drawn.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
    /// The bitmap could not be encoded as PNG.
    #[error("failed to encode plot {path} as png")]
    Encode {
        /// The PNG file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: png::EncodingError,
    },
    /// The file could not be written or moved into place.
    #[error("failed to write plot {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The files written by [`write_plots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotFiles {
    /// `<dir>/<stem>.png`.
    pub png: PathBuf,
    /// `<dir>/<stem>.svg`.
    pub svg: PathBuf,
}

/// Write `<stem>.png` and `<stem>.svg` into `dir` (created if missing): memory over time,
/// phases shaded, the verdict (when given) in the heading.
///
/// A timeline without memory series still gives a figure, one that says "no data".
///
/// # Errors
///
/// [`PlotError`] when `stem` is not a plain file name, the directory cannot be created, the
/// embedded font is corrupt, or a file cannot be drawn, encoded or written.
pub fn write_plots(
    timeline: &Timeline,
    verdict: Option<&Verdict>,
    title: &str,
    dir: &Path,
    stem: &str,
) -> Result<PlotFiles, PlotError> {
    if stem.is_empty() || stem.contains(['/', '\\']) || stem == "." || stem == ".." {
        return Err(PlotError::InvalidStem {
            stem: stem.to_owned(),
        });
    }
    register_font()?;
    std::fs::create_dir_all(dir).map_err(|source| PlotError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let figure = Figure::new(timeline, verdict, title);
    let files = PlotFiles {
        png: dir.join(format!("{stem}.png")),
        svg: dir.join(format!("{stem}.svg")),
    };

    let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        draw(&root, &figure)
            .and_then(|()| root.present())
            .map_err(|e| PlotError::Draw {
                path: files.png.clone(),
                message: e.to_string(),
            })?;
    }
    let png = encode_png(&rgb, SIZE).map_err(|source| PlotError::Encode {
        path: files.png.clone(),
        source,
    })?;
    write_atomic(&files.png, &png)?;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, &figure)
            .and_then(|()| root.present())
            .map_err(|e| PlotError::Draw {
                path: files.svg.clone(),
                message: e.to_string(),
            })?;
    }
    write_atomic(&files.svg, svg.as_bytes())?;
    Ok(files)
}

/// Register the embedded font once per process; plotters keeps it in a global table.
fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    crate::util::write_atomic(path, bytes).map_err(|source| PlotError::Write {
        path: path.to_owned(),
        source,
    })
}

/// What is drawn, decided before drawing so that PNG and SVG show the same thing.
struct Figure {
    title: String,
    headline: Option<(String, RGBColor)>,
    details: Vec<String>,
    panels: Vec<Panel>,
    shades: Vec<(f64, f64, &'static str)>,
    x_max: f64,
}

struct Panel {
    title: &'static str,
    /// Divisor and name of the unit shown: MiB, or GiB above 4 GiB.
    unit: (f64, &'static str),
    lines: Vec<Line>,
    /// Processes left out to keep the panel readable.
    hidden: usize,
}

struct Line {
    label: String,
    /// (seconds, bytes), finite values only.
    points: Vec<(f64, f64)>,
    color: RGBColor,
    bold: bool,
    leak: bool,
}

impl Figure {
    fn new(timeline: &Timeline, verdict: Option<&Verdict>, title: &str) -> Self {
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
            .marks
            .iter()
            .map(|m| m.t_us as f64 / 1e6)
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
    fn y_range(&self) -> (f64, f64) {
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

fn shade_color(phase_label: &str) -> RGBAColor {
    let base = if phase_label == "warm-up" {
        RGBColor(255, 190, 60)
    } else {
        RGBColor(110, 160, 230)
    };
    base.mix(0.2)
}

fn peak(line: &Line) -> f64 {
    line.points
        .iter()
        .map(|&(_, v)| v)
        .fold(f64::NEG_INFINITY, f64::max)
}

/// Reduce a long series to per-bucket min and max, in time order: the envelope (and any
/// spike) survives, the SVG stays small.
fn decimate(points: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
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
fn headline(verdict: &Verdict, timeline: &Timeline) -> ((String, RGBColor), Vec<String>) {
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

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn font(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// Shorten `text` with "…" until it fits `width` pixels.
fn fit<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
    width: u32,
) -> String {
    let fits = |s: &str| {
        area.estimate_text_size(s, style)
            .map_or(true, |(w, _)| w <= width)
    };
    if fits(text) {
        return text.to_owned();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let candidate: String = chars.iter().chain(['…'].iter()).collect();
        if fits(&candidate) {
            return candidate;
        }
    }
    String::new()
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (width, _) = root.dim_in_pixel();
    let header_height = 56 + if fig.headline.is_some() { 40 } else { 0 } + 26 * fig.details.len();
    let (header, body) = root.split_vertically(header_height as u32);

    // The title and headline stop short of the phase key on the right.
    let text_width = width.saturating_sub(LEGEND_WIDTH + 40);
    let title_style = font(30);
    header.draw(&Text::new(
        fit(&header, &fig.title, &title_style, text_width),
        (20, 14),
        title_style,
    ))?;
    let mut y = 56;
    if let Some((text, color)) = &fig.headline {
        let style = font(28).color(color);
        header.draw(&Text::new(
            fit(&header, text, &style, text_width),
            (20, y),
            style,
        ))?;
        y += 40;
    }
    for detail in &fig.details {
        let style = font(18).color(&RGBColor(60, 60, 60));
        header.draw(&Text::new(
            fit(&header, detail, &style, width - 40),
            (20, y),
            style,
        ))?;
        y += 26;
    }

    // The phase key sits at the top right, above the legend column: text over the data would
    // hide it, and the legends may need all their room.
    let key_x = width.saturating_sub(LEGEND_WIDTH) as i32 + 8;
    for (row, &(_, _, label)) in fig.shades.iter().enumerate() {
        let y = 14 + 26 * row as i32;
        header.draw(&Rectangle::new(
            [(key_x, y + 1), (key_x + 32, y + 17)],
            shade_color(label).filled(),
        ))?;
        let style = font(16).color(&RGBColor(90, 90, 90));
        header.draw(&Text::new(
            format!("{label} (shaded)"),
            (key_x + 40, y),
            style,
        ))?;
    }

    if fig.panels.is_empty() {
        let (w, h) = body.dim_in_pixel();
        let style = font(32).color(&RGBColor(120, 120, 120));
        let text = "no data: the timeline has no memory series";
        let (tw, _) = body.estimate_text_size(text, &style)?;
        let x = (w.saturating_sub(tw) / 2) as i32;
        return body.draw(&Text::new(text, (x, (h / 2) as i32), style));
    }
    let areas = body.split_evenly((fig.panels.len(), 1));
    for (i, (panel, area)) in fig.panels.iter().zip(&areas).enumerate() {
        let last = i + 1 == fig.panels.len();
        draw_panel(area, panel, fig, last)?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    fig: &Figure,
    last: bool,
) -> DrawResult<DB> {
    let (width, _) = area.dim_in_pixel();
    let (plot_area, legend) = area.split_horizontally(width.saturating_sub(LEGEND_WIDTH));
    let (y_lo, y_hi) = panel.y_range();
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(panel.title, font(22))
        .margin_left(10)
        .margin_right(20)
        .margin_bottom(if last { 6 } else { 2 })
        .x_label_area_size(if last { 56 } else { 30 })
        .y_label_area_size(100)
        .build_cartesian_2d(0.0..fig.x_max, y_lo..y_hi)?;
    let span = y_hi - y_lo;
    let decimals = if span < 1.0 {
        2
    } else if span < 10.0 {
        1
    } else {
        0
    };
    let y_fmt = |v: &f64| format!("{v:.decimals$}");
    // Short runs (the reference server, a demo) last seconds: whole seconds would repeat.
    let x_decimals = if fig.x_max < 10.0 { 1 } else { 0 };
    let x_fmt = |v: &f64| format!("{v:.x_decimals$}");
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(panel.unit.1)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt)
        .label_style(font(16))
        .axis_desc_style(font(18))
        .y_labels(6)
        .x_labels(12)
        .max_light_lines(1)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(215, 215, 215));
    if last {
        mesh.x_desc("seconds since start");
    }
    mesh.draw()?;

    for &(from, to, label) in &fig.shades {
        let shade = Rectangle::new([(from, y_lo), (to, y_hi)], shade_color(label).filled());
        chart.draw_series(std::iter::once(shade))?;
    }
    let unit = panel.unit.0;
    // Thin lines first, so the bold tree total stays on top.
    for line in panel
        .lines
        .iter()
        .filter(|l| !l.bold)
        .chain(panel.lines.iter().filter(|l| l.bold))
    {
        let color = if line.leak && !line.bold {
            LEAK_RED
        } else {
            line.color
        };
        let style = color.stroke_width(if line.bold { 3 } else { 2 });
        let points = line.points.iter().map(|&(t, v)| (t, v / unit));
        chart.draw_series(LineSeries::new(points, style))?;
    }

    // Legend in its own column: labels never cover the data, and long process names fit.
    // Rows shrink when a panel has many lines (an 8-GPU host), and what still does not fit is
    // counted rather than drawn over the next panel.
    let (_, height) = legend.dim_in_pixel();
    let top = 34;
    let available = height.saturating_sub(top);
    let rows = panel.lines.len() + usize::from(panel.hidden > 0);
    let row = (available / rows.max(1) as u32).clamp(14, 26);
    let fitting = (available / row) as usize;
    let shown = if rows > fitting {
        fitting.saturating_sub(1)
    } else {
        panel.lines.len()
    };
    let style = font((row - 8).clamp(11, 16));
    let grey = RGBColor(110, 110, 110);
    let mut y = top as i32;
    for line in &panel.lines[..shown.min(panel.lines.len())] {
        let color = if line.leak && !line.bold {
            LEAK_RED
        } else {
            line.color
        };
        let stroke = color.stroke_width(if line.bold { 4 } else { 2 });
        let mid = y + row as i32 / 2 - 4;
        legend.draw(&PathElement::new(vec![(8, mid), (40, mid)], stroke))?;
        let label = if line.leak {
            format!("{}  [LEAK]", line.label)
        } else {
            line.label.clone()
        };
        let label_style = if line.leak {
            style.color(&LEAK_RED)
        } else {
            style.clone()
        };
        let text = fit(&legend, &label, &label_style, LEGEND_WIDTH - 60);
        legend.draw(&Text::new(text, (48, y), label_style))?;
        y += row as i32;
    }
    let not_drawn = panel.hidden + panel.lines.len() - shown.min(panel.lines.len());
    if not_drawn > 0 {
        let text = format!("+{not_drawn} smaller processes not shown");
        legend.draw(&Text::new(text, (48, y), style.color(&grey)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
