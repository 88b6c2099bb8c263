//! The x axis of a figure: its range over what is drawn and the shaded phases (warm-up, idle,
//! cooldown, an adaptive extension).

use super::*;

/// Largest minus smallest growth over the measured requests and after (or the whole line when
/// drawn against time).
pub(super) fn range_over(points: &[(f64, f64)], by_request: bool) -> f64 {
    let (lo, hi) = points
        .iter()
        .filter(|p| !by_request || p.0 >= 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    if hi >= lo { hi - lo } else { 0.0 }
}

pub(super) fn x_range(panels: &[Panel], focus: &[Focus], traces: &Traces<'_>) -> (f64, f64) {
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

pub(super) fn shades(input: &PlotInput<'_>, traces: &Traces<'_>, x_hi: f64) -> Vec<Shade> {
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
