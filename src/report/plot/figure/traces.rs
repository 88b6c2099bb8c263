//! A metric's trace on the figure's x axis.

use super::*;

/// A metric's trace on the x axis: readings mapped by time outside the measured phase, the
/// per-request values inside it.
pub(super) struct Traces<'a> {
    pub(super) timeline: &'a Timeline,
    pub(super) map: Option<XMap>,
}

impl Traces<'_> {
    pub(super) fn absolute(&self, metric: &str) -> Vec<(f64, f64)> {
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
    pub(super) fn origin(&self, metric: &str, pts: &[(f64, f64)]) -> Option<f64> {
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
    pub(super) fn last_measured(&self, metric: &str, pts: &[(f64, f64)]) -> Option<f64> {
        self.timeline
            .per_request
            .get(metric)
            .and_then(|b| b.y.iter().rev().copied().find(|v| v.is_finite()))
            .or_else(|| pts.last().map(|p| p.1))
    }
}
