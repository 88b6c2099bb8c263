//! Per-request values as the readings arrive: for measured request `i`, the latest reading
//! taken strictly before request `i + 1` completed (or before the phase ended, for the last).
//!
//! Every completion triggers a reading a few µs later, so this is normally the reading taken just
//! after request `i` completed, never one that already includes request `i + 1`; when none falls
//! between two completions the reading before is carried forward; requests that completed before
//! a metric's first reading take that reading. The values go straight into bounded batch means:
//! nothing here grows with the run but the completion times (8 bytes a request).

use crate::analysis::{BatchMeans, Batched};

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

/// One metric's cursor through the completions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Aligner {
    next: usize,
    prev: Option<f64>,
    /// Requests finalized before the first reading: they take the first value.
    unfilled: u64,
    values: BatchMeans,
}

impl Aligner {
    /// A reading at `t_us`, in this metric's time order.
    pub(crate) fn reading(&mut self, c: &Completions, t_us: u64, v: f64) {
        while let Some(until) = c.until(self.next) {
            if until > t_us {
                break;
            }
            self.finalize();
        }
        self.prev = Some(v);
    }

    fn finalize(&mut self) {
        match self.prev {
            None => self.unfilled += 1,
            Some(v) => {
                while self.unfilled > 0 {
                    let i = self.values.count();
                    self.values.push(i as f64, v);
                    self.unfilled -= 1;
                }
                let i = self.values.count();
                self.values.push(i as f64, v);
            }
        }
        self.next += 1;
    }

    /// The values so far, every completed request included (the run is over, or a snapshot).
    pub(crate) fn finish(&self, c: &Completions) -> Option<Batched> {
        let mut done = self.clone();
        while done.next < c.ends.len() {
            done.finalize();
        }
        (done.values.count() > 0).then(|| done.values.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offline definition, for comparison: latest reading before the next completion.
    fn offline(points: &[(u64, f64)], ends: &[u64], phase_end: u64) -> Vec<f64> {
        let mut out: Vec<Option<f64>> = (0..ends.len())
            .map(|i| {
                let until = ends.get(i + 1).copied().unwrap_or(phase_end);
                points.iter().rev().find(|p| p.0 < until).map(|p| p.1)
            })
            .collect();
        let first = out.iter().position(Option::is_some).unwrap_or(0);
        let fill = out[first];
        for v in out.iter_mut().take(first) {
            *v = fill;
        }
        out.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect()
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
        assert_eq!(got.y, offline(&points, &ends, phase_end));
    }

    #[test]
    fn requests_before_the_first_reading_take_it() {
        let mut c = Completions::default();
        c.complete(10);
        c.complete(20);
        let mut a = Aligner::default();
        a.reading(&c, 25, 7.0);
        c.complete(30);
        a.reading(&c, 35, 8.0);
        let got = a.finish(&c).expect("values");
        assert_eq!(got.y, [7.0, 7.0, 8.0]);
    }
}
