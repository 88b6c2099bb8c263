//! Batch means with a bounded number of points: a series of any length is reduced, as it
//! arrives, to between `target` and `2 × target` means of equal batches (the last may be short).
//!
//! When the buffer reaches `2 × target` batches, neighbours are merged and the batch size
//! doubles, so memory stays O(target) and each reading is touched O(1) times amortised. The
//! statistics then see at most `2 × target` points: Theil–Sen and the autocorrelation correction
//! stay O(target²) however long the run, and averaging `batch` readings per point removes
//! most of the short-range correlation (criterion's approach to long samples).

use serde::{Deserialize, Serialize};

/// Points the statistics see at most: [`MAX_POINTS`] / 2 to [`MAX_POINTS`].
pub const MAX_POINTS: usize = 2000;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Acc {
    x: f64,
    y: f64,
    /// Readings in the batch.
    n: u64,
    /// Finite readings among them (the mean of `y` is over these).
    finite: u64,
}

impl Acc {
    fn add(&mut self, x: f64, y: f64) {
        self.x += x;
        self.n += 1;
        if y.is_finite() {
            self.y += y;
            self.finite += 1;
        }
    }

    fn merge(self, o: Acc) -> Acc {
        Acc {
            x: self.x + o.x,
            y: self.y + o.y,
            n: self.n + o.n,
            finite: self.finite + o.finite,
        }
    }

    fn point(&self) -> (f64, f64) {
        let x = self.x / self.n as f64;
        let y = if self.finite == 0 {
            f64::NAN
        } else {
            self.y / self.finite as f64
        };
        (x, y)
    }
}

/// A bounded batch-means accumulator.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMeans {
    target: usize,
    batch: u64,
    full: Vec<Acc>,
    partial: Acc,
}

impl Default for BatchMeans {
    fn default() -> Self {
        Self::new(MAX_POINTS / 2)
    }
}

impl BatchMeans {
    /// At most `2 × target` points (target ≥ 1).
    pub fn new(target: usize) -> Self {
        Self {
            target: target.max(1),
            batch: 1,
            full: Vec::new(),
            partial: Acc::default(),
        }
    }

    /// Add the reading `y` at `x` (a request index, or a time); NaN counts as missing.
    pub fn push(&mut self, x: f64, y: f64) {
        self.partial.add(x, y);
        if self.partial.n >= self.batch {
            self.full.push(std::mem::take(&mut self.partial));
            if self.full.len() >= 2 * self.target {
                self.full = self
                    .full
                    .chunks(2)
                    .map(|c| c.iter().copied().fold(Acc::default(), Acc::merge))
                    .collect();
                self.batch *= 2;
            }
        }
    }

    /// Readings pushed so far.
    pub fn count(&self) -> u64 {
        self.full.iter().map(|a| a.n).sum::<u64>() + self.partial.n
    }

    /// The batched series so far.
    pub fn finish(&self) -> Batched {
        let (x, y) = self
            .full
            .iter()
            .chain((self.partial.n > 0).then_some(&self.partial))
            .map(Acc::point)
            .unzip();
        Batched {
            batch: self.batch,
            readings: self.count(),
            x,
            y,
        }
    }
}

/// A series of batch means: `y[i]` is the mean of the readings of batch `i`, `x[i]` the mean of
/// their positions; every batch but the last holds `batch` readings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batched {
    /// Readings per point (1: raw readings).
    pub batch: u64,
    /// Readings in all (the last batch may be short).
    #[serde(default)]
    pub readings: u64,
    /// Positions (request index, or hours since the phase started).
    pub x: Vec<f64>,
    /// Means (NaN where a batch had no finite reading).
    #[serde(with = "crate::util::nan_null_vec")]
    pub y: Vec<f64>,
}

impl Batched {
    /// Raw readings after requests `first`, `first + 1`, … reduced to at most [`MAX_POINTS`].
    pub fn from_requests(values: &[f64], first: u64) -> Self {
        if values.len() <= MAX_POINTS {
            return Self {
                batch: 1,
                readings: values.len() as u64,
                x: (0..values.len())
                    .map(|i| (first + i as u64) as f64)
                    .collect(),
                y: values.to_vec(),
            };
        }
        let mut b = BatchMeans::default();
        for (i, v) in values.iter().enumerate() {
            b.push((first + i as u64) as f64, *v);
        }
        b.finish()
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there is no point.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_series_are_kept_whole() {
        let b = Batched::from_requests(&[1.0, 2.0, 3.0], 5);
        assert_eq!(b.batch, 1);
        assert_eq!(b.x, [5.0, 6.0, 7.0]);
        assert_eq!(b.y, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn long_series_stay_bounded_and_keep_the_line() {
        let mut b = BatchMeans::new(100);
        for i in 0..1_000_000u64 {
            b.push(i as f64, 3.0 * i as f64 + 7.0);
        }
        let out = b.finish();
        assert!(out.len() <= 200 && out.len() >= 100, "{}", out.len());
        assert_eq!(b.count(), 1_000_000);
        // A line's batch means lie on the same line.
        for (x, y) in out.x.iter().zip(&out.y) {
            assert!(
                (y - (3.0 * x + 7.0)).abs() < 1e-6 * y.abs().max(1.0),
                "{x} {y}"
            );
        }
        assert!(out.batch.is_power_of_two());
    }

    #[test]
    fn missing_readings_do_not_count_toward_the_mean() {
        let mut b = BatchMeans::new(2);
        for (x, y) in [(0.0, 1.0), (1.0, f64::NAN), (2.0, 3.0), (3.0, 5.0)] {
            b.push(x, y);
        }
        let out = b.finish();
        assert_eq!(out.batch, 2);
        assert_eq!(out.y, [1.0, 4.0]);
        assert_eq!(out.x, [0.5, 2.5]);
        assert_eq!(out.readings, 4);
        let mut nan = BatchMeans::new(1);
        nan.push(0.0, f64::NAN);
        assert!(nan.finish().y[0].is_nan());
    }
}
