//! The fleet plot: each row's growth since its first reading against time, the worst rows
//! (at most [`MAX_LINES`]) drawn, named and coloured by outcome in the legend.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::report::{FleetReport, FleetRow};
use crate::analysis::Outcome;
use crate::report::plot::{LEAK_RED, PALETTE, PlotError, UNSURE_ORANGE};
use crate::util::MIB;

/// Rows drawn at most (the worst first): more lines are unreadable.
pub const MAX_LINES: usize = 8;
const SIZE: (u32, u32) = (1200, 620);

/// Leaking rows: shades of red, as leaks are everywhere else in the reports (undecided rows are
/// the reports' orange, passing rows take the per-process palette, which has neither).
const LEAK_REDS: [RGBColor; 4] = [
    LEAK_RED,
    RGBColor(150, 20, 20),
    RGBColor(240, 100, 100),
    RGBColor(100, 0, 0),
];
/// `(seconds since the window's start, MiB grown since the row's first reading)` per row.
fn lines(report: &FleetReport) -> Vec<(&FleetRow, Vec<(f64, f64)>)> {
    let start = humantime::parse_rfc3339_weak(&report.window.from)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    report
        .rows
        .iter()
        .take(MAX_LINES)
        .filter_map(|r| {
            let from = humantime::parse_rfc3339_weak(&r.from)
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs_f64();
            let b = r.by_time()?;
            let y0 = b.y.iter().copied().find(|v| v.is_finite())?;
            let pts =
                b.x.iter()
                    .zip(&b.y)
                    .filter(|(_, y)| y.is_finite())
                    .map(|(x, y)| (from - start + x * 3600.0, (y - y0) / MIB))
                    .collect();
            Some((r, pts))
        })
        .collect()
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    report: &FleetReport,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut data = lines(report);
    // Seconds, minutes or hours, whichever reads as numbers of a few units to a few hundred.
    let seconds = data
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.0))
        .fold(0.0_f64, f64::max);
    let (div, unit) = if seconds < 120.0 {
        (1.0, "seconds")
    } else if seconds < 2.0 * 3600.0 {
        (60.0, "minutes")
    } else {
        (3600.0, "hours")
    };
    for (_, pts) in &mut data {
        for p in pts.iter_mut() {
            p.0 /= div;
        }
    }
    let (mut x1, mut y0, mut y1) = (1e-9_f64, 0.0_f64, 1e-9_f64);
    for (_, pts) in &data {
        for &(x, y) in pts {
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    // Room above the data for the legend (one line per drawn row).
    let span = (y1 - y0).max(1.0);
    let pad = span * 0.05;
    let top = span * (0.1 + 0.06 * data.len() as f64);
    let title = format!(
        "fleet — {} series from {}, worst {} drawn ({:?})",
        report.rows.len(),
        report.prometheus,
        data.len(),
        report.outcome
    );
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(42)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x1 * 1.02, (y0 - pad)..(y1 + top))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(format!("{unit} since the window's start"))
        .y_desc("growth since first reading (MiB)")
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let (mut leaks, mut others) = (0, 0);
    for (row, pts) in data {
        let color = match row.outcome {
            Outcome::Leak => {
                leaks += 1;
                LEAK_REDS[(leaks - 1) % LEAK_REDS.len()]
            }
            Outcome::Inconclusive => UNSURE_ORANGE,
            Outcome::Pass => {
                others += 1;
                PALETTE[(others - 1) % PALETTE.len()]
            }
        };
        let mark = match row.outcome {
            Outcome::Leak => "LEAK",
            Outcome::Inconclusive => "undecided",
            Outcome::Pass => "pass",
        };
        let label: String = format!("{mark}: {}", row.name).chars().take(70).collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Write `<dir>/<stem>.png` and `.svg` (atomically).
///
/// # Errors
/// [`PlotError`] when the font, the drawing, the encoding or a write fails.
pub fn write(
    report: &FleetReport,
    dir: &Path,
    stem: &str,
) -> Result<(PathBuf, PathBuf), PlotError> {
    crate::report::plot::register_font()?;
    let png_path = dir.join(format!("{stem}.png"));
    let svg_path = dir.join(format!("{stem}.svg"));
    let draw_err = |path: &Path| {
        let path = path.to_owned();
        move |message: String| PlotError::Draw { path, message }
    };
    let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    draw(
        &BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area(),
        report,
    )
    .map_err(draw_err(&png_path))?;
    let png_bytes =
        crate::report::plot::encode_png(&rgb, SIZE).map_err(|source| PlotError::Encode {
            path: png_path.clone(),
            source,
        })?;
    let mut svg = String::new();
    draw(
        &SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
        report,
    )
    .map_err(draw_err(&svg_path))?;
    for (path, bytes) in [
        (&png_path, png_bytes.as_slice()),
        (&svg_path, svg.as_bytes()),
    ] {
        crate::util::write_atomic(path, bytes).map_err(|source| PlotError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok((png_path, svg_path))
}
