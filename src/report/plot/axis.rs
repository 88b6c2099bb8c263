//! The x axis of a plot: measured requests, as every figure of the verdict is per request.
//!
//! Inside the measured phase a metric is drawn from its per-request values (exactly what the
//! verdict judged, at request index `i`). Outside it — baseline, warm-up, idle, cooldown — there
//! are only readings against time; they are placed on the same axis by the pace of the requests:
//! the warm-up's requests end at −W … −1, and time before the warm-up or after the last measured
//! request counts at the measured phase's seconds per request. A run without measured requests
//! is drawn against seconds instead.

use crate::tracker::{Phase, Timeline};

/// Time (µs since the tracker started) to a position on the x axis.
#[derive(Debug, Clone)]
pub(super) struct XMap {
    /// Known points (t_us, x), increasing in both.
    anchors: Vec<(f64, f64)>,
    /// µs per request before the first and after the last anchor.
    pace_us: f64,
    /// The measured phase's first and last completion (µs).
    pub(super) measure: (f64, f64),
    /// Measured requests (per-request readings).
    pub(super) requests: u64,
}

impl XMap {
    /// The mapping of a run whose measured phase completed `requests` requests (`None`: no
    /// measured request, draw against time).
    pub(super) fn new(timeline: &Timeline, requests: u64) -> Option<Self> {
        let measure = timeline.phase(Phase::Measure)?;
        if requests == 0 {
            return None;
        }
        let (from, to) = (measure.from_us as f64, measure.to_us as f64);
        let pace_us = if requests > 1 && to > from {
            (to - from) / (requests - 1) as f64
        } else {
            1e6
        };
        let mut anchors = Vec::new();
        if let Some(w) = timeline.phase(Phase::Warmup).filter(|w| w.requests > 0) {
            let (wf, wt) = (w.from_us as f64, w.to_us as f64);
            if wf < from {
                anchors.push((wf, -(w.requests as f64)));
                if wt > wf && wt < from && w.requests > 1 {
                    anchors.push((wt, -1.0));
                }
            }
        }
        anchors.push((from, 0.0));
        if to > from {
            anchors.push((to, (requests - 1) as f64));
        }
        Some(Self {
            anchors,
            pace_us,
            measure: (from, to),
            requests,
        })
    }

    /// The position of time `t_us`.
    pub(super) fn x(&self, t_us: f64) -> f64 {
        let first = self.anchors[0];
        let last = self.anchors[self.anchors.len() - 1];
        if t_us <= first.0 {
            return first.1 - (first.0 - t_us) / self.pace_us;
        }
        if t_us >= last.0 {
            return last.1 + (t_us - last.0) / self.pace_us;
        }
        for w in self.anchors.windows(2) {
            let ((t0, x0), (t1, x1)) = (w[0], w[1]);
            if t_us <= t1 {
                return x0 + (x1 - x0) * (t_us - t0) / (t1 - t0);
            }
        }
        last.1
    }

    /// Whether a reading at `t_us` lies inside the measured phase (drawn from per-request
    /// values instead).
    pub(super) fn inside_measure(&self, t_us: f64) -> bool {
        t_us >= self.measure.0 && t_us <= self.measure.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::PhaseSpan;

    fn span(phase: Phase, from_s: f64, to_s: f64, requests: u64) -> PhaseSpan {
        PhaseSpan {
            phase,
            from_us: (from_s * 1e6) as u64,
            to_us: (to_s * 1e6) as u64,
            requests,
        }
    }

    #[test]
    fn warm_up_ends_before_request_zero_and_the_cooldown_runs_at_the_measured_pace() {
        let tl = Timeline {
            phases: vec![
                span(Phase::Baseline, 0.0, 0.0, 0),
                span(Phase::Warmup, 1.0, 1.4, 5),
                span(Phase::Measure, 2.0, 11.9, 100),
                span(Phase::Cooldown, 12.0, 12.0, 0),
            ],
            ..Timeline::default()
        };
        let map = XMap::new(&tl, 100).unwrap();
        assert!((map.x(1.0e6) + 5.0).abs() < 1e-9);
        assert!((map.x(1.4e6) + 1.0).abs() < 1e-9);
        assert!(map.x(2.0e6).abs() < 1e-9);
        assert!((map.x(11.9e6) - 99.0).abs() < 1e-9);
        // 0.1 s per request: a second of cooldown is ten requests' worth.
        assert!((map.x(12.9e6) - 109.0).abs() < 1e-6);
        assert!(map.x(0.0) < -5.0);
        assert!(map.inside_measure(5e6) && !map.inside_measure(12e6));
        assert!(XMap::new(&tl, 0).is_none());
        assert!(XMap::new(&Timeline::default(), 10).is_none());
    }
}
