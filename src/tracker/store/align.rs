//! Per-request values as the readings arrive: for measured request `i`, the latest reading
//! taken after request `i` completed and strictly before request `i + 1` completed (or before
//! the phase ended, for the last).
//!
//! Every completion triggers a reading a few µs later, so this is normally the reading taken just
//! after request `i` completed, never one that already includes request `i + 1`. When no reading
//! falls between two completions, the reading before is carried forward — metrics read on a
//! slower cadence of their own (`/dev/shm`, GPU, server metrics) are a step function of the
//! requests — but only while it is not older than [`STALE_GAPS`] of that metric's usual gaps
//! between readings. Past that the sampler has stalled (starved of CPU on a loaded machine) and
//! the request has **no value** (counted as missing): carrying one old reading over every
//! request the sampler missed would flatten a leak into a pass. The values go straight into
//! bounded batch means: nothing here grows with the run but the completion times (8 bytes a
//! request).

use crate::tracker::{BatchMeans, Batched};

/// The completion times of the measured requests, shared by every metric's aligner.
#[derive(Debug, Clone, Default)]
pub(crate) struct Completions {
    /// Completion times (µs), in order.
    pub(crate) ends: Vec<u64>,
    /// When the measured phase ended, once it has.
    pub(crate) phase_end: Option<u64>,
}

impl Completions {
    /// Until when request `k`'s value may be taken (exclusive), if that is known yet.
    fn until(&self, k: usize) -> Option<u64> {
        if k >= self.ends.len() {
            return None;
        }
        self.ends.get(k + 1).copied().or(self.phase_end)
    }

    pub(crate) fn complete(&mut self, t_us: u64) {
        // Concurrent requests may record their completions a hair out of order.
        let at = self.ends.partition_point(|&e| e <= t_us);
        self.ends.insert(at, t_us);
    }
}

/// A reading older than this many of the metric's usual gaps between readings is not carried
/// forward to a request that completed after it.
pub(crate) const STALE_GAPS: f64 = 4.0;

/// One metric's cursor through the completions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Aligner {
    next: usize,
    /// The latest reading: when, and its value.
    prev: Option<(u64, f64)>,
    /// The usual gap between this metric's readings (µs; a moving average).
    gap: Option<f64>,
    values: BatchMeans,
}

impl Aligner {
    /// A reading at `t_us`, in this metric's time order.
    pub(crate) fn reading(&mut self, c: &Completions, t_us: u64, v: f64) {
        while let Some(until) = c.until(self.next) {
            if until > t_us {
                break;
            }
            self.finalize(c, until);
        }
        if let Some((t, _)) = self.prev {
            let d = t_us.saturating_sub(t) as f64;
            // The gap learns slowly, so one stall does not teach it that stalls are usual.
            self.gap = Some(self.gap.map_or(d, |g| 0.95 * g + 0.05 * d));
        }
        self.prev = Some((t_us, v));
    }

    /// Request `next`'s value, its window closing at `until`: the latest reading if it was
    /// taken after that request completed, or carried forward if it is not stale.
    fn finalize(&mut self, c: &Completions, until: u64) {
        let v = match (self.prev, c.ends.get(self.next)) {
            (Some((t, v)), Some(&end)) if t >= end => v,
            (Some((t, v)), Some(_)) => match self.gap {
                Some(g) if (until.saturating_sub(t) as f64) <= STALE_GAPS * g.max(1.0) => v,
                _ => f64::NAN,
            },
            _ => f64::NAN,
        };
        let i = self.values.count();
        self.values.push(i as f64, v);
        self.next += 1;
    }

    /// The values so far, every completed request included (the run is over, or a snapshot).
    pub(crate) fn finish(&self, c: &Completions) -> Option<Batched> {
        let mut done = self.clone();
        while done.next < c.ends.len() {
            // A request whose window is still open (a snapshot) closes at its own completion.
            let until = c.until(done.next).unwrap_or(c.ends[done.next]);
            done.finalize(c, until);
        }
        (done.values.count() > 0).then(|| done.values.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offline definition, for comparison, with regular readings (no stall): the latest
    /// reading before the next completion, missing before the first reading.
    fn offline(points: &[(u64, f64)], ends: &[u64], phase_end: u64) -> Vec<f64> {
        (0..ends.len())
            .map(|i| {
                let until = ends.get(i + 1).copied().unwrap_or(phase_end);
                points
                    .iter()
                    .rev()
                    .find(|p| p.0 < until)
                    .map_or(f64::NAN, |p| p.1)
            })
            .collect()
    }

    fn same(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
    }

    #[test]
    fn streaming_matches_the_offline_definition() {
        // Readings every 7 µs, completions at irregular times, some gaps without readings.
        let points: Vec<(u64, f64)> = (0..200).map(|i| (5 + i * 7, i as f64)).collect();
        let ends: Vec<u64> = (0..60).map(|i| 40 + i * 17 + (i % 5) * 3).collect();
        let phase_end = 1200;
        let mut c = Completions::default();
        let mut a = Aligner::default();
        let mut pi = 0;
        for &e in &ends {
            while pi < points.len() && points[pi].0 < e {
                a.reading(&c, points[pi].0, points[pi].1);
                pi += 1;
            }
            c.complete(e);
        }
        while pi < points.len() && points[pi].0 < phase_end {
            a.reading(&c, points[pi].0, points[pi].1);
            pi += 1;
        }
        c.phase_end = Some(phase_end);
        for &(t, v) in &points[pi..] {
            a.reading(&c, t, v);
        }
        let got = a.finish(&c).expect("values");
        let want = offline(&points, &ends, phase_end);
        assert!(same(&got.y, &want), "{:?}\n{want:?}", got.y);
    }

    #[test]
    fn a_stalled_sampler_leaves_requests_missing_not_the_old_value_repeated() {
        let mut c = Completions::default();
        let mut a = Aligner::default();
        // Readings every 10 µs, a completion before each.
        for i in 0..10u64 {
            c.complete(i * 10 + 1);
            a.reading(&c, i * 10 + 2, i as f64);
        }
        // A completion with no reading of its own, within the usual gap: carried forward.
        c.complete(101);
        c.complete(105);
        a.reading(&c, 106, 10.0);
        // The sampler stalls for 200 µs while ten requests complete; then one late reading.
        for i in 0..10u64 {
            c.complete(110 + i * 20);
        }
        a.reading(&c, 320, 99.0);
        let got = a.finish(&c).expect("values").y;
        assert_eq!(&got[..10], &(0..10).map(f64::from).collect::<Vec<_>>()[..]);
        assert_eq!(
            got[10], 9.0,
            "carried: one request without a reading of its own"
        );
        assert_eq!(got[11], 10.0);
        // Carried over the first stalled request or two at most, then missing; the last has the
        // late reading.
        let missing = got[12..21].iter().filter(|v| v.is_nan()).count();
        assert!(missing >= 7, "{got:?}");
        assert_eq!(got[21], 99.0);
    }
}
