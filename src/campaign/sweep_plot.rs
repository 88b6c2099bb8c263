//! The sweep's one plot: growth per request (with its interval) against the knob, and the fitted
//! line. PNG and SVG, drawn with the report's embedded font.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::sweep::Sweep;

const SIZE: (u32, u32) = (1200, 700);
const BLUE: RGBColor = RGBColor(31, 119, 180);
const RED: RGBColor = RGBColor(214, 39, 40);

/// Writes `dir/<stem>.png` and `.svg`; the paths written.
pub(super) fn write(s: &Sweep, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, String> {
    crate::report::plot::register_font().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let mut rgb = vec![0u8; SIZE.0 as usize * SIZE.1 as usize * 3];
    draw(
        BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area(),
        s,
    )?;
    let bytes = crate::report::plot::encode_png(&rgb, SIZE).map_err(|e| e.to_string())?;
    crate::util::write_atomic(&png, &bytes).map_err(|e| format!("{}: {e}", png.display()))?;
    let mut text = String::new();
    draw(
        SVGBackend::with_string(&mut text, SIZE).into_drawing_area(),
        s,
    )?;
    crate::util::write_atomic(&svg, text.as_bytes())
        .map_err(|e| format!("{}: {e}", svg.display()))?;
    Ok(vec![png, svg])
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, s: &Sweep) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let pts: Vec<(f64, f64, f64, f64)> = s
        .points
        .iter()
        .filter_map(|p| p.slope.map(|e| (p.x, e.point, e.ci.lo, e.ci.hi)))
        .collect();
    let x_max = pts.iter().map(|p| p.0).fold(0.0_f64, f64::max) * 1.08;
    let y_hi = pts.iter().map(|p| p.3.max(p.1)).fold(0.0_f64, f64::max);
    let y_lo = pts.iter().map(|p| p.2.min(p.1)).fold(0.0_f64, f64::min);
    // Ticks on round numbers of one binary unit (not 195.3 KiB, 390.6 KiB, …).
    let scale = crate::report::plot::Scale::for_bytes(y_hi.abs().max(y_lo.abs()));
    let pts: Vec<(f64, f64, f64, f64)> = pts
        .into_iter()
        .map(|(x, y, lo, hi)| (x, y / scale.div, lo / scale.div, hi / scale.div))
        .collect();
    let (y_lo, y_hi) = (y_lo / scale.div, y_hi / scale.div);
    let pad = (y_hi - y_lo).max(1.0 / scale.div) * 0.08;
    let (root, footer) = root.split_vertically(SIZE.1 - 60);
    footer
        .draw(&Text::new(
            s.finding.clone(),
            (20, 20),
            ("sans-serif", 18).into_font(),
        ))
        .map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} per request against {} (sweep)", s.metric, s.knob),
            ("sans-serif", 26),
        )
        .margin(20)
        .x_label_area_size(55)
        .y_label_area_size(110)
        .build_cartesian_2d(0.0..x_max.max(1.0), (y_lo - pad)..(y_hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(format!("{} ({}s)", s.knob, s.unit))
        .y_desc(format!("growth per request, {}", scale.name))
        .y_label_formatter(&|v| format!("{v}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .draw()
        .map_err(err)?;
    if let Some(f) = s.fit {
        chart
            .draw_series(LineSeries::new(
                [0.0, x_max].map(|x| (x, (f.intercept + f.per_unit * x) / scale.div)),
                RED.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!(
                "fit: {} per {}, {} at zero (R² {:.3})",
                crate::util::signed_bytes(f.per_unit),
                s.unit,
                crate::util::signed_bytes(f.intercept),
                f.r2
            ))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    chart
        .draw_series(
            pts.iter()
                .map(|&(x, _, lo, hi)| PathElement::new([(x, lo), (x, hi)], BLUE.stroke_width(2))),
        )
        .map_err(err)?;
    chart
        .draw_series(
            pts.iter()
                .map(|&(x, y, _, _)| Circle::new((x, y), 6, BLUE.filled())),
        )
        .map_err(err)?
        .label("measured: slope and its interval, one run per value")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, BLUE.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
