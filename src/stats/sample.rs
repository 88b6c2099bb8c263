//! The checked sample: request indices and finite readings, built once.
//!
//! Every statistic downstream may assume what the constructor checked (non-empty, finite,
//! strictly increasing request indices), so none of them re-validates or returns NaN.

/// Finite readings with the request index each was taken after.
///
/// Missing readings (NaN, ±inf) are dropped, not interpolated: the request index is kept as
/// the x coordinate, so a slope stays "per request" across the gaps.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    x: Vec<f64>,
    y: Vec<f64>,
}

impl Sample {
    /// Build from readings indexed by request number; returns the sample (None if no finite
    /// reading is left) and the number of readings dropped as missing.
    #[cfg(test)]
    pub(crate) fn from_values(values: &[f64], first_index: usize) -> (Option<Self>, usize) {
        let (x, y): (Vec<f64>, Vec<f64>) = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| ((first_index + i) as f64, *v))
            .unzip();
        let dropped = values.len() - y.len();
        ((!y.is_empty()).then_some(Self { x, y }), dropped)
    }

    /// Build from batch means (positions as recorded), skipping the first `skip` points; returns
    /// the sample (None if no finite point is left) and the number of points dropped as missing.
    pub(crate) fn from_batched(b: &super::Batched, skip: usize) -> (Option<Self>, usize) {
        let (x, y): (Vec<f64>, Vec<f64>) =
            b.x.iter()
                .zip(&b.y)
                .skip(skip)
                .filter(|(_, v)| v.is_finite())
                .map(|(x, v)| (*x, *v))
                .unzip();
        let dropped = b.len().saturating_sub(skip) - y.len();
        ((!y.is_empty()).then_some(Self { x, y }), dropped)
    }

    /// Build from points already checked by a sample (finite, x strictly increasing), such as
    /// a subset of one; None when empty.
    pub(crate) fn from_points(x: Vec<f64>, y: Vec<f64>) -> Option<Self> {
        debug_assert!(x.len() == y.len() && x.windows(2).all(|p| p[0] < p[1]));
        (!y.is_empty() && x.len() == y.len()).then_some(Self { x, y })
    }

    /// Number of readings (at least 1).
    pub(crate) fn len(&self) -> usize {
        self.y.len()
    }

    /// Request indices, strictly increasing.
    pub(crate) fn x(&self) -> &[f64] {
        &self.x
    }

    /// Readings, all finite.
    pub(crate) fn y(&self) -> &[f64] {
        &self.y
    }

    /// The readings from position `start` on (None when that leaves nothing).
    pub(crate) fn tail(&self, start: usize) -> Option<Self> {
        (start < self.len()).then(|| Self {
            x: self.x[start..].to_vec(),
            y: self.y[start..].to_vec(),
        })
    }

    /// The first `len` readings (None when `len` is 0; all of them when it is longer).
    pub(crate) fn head(&self, len: usize) -> Option<Self> {
        let len = len.min(self.len());
        (len > 0).then(|| Self {
            x: self.x[..len].to_vec(),
            y: self.y[..len].to_vec(),
        })
    }

    /// Median of the first `k` readings (k clamped to 1..=len).
    pub(crate) fn head_level(&self, k: usize) -> f64 {
        median(&self.y[..k.clamp(1, self.len())])
    }

    /// Median of the last `k` readings (k clamped to 1..=len).
    pub(crate) fn tail_level(&self, k: usize) -> f64 {
        median(&self.y[self.len() - k.clamp(1, self.len())..])
    }
}

/// Median of a non-empty slice of finite numbers (NaN for an empty one; callers never pass it).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    median_in_place(&mut v)
}

/// Median that reorders `v` (saves an allocation in the O(n²) Theil–Sen loop).
pub(crate) fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *hi;
    if n % 2 == 1 {
        hi
    } else {
        let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo + hi) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_missing_and_keeps_request_index() {
        let (s, dropped) = Sample::from_values(&[1.0, f64::NAN, 3.0, f64::INFINITY], 10);
        let s = s.unwrap();
        assert_eq!(dropped, 2);
        assert_eq!(s.x(), &[10.0, 12.0]);
        assert_eq!(s.y(), &[1.0, 3.0]);
    }

    #[test]
    fn empty_and_all_nan_are_none() {
        assert_eq!(Sample::from_values(&[], 0), (None, 0));
        assert_eq!(Sample::from_values(&[f64::NAN; 3], 0), (None, 3));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
