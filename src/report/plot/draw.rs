//! Drawing a [`Figure`] with plotters: the PNG and SVG backends, the embedded font, the header,
//! the panels and their legends, and PNG encoding.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use super::PlotError;
use super::figure::{Figure, LEAK_RED, Panel};

/// Size of the figure in pixels (PNG) and user units (SVG).
pub(super) const SIZE: (u32, u32) = (1600, 1000);
/// Width of the legend column to the right of each panel: labels never cover the data.
const LEGEND_WIDTH: u32 = 400;
/// Font family every text of the figure asks for (registered from the embedded file).
const FAMILY: &str = "sans-serif";
static FONT: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/fonts/DejaVuSans.ttf"
));

/// The figure as PNG bytes (`path`: the file it is for, named in errors).
pub(super) fn png(figure: &Figure, path: &Path) -> Result<Vec<u8>, PlotError> {
    let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    render(
        BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area(),
        figure,
        path,
    )?;
    encode_png(&rgb, SIZE).map_err(|source| PlotError::Encode {
        path: path.to_owned(),
        source,
    })
}

/// The figure as SVG text (`path`: the file it is for, named in errors).
pub(super) fn svg(figure: &Figure, path: &Path) -> Result<String, PlotError> {
    let mut svg = String::new();
    render(
        SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
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
pub(super) fn register_font() -> Result<(), PlotError> {
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

fn shade_color(phase_label: &str) -> RGBAColor {
    let base = if phase_label == "warm-up" {
        RGBColor(255, 190, 60)
    } else {
        RGBColor(110, 160, 230)
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
