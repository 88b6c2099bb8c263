//! Drawing a [`Figure`] with plotters: the PNG and SVG backends, the embedded font, the header,
//! the focus panels with their summary boxes, the overview panels with their legends, and PNG
//! encoding.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::PlotError;
use super::figure::{
    CURRENT_BLUE, Emphasis, Figure, Focus, PASS_GREEN, PEAK_ORANGE, Panel, Scale, ShadeKind,
    outcome_color,
};

/// Width of the figure in pixels (PNG) and user units (SVG); the height follows the panels.
pub(super) const WIDTH: u32 = 1600;
/// Width of the column to the right of each panel (legend or summary box): text never covers
/// the data.
const SIDE_WIDTH: u32 = 470;
/// Height of a focus panel and of an overview panel.
const FOCUS_HEIGHT: u32 = 330;
const PANEL_HEIGHT: u32 = 250;
/// Room for the x axis's description under the last panel, and per collapsed-panel line.
const AXIS_HEIGHT: u32 = 40;
const NOTE_HEIGHT: u32 = 24;
/// Font family every text of the figure asks for (registered from the embedded file).
const FAMILY: &str = "sans-serif";
static FONT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/fonts/DejaVuSans.ttf"
));

const GREY: RGBColor = RGBColor(90, 90, 90);

fn header_height(fig: &Figure) -> u32 {
    let text = 56 + if fig.headline.is_some() { 40 } else { 0 } + 26 * fig.details.len() as u32;
    let keys = 14 + 24 * fig.shades.len() as u32;
    text.max(keys) + 8
}

/// The figure's size in pixels.
pub(super) fn size(fig: &Figure) -> (u32, u32) {
    let panels = FOCUS_HEIGHT * fig.focus.len() as u32 + PANEL_HEIGHT * fig.panels.len() as u32;
    let body = if panels == 0 {
        400
    } else {
        panels + AXIS_HEIGHT
    };
    (
        WIDTH,
        header_height(fig) + body + NOTE_HEIGHT * fig.collapsed.len() as u32 + 8,
    )
}

/// The figure as PNG bytes (`path`: the file it is for, named in errors).
pub(super) fn png(figure: &Figure, path: &Path) -> Result<Vec<u8>, PlotError> {
    let dims = size(figure);
    let mut rgb = vec![0u8; dims.0 as usize * dims.1 as usize * 3];
    render(
        BitMapBackend::with_buffer(&mut rgb, dims).into_drawing_area(),
        figure,
        path,
    )?;
    encode_png(&rgb, dims).map_err(|source| PlotError::Encode {
        path: path.to_owned(),
        source,
    })
}

/// The figure as SVG text (`path`: the file it is for, named in errors).
pub(super) fn svg(figure: &Figure, path: &Path) -> Result<String, PlotError> {
    let mut svg = String::new();
    render(
        SVGBackend::with_string(&mut svg, size(figure)).into_drawing_area(),
        figure,
        path,
    )?;
    Ok(svg)
}

