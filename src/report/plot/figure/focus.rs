//! The focus panels' content: which metrics decided the run, each one's growth, fitted trend,
//! peak, plateau and summary box.

use super::*;

/// The metrics that decided the run: leaking, then undecided; else plateaus; else the tree.
pub(super) fn focus_metrics<'a>(
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
    pub(super) fn new(
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
    pub(in crate::report::plot) fn y_range(&self) -> (f64, f64) {
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
