//! From the timeline to what the analysis judges: one request-indexed series per metric that can
//! leak, with its settled cooldown and the headroom left.

use crate::analysis::RequestSeries;
use crate::tracker::metric::{self, Metric};
use crate::tracker::{Phase, Timeline, Unit};

/// Whether a metric's growth is analysed: bytes that can leak (not capacities, headroom or the
/// server's own counters).
fn analysed(metric: &Metric, unit: Unit) -> bool {
    unit == Unit::Bytes && metric.can_leak()
}

fn last(timeline: &Timeline, name: &str) -> Option<f64> {
    timeline.series.get(name)?.points.last().map(|p| p.v)
}

/// Room left before an out-of-memory failure for `metric`: the host's `MemAvailable`, the
/// device's free memory, or for per-process GPU metrics the tightest device.
fn headroom(timeline: &Timeline, metric: &Metric) -> Option<f64> {
    use crate::tracker::metric::{Scope, Source};
    match (metric.source, &metric.scope) {
        (Source::Host, _) => last(timeline, metric::HOST_MEM_AVAILABLE),
        (Source::Gpu, Scope::Dev(d)) => last(timeline, &Metric::gpu_dev("free", *d).to_string()),
        (Source::Gpu, _) => timeline
            .series
            .iter()
            .filter(|(k, _)| {
                k.parse::<Metric>()
                    .is_ok_and(|m| m.source == Source::Gpu && m.quantity == "free")
            })
            .filter_map(|(_, s)| s.points.last().map(|p| p.v))
            // A process lives on one device (usually): the tightest device is the honest bound.
            .reduce(f64::min),
        _ => None,
    }
}

/// Turn the timeline into one request-indexed series per analysed metric.
pub(crate) fn request_series(timeline: &Timeline) -> Vec<RequestSeries> {
    // The settled part of the cooldown: the second half after its last mark (after the flush).
    let settle_from = timeline.phase(Phase::Cooldown).map(|p| p.to_us);
    timeline
        .per_request
        .iter()
        .filter_map(|(name, values)| {
            let metric: Metric = name.parse().ok()?;
            let unit = timeline.series.get(name)?.unit;
            if !analysed(&metric, unit) {
                return None;
            }
            let cooldown = match (settle_from, timeline.cooldown.get(name)) {
                (Some(from), Some(points)) => match points.last() {
                    Some(end) if end.t_us > from => {
                        let mid = from + (end.t_us - from) / 2;
                        points
                            .iter()
                            .filter(|p| p.t_us >= mid)
                            .map(|p| p.v)
                            .collect()
                    }
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            Some(RequestSeries {
                metric: name.clone(),
                unit,
                values: values.clone(),
                cooldown,
                headroom: headroom(timeline, &metric),
                by_time: timeline.by_time.get(name).cloned(),
                idle: timeline.idle.get(name).cloned(),
            })
        })
        .collect()
}