/// Draws `figure` on `root` and presents it (plotters' error kept as text, naming `path`).
fn render<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    figure: &Figure,
    path: &Path,
) -> Result<(), PlotError> {
    draw(&root, figure)
        .and_then(|()| root.present())
        .map_err(|e| PlotError::Draw {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

/// Register the embedded font once per process; plotters keeps it in a global table.
pub(crate) fn register_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(PlotError::Font) }
}

pub(crate) fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

fn shade_color(kind: ShadeKind) -> RGBAColor {
    let base = match kind {
        ShadeKind::Warmup => RGBColor(255, 190, 60),
        ShadeKind::Extension => RGBColor(170, 120, 220),
        ShadeKind::Idle => RGBColor(150, 150, 150),
        ShadeKind::Cooldown => RGBColor(110, 160, 230),
    };
    base.mix(0.2)
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

/// The points from the last one left of `lo` on, that one moved onto `lo`: the line enters the
/// panel at its edge instead of being drawn over the axis.
fn from_left(points: &[(f64, f64)], lo: f64) -> impl Iterator<Item = (f64, f64)> + '_ {
    let start = points.iter().rposition(|p| p.0 < lo).unwrap_or(0);
    points[start..].iter().map(move |&(x, y)| (x.max(lo), y))
}

/// Tick labels with enough decimals that neighbours differ.
fn decimals(span: f64) -> usize {
    if span < 0.1 {
        3
    } else if span < 1.0 {
        2
    } else if span < 10.0 {
        1
    } else {
        0
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let (width, _) = root.dim_in_pixel();
    let (header, body) = root.split_vertically(header_height(fig));

    let text_width = width.saturating_sub(SIDE_WIDTH + 40);
    let title_style = font(30);
    header.draw(&Text::new(
        fit(&header, &fig.title, &title_style, text_width),
        (20, 14),
        title_style,
    ))?;
    let mut y = 56;
    if let Some((text, color)) = &fig.headline {
        let style = font(26).color(color);
        header.draw(&Text::new(
            fit(&header, text, &style, text_width),
            (20, y),
            style,
        ))?;
        y += 40;
    }
    for detail in &fig.details {
        let style = font(17).color(&RGBColor(60, 60, 60));
        header.draw(&Text::new(
            fit(&header, detail, &style, text_width),
            (20, y),
            style,
        ))?;
        y += 26;
    }
    // The phase key sits at the top right, above the side column.
    let key_x = width.saturating_sub(SIDE_WIDTH) as i32 + 8;
    for (row, shade) in fig.shades.iter().enumerate() {
        let y = 14 + 24 * row as i32;
        header.draw(&Rectangle::new(
            [(key_x, y + 1), (key_x + 32, y + 17)],
            shade_color(shade.kind).filled(),
        ))?;
        let style = font(15).color(&GREY);
        let text = fit(&header, &shade.label, &style, SIDE_WIDTH - 56);
        header.draw(&Text::new(text, (key_x + 40, y), style))?;
    }

    if fig.focus.is_empty() && fig.panels.is_empty() {
        let (w, h) = body.dim_in_pixel();
        let style = font(32).color(&RGBColor(120, 120, 120));
        let text = "no data: the timeline has no memory series";
        let (tw, _) = body.estimate_text_size(text, &style)?;
        let x = (w.saturating_sub(tw) / 2) as i32;
        body.draw(&Text::new(text, (x, (h / 3) as i32), style))?;
    } else {
        let count = fig.focus.len() + fig.panels.len();
        let mut rest = body;
        let mut index = 0;
        for focus in &fig.focus {
            index += 1;
            let last = index == count;
            let height = FOCUS_HEIGHT + if last { AXIS_HEIGHT } else { 0 };
            let (area, below) = rest.split_vertically(height);
            draw_focus(&area, focus, fig, last)?;
            rest = below;
        }
        for panel in &fig.panels {
            index += 1;
            let last = index == count;
            let height = PANEL_HEIGHT + if last { AXIS_HEIGHT } else { 0 };
            let (area, below) = rest.split_vertically(height);
            draw_panel(&area, panel, fig, last)?;
            rest = below;
        }
        let mut y = 4;
        for note in &fig.collapsed {
            let style = font(16).color(&GREY);
            let text = fit(&rest, &format!("not drawn — {note}"), &style, width - 40);
            rest.draw(&Text::new(text, (20, y), style))?;
            y += NOTE_HEIGHT as i32;
        }
    }
    Ok(())
}

fn x_formatter(fig: &Figure) -> impl Fn(&f64) -> String {
    let by_request = fig.x.by_request;
    let time_decimals = if fig.x.hi - fig.x.lo < 10.0 { 1 } else { 0 };
    move |v: &f64| {
        if by_request {
            format!("{v:.0}")
        } else {
            format!("{v:.time_decimals$}")
        }
    }
}

fn draw_focus<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    focus: &Focus,
    fig: &Figure,
    last: bool,
) -> DrawResult<DB> {
    let (width, _) = area.dim_in_pixel();
    let (plot_area, side) = area.split_horizontally(width.saturating_sub(SIDE_WIDTH));
    let (y_lo, y_hi) = focus.y_range();
    let scale = Scale::for_bytes(y_lo.abs().max(y_hi.abs()));
    let abs = Scale::for_bytes((focus.origin + y_hi).abs().max((focus.origin + y_lo).abs()));
    let caption = format!("{} — growth since the first measured request", focus.title);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(
            fit(&plot_area, &caption, &font(21), width - SIDE_WIDTH - 40),
            font(21),
        )
        .margin_left(10)
        .margin_right(6)
        .margin_bottom(if last { 6 } else { 2 })
        .x_label_area_size(if last { 56 } else { 30 })
        .y_label_area_size(100)
        .right_y_label_area_size(84)
        .build_cartesian_2d(fig.x.lo..fig.x.hi, y_lo / scale.div..y_hi / scale.div)?
        .set_secondary_coord(
            fig.x.lo..fig.x.hi,
            (focus.origin + y_lo) / abs.div..(focus.origin + y_hi) / abs.div,
        );
    let d = decimals((y_hi - y_lo) / scale.div);
    let y_fmt = |v: &f64| format!("{v:+.d$}");
    let x_fmt = x_formatter(fig);
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(format!("growth, {}", scale.name))
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt)
        .label_style(font(15))
        .axis_desc_style(font(17))
        .y_labels(6)
        .x_labels(12)
        .max_light_lines(1)
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(220, 220, 220));
    if last {
        mesh.x_desc(fig.x.label.as_str());
    }
    mesh.draw()?;
    let ad = decimals((y_hi - y_lo) / abs.div);
    let abs_fmt = |v: &f64| format!("{v:.ad$}");
    chart
        .configure_secondary_axes()
        .y_desc(format!("absolute, {}", abs.name))
        .y_label_formatter(&abs_fmt)
        .label_style(font(15).color(&GREY))
        .axis_desc_style(font(17).color(&GREY))
        .y_labels(6)
        .draw()?;

    let (lo, hi) = (y_lo / scale.div, y_hi / scale.div);
    for shade in &fig.shades {
        let r = Rectangle::new(
            [(shade.from.max(fig.x.lo), lo), (shade.to, hi)],
            shade_color(shade.kind).filled(),
        );
        chart.draw_series(std::iter::once(r))?;
    }
    let color = outcome_color(focus.outcome);
    let clamp = |v: f64| (v / scale.div).clamp(lo, hi);
    if let Some(t) = focus.trend {
        let band = color.mix(0.18).filled();
        let left = vec![
            (t.x0, clamp(t.at(t.x0, t.lo))),
            (t.xp, clamp(t.yp)),
            (t.x0, clamp(t.at(t.x0, t.hi))),
        ];
        let right = vec![
            (t.xp, clamp(t.yp)),
            (t.x1, clamp(t.at(t.x1, t.hi))),
            (t.x1, clamp(t.at(t.x1, t.lo))),
        ];
        chart.draw_series([Polygon::new(left, band), Polygon::new(right, band)])?;
    }
    if let Some(t) = focus.trend {
        let line = [
            (t.x0, clamp(t.at(t.x0, t.slope))),
            (t.x1, clamp(t.at(t.x1, t.slope))),
        ];
        chart.draw_series(LineSeries::new(line, color.mix(0.75).stroke_width(5)))?;
    }
    // The readings on top of the trend, so both stay visible where they coincide.
    let points = from_left(&focus.points, fig.x.lo).map(|(x, v)| (x, clamp(v)));
    chart.draw_series(LineSeries::new(points, CURRENT_BLUE.stroke_width(2)))?;
    if let Some(peak) = focus.peak {
        chart.draw_series(DashedLineSeries::new(
            [(fig.x.lo, clamp(peak)), (fig.x.hi, clamp(peak))],
            10,
            6,
            PEAK_ORANGE.stroke_width(2),
        ))?;
    }
    if let Some((from, level)) = focus.plateau {
        chart.draw_series(DashedLineSeries::new(
            [(from, clamp(level)), (fig.x.hi, clamp(level))],
            4,
            4,
            PASS_GREEN.stroke_width(3),
        ))?;
    }
    summary_box(&side, focus)
}

