//! From Prometheus series to what the analysis judges: each series cut at restarts into
//! segments, each segment turned into one [`RequestSeries`] (growth per request through the
//! matched request counter, growth per hour against time, headroom from the matched limit).
//!
//! This is an adapter, not a second statistics engine: everything it builds goes through
//! [`analysis::analyze_at`](crate::analysis::analyze_at) like a run's own readings.

use std::collections::BTreeMap;

use super::prom::PromSeries;
use super::{Headroom, MemoryKind};
use crate::analysis::{BatchMeans, Batched, RequestSeries};
use crate::tracker::metric::Unit;

/// A gap between two readings longer than this many steps (and [`MIN_RESTART_GAP_S`]) cuts a
/// series: the target was down (Prometheus marks it stale), most often a restart.
const RESTART_GAP_STEPS: f64 = 3.0;
/// …and at least this many seconds, so that a missed scrape or two does not cut it.
pub const MIN_RESTART_GAP_S: f64 = 60.0;
/// At most this many per-request readings are rebuilt for one segment (about a week at 300
/// requests/s); past it, the per-request judgement is skipped and the hourly one decides.
const MAX_REQUESTS: f64 = 2.0e8;

/// A stretch of one series between restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// `(unix seconds, bytes)`, finite readings only, in time order.
    pub points: Vec<(f64, f64)>,
    /// 1-based index among the series' segments, and how many there are.
    pub index: usize,
    /// Segments of the series.
    pub of: usize,
    /// Cumulative requests at each reading of `points` (counter resets added up), when a
    /// request counter matched; `None` per reading the counter had no value at.
    pub requests: Option<Vec<Option<f64>>>,
    /// Room left at the end of the segment, bytes.
    pub headroom: Option<f64>,
}

/// The labels two series are matched on: `on` when given, else every label both carry
/// (`__name__` aside).
fn keys<'a>(
    a: &'a BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    on: &'a [String],
) -> Vec<&'a str> {
    if !on.is_empty() {
        return on.iter().map(String::as_str).collect();
    }
    a.keys()
        .filter(|k| *k != "__name__" && b.contains_key(*k))
        .map(String::as_str)
        .collect()
}

/// The series of `candidates` that belongs with `labels`: the first that agrees on every match
/// key both carry (at least one). Failing that, the only candidate when it carries none of the
/// `on` labels: one series for the whole fleet, such as a router's request counter.
pub fn matching<'a>(
    labels: &BTreeMap<String, String>,
    candidates: &'a [PromSeries],
    on: &[String],
) -> Option<&'a PromSeries> {
    let agrees = |c: &PromSeries| {
        let both: Vec<&str> = keys(labels, &c.labels, on)
            .into_iter()
            .filter(|k| labels.contains_key(*k) && c.labels.contains_key(*k))
            .collect();
        !both.is_empty() && both.iter().all(|k| labels.get(*k) == c.labels.get(*k))
    };
    if let Some(c) = candidates.iter().find(|c| agrees(c)) {
        return Some(c);
    }
    match candidates {
        [only] if !on.is_empty() && on.iter().all(|k| !only.labels.contains_key(k)) => Some(only),
        _ => None,
    }
}

/// Times at which `counter` went down (a reset: the process restarted).
fn resets(counter: &PromSeries) -> Vec<f64> {
    counter
        .points
        .windows(2)
        .filter(|w| w[1].1.is_finite() && w[0].1.is_finite() && w[1].1 < w[0].1)
        .map(|w| w[1].0)
        .collect()
}

/// The counter's cumulative increase at each of its readings, resets added up (as PromQL's
/// `increase()` does).
fn cumulative(counter: &PromSeries) -> Vec<(f64, f64)> {
    let mut total = 0.0;
    let mut prev: Option<f64> = None;
    let mut out = Vec::with_capacity(counter.points.len());
    for &(t, v) in &counter.points {
        if !v.is_finite() {
            continue;
        }
        total += match prev {
            Some(p) if v >= p => v - p,
            Some(_) => v,
            None => 0.0,
        };
        prev = Some(v);
        out.push((t, total));
    }
    out
}

/// Cut `series` into segments at restarts: gaps longer than the restart gap, and resets of its
/// request counter. `step` is the query's resolution.
pub fn segments(
    series: &PromSeries,
    counter: Option<&PromSeries>,
    headroom: Option<(&PromSeries, Headroom)>,
    step: f64,
) -> Vec<Segment> {
    let gap = (RESTART_GAP_STEPS * step).max(MIN_RESTART_GAP_S);
    let cuts = counter.map(resets).unwrap_or_default();
    let counts = counter.map(cumulative);
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut last_t: Option<f64> = None;
    let mut next_cut = 0;
    for &(t, v) in series.points.iter().filter(|p| p.1.is_finite()) {
        let mut cut = last_t.is_none_or(|l| t - l > gap);
        while next_cut < cuts.len() && cuts[next_cut] <= t {
            cut = true;
            next_cut += 1;
        }
        if cut || out.is_empty() {
            out.push(Vec::new());
        }
        if let Some(seg) = out.last_mut() {
            seg.push((t, v));
        }
        last_t = Some(t);
    }
    out.retain(|s| !s.is_empty());
    let of = out.len();
    out.into_iter()
        .enumerate()
        .map(|(i, points)| {
            let requests = counts
                .as_ref()
                .map(|c| points.iter().map(|(t, _)| at(c, *t, step / 2.0)).collect());
            let end = points.last().map_or(f64::NAN, |p| p.0);
            let level = points.last().map_or(f64::NAN, |p| p.1);
            let headroom = headroom.and_then(|(s, kind)| {
                let v = at(&s.points, end, step / 2.0)
                    .or_else(|| s.points.iter().rev().find(|p| p.1.is_finite()).map(|p| p.1))?;
                let room = match kind {
                    Headroom::Limit => v - level,
                    Headroom::Free => v,
                };
                (room.is_finite() && room >= 0.0).then_some(room)
            });
            Segment {
                labels: series.labels.clone(),
                points,
                index: i + 1,
                of,
                requests,
                headroom,
            }
        })
        .collect()
}

/// The value of `points` at time `t` (within `tol` seconds), by binary search.
fn at(points: &[(f64, f64)], t: f64, tol: f64) -> Option<f64> {
    let i = points.partition_point(|p| p.0 < t - tol);
    points
        .get(i)
        .filter(|p| (p.0 - t).abs() <= tol && p.1.is_finite())
        .map(|p| p.1)
}

impl Segment {
    /// Requests counted over the segment, when a counter matched.
    pub fn request_count(&self) -> Option<f64> {
        let r = self.requests.as_ref()?;
        let first = r.iter().flatten().next()?;
        let last = r.iter().flatten().next_back()?;
        Some(last - first)
    }

    /// What the analysis judges: the memory after each request (the first reading that counts
    /// it: a counter read every scrape sees many requests at once, which become a flat step),
    /// and against hours since the segment started. `metric` names the rule that applies.
    pub fn request_series(&self, kind: MemoryKind) -> RequestSeries {
        let t0 = self.points.first().map_or(0.0, |p| p.0);
        let mut by_time = BatchMeans::default();
        for (t, v) in &self.points {
            by_time.push((t - t0) / 3600.0, *v);
        }
        let values = self.per_request().unwrap_or_default();
        RequestSeries {
            metric: kind.metric().to_owned(),
            unit: Unit::Bytes,
            values,
            cooldown: Vec::new(),
            headroom: self.headroom,
            by_time: Some(by_time.finish()),
            idle: None,
        }
    }

    fn per_request(&self) -> Option<Batched> {
        let counts = self.requests.as_ref()?;
        let total = self.request_count()?;
        if !(1.0..=MAX_REQUESTS).contains(&total) {
            return None;
        }
        let mut b = BatchMeans::default();
        let mut prev: Option<f64> = None;
        let mut index = 0u64;
        for ((_, v), c) in self.points.iter().zip(counts) {
            let Some(c) = *c else { continue };
            if let Some(p) = prev {
                let new = (c.round() - p.round()).max(0.0) as u64;
                for _ in 0..new {
                    b.push(index as f64, *v);
                    index += 1;
                }
            }
            prev = Some(c);
        }
        (index > 0).then(|| b.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], points: &[(f64, f64)]) -> PromSeries {
        PromSeries {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn a_restart_cuts_the_series_never_reads_as_a_drop() {
        // 100 readings growing, the process restarts (counter reset, memory back down), 100 more.
        let mem: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, 1e9 + (i % 100) as f64 * 1e6))
            .collect();
        let req: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, (i % 100) as f64 * 10.0))
            .collect();
        let m = series(&[("instance", "a")], &mem);
        let c = series(&[("instance", "a")], &req);
        let segs = segments(&m, Some(&c), None, 1.0);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].points.len(), segs[1].points.len()), (100, 100));
        assert_eq!(segs[1].request_count(), Some(990.0));
        // Each segment grows 1 MB per reading, 10 requests per reading: 100 KB per request.
        let s = segs[1].request_series(MemoryKind::Host);
        assert_eq!(s.values.readings, 990);
        let slope = (s.values.y.last().unwrap() - s.values.y[0])
            / (s.values.x.last().unwrap() - s.values.x[0]);
        assert!((slope - 1e5).abs() < 2e3, "{slope}");
        // A long gap cuts as well.
        let gap = series(&[], &[(0.0, 1.0), (1.0, 1.0), (500.0, 1.0)]);
        assert_eq!(segments(&gap, None, None, 1.0).len(), 2);
    }

    #[test]
    fn counters_and_limits_match_by_shared_labels() {
        let m = series(&[("instance", "b"), ("pid", "7")], &[]);
        let c = [
            series(&[("instance", "a"), ("model_name", "x")], &[]),
            series(&[("instance", "b"), ("model_name", "x")], &[]),
        ];
        assert_eq!(
            matching(&m.labels, &c, &[]).unwrap().labels["instance"],
            "b"
        );
        assert!(matching(&m.labels, &c, &["pod".into()]).is_none());
        // Another replica's counter alone does not match…
        assert!(matching(&m.labels, &c[..1], &[]).is_none());
        // …one for the whole fleet (a router's, without the pairing labels) matches everything.
        let router = [series(&[("job", "router")], &[])];
        assert!(matching(&m.labels, &router, &["instance".into()]).is_some());
        assert!(matching(&m.labels, &router, &[]).is_none());
        let mem = series(&[], &[(0.0, 3.0), (1.0, 4.0)]);
        let limit = series(&[], &[(0.0, 10.0), (1.0, 10.0)]);
        let s = segments(&mem, None, Some((&limit, Headroom::Limit)), 1.0);
        assert_eq!(s[0].headroom, Some(6.0));
        let s = segments(&mem, None, Some((&limit, Headroom::Free)), 1.0);
        assert_eq!(s[0].headroom, Some(10.0));
    }
}