/// The summary box beside a focus panel: the numbers, then what each line means.
fn summary_box<DB: DrawingBackend>(side: &DrawingArea<DB, Shift>, focus: &Focus) -> DrawResult<DB> {
    let (w, h) = side.dim_in_pixel();
    let (x0, y0) = (8, 34);
    let row = 21;
    let rows = focus.summary.len() as i32 + 4;
    let bottom = (y0 + 10 + row * rows).min(h as i32 - 4);
    side.draw(&Rectangle::new(
        [(x0, y0), (w as i32 - 10, bottom)],
        RGBColor(250, 250, 250).filled(),
    ))?;
    side.draw(&Rectangle::new(
        [(x0, y0), (w as i32 - 10, bottom)],
        RGBColor(190, 190, 190).stroke_width(1),
    ))?;
    let mut y = y0 + 8;
    let name_style = font(15).color(&GREY);
    for (name, value, color) in &focus.summary {
        side.draw(&Text::new(name.as_str(), (x0 + 10, y), name_style.clone()))?;
        let style = font(15).color(color);
        let text = fit(side, value, &style, w - 170);
        side.draw(&Text::new(text, (x0 + 150, y), style))?;
        y += row;
    }
    y += 4;
    let key_style = font(14).color(&GREY);
    let mid = |y: i32| y + 8;
    let outcome = outcome_color(focus.outcome);
    side.draw(&PathElement::new(
        vec![(x0 + 10, mid(y)), (x0 + 40, mid(y))],
        CURRENT_BLUE.stroke_width(2),
    ))?;
    side.draw(&Text::new(
        "reading after each request",
        (x0 + 48, y),
        key_style.clone(),
    ))?;
    y += row;
    side.draw(&Rectangle::new(
        [(x0 + 10, y + 2), (x0 + 40, y + 14)],
        outcome.mix(0.18).filled(),
    ))?;
    side.draw(&PathElement::new(
        vec![(x0 + 10, mid(y)), (x0 + 40, mid(y))],
        outcome.stroke_width(3),
    ))?;
    side.draw(&Text::new(
        "fitted trend, judged window, interval",
        (x0 + 48, y),
        key_style.clone(),
    ))?;
    y += row;
    side.draw(&PathElement::new(
        vec![(x0 + 10, mid(y)), (x0 + 20, mid(y))],
        PEAK_ORANGE.stroke_width(2),
    ))?;
    side.draw(&PathElement::new(
        vec![(x0 + 28, mid(y)), (x0 + 40, mid(y))],
        PEAK_ORANGE.stroke_width(2),
    ))?;
    let peak_key = if focus.plateau.is_some() {
        "peak; green dashes: the plateau"
    } else {
        "peak"
    };
    side.draw(&Text::new(peak_key, (x0 + 48, y), key_style))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    fig: &Figure,
    last: bool,
) -> DrawResult<DB> {
    let (width, _) = area.dim_in_pixel();
    let (plot_area, legend) = area.split_horizontally(width.saturating_sub(SIDE_WIDTH));
    let (y_lo, y_hi) = panel.y_range(fig.x.by_request);
    let scale = Scale::for_bytes(y_lo.abs().max(y_hi.abs()));
    let (lo, hi) = (y_lo / scale.div, y_hi / scale.div);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(panel.title.as_str(), font(21))
        .margin_left(10)
        // The focus panels' right axis (84) and margin (6) take this room: x axes stay aligned.
        .margin_right(90)
        .margin_bottom(if last { 6 } else { 2 })
        .x_label_area_size(if last { 56 } else { 30 })
        .y_label_area_size(100)
        .build_cartesian_2d(fig.x.lo..fig.x.hi, lo..hi)?;
    let d = decimals(hi - lo);
    let y_fmt = |v: &f64| format!("{v:+.d$}");
    let x_fmt = x_formatter(fig);
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(format!("growth, {}", scale.name))
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt)
        .label_style(font(15))
        .axis_desc_style(font(17))
        .y_labels(5)
        .x_labels(12)
        .max_light_lines(1)
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(220, 220, 220));
    if last {
        mesh.x_desc(fig.x.label.as_str());
    }
    mesh.draw()?;
    for shade in &fig.shades {
        let r = Rectangle::new(
            [(shade.from.max(fig.x.lo), lo), (shade.to, hi)],
            shade_color(shade.kind).filled(),
        );
        chart.draw_series(std::iter::once(r))?;
    }
    // Plain lines first, so the totals and the decisive lines stay on top.
    let order = |l: &&super::figure::Line| match l.emphasis {
        Emphasis::Plain => 0,
        Emphasis::Total => 1,
        _ => 2,
    };
    let mut lines: Vec<_> = panel.lines.iter().collect();
    lines.sort_by_key(order);
    for line in lines {
        let points = line
            .points
            .iter()
            .map(|&(x, v)| (x, (v / scale.div).clamp(lo, hi)));
        chart.draw_series(LineSeries::new(
            points,
            line.color.stroke_width(line.width()),
        ))?;
    }

    // Legend in its own column: labels never cover the data, and long process names fit.
    // Rows shrink when a panel has many lines (an 8-GPU host), and what still does not fit is
    // counted rather than drawn over the next panel.
    let (_, height) = legend.dim_in_pixel();
    let top = 34;
    let available = height.saturating_sub(top + if last { AXIS_HEIGHT } else { 0 });
    let rows = panel.lines.len() + usize::from(panel.hidden > 0);
    let row = (available / rows.max(1) as u32).clamp(14, 26);
    let fitting = (available / row) as usize;
    let shown = if rows > fitting {
        fitting.saturating_sub(1)
    } else {
        panel.lines.len()
    };
    let style = font((row - 10).clamp(11, 14));
    let mut y = top as i32;
    for line in &panel.lines[..shown.min(panel.lines.len())] {
        let stroke = line.color.stroke_width(line.width() + 1);
        let mid = y + row as i32 / 2 - 4;
        legend.draw(&PathElement::new(vec![(8, mid), (40, mid)], stroke))?;
        let label_style = match line.emphasis {
            Emphasis::Leak | Emphasis::Undecided => style.color(&line.color),
            _ => style.clone(),
        };
        let detail_style = style.color(&GREY);
        let detail = line.detail.as_str();
        let (dw, _) = legend.estimate_text_size(detail, &detail_style)?;
        let label = format!("{}{}", line.label, line.tag());
        let text = fit(
            &legend,
            &label,
            &label_style,
            (SIDE_WIDTH - 70).saturating_sub(dw),
        );
        legend.draw(&Text::new(text, (48, y), label_style))?;
        let dx = SIDE_WIDTH as i32 - 12 - dw as i32;
        legend.draw(&Text::new(detail, (dx, y), detail_style))?;
        y += row as i32;
    }
    let not_drawn = panel.hidden + panel.lines.len() - shown.min(panel.lines.len());
    if not_drawn > 0 {
        let text = format!("+{not_drawn} smaller processes not shown");
        legend.draw(&Text::new(text, (48, y), style.color(&GREY)))?;
    }
    Ok(())
}
