//! Warm-up cut: MSER-5 on linearly detrended batch means.
//!
//! Plain MSER (White 1997) picks the truncation that minimises the squared standard error of
//! the mean of what is left; it assumes a flat steady state. A leaking series has none, and
//! what we estimate is a slope, not a mean. So the cut here minimises the squared standard
//! error of the least-squares slope of the batch means, residual variance / Sxx, which
//! falls like 1/m³ in the m batches kept: a cut must shrink the residual variance roughly
//! eightfold to be worth half the run. A warm-up step or a cache that fills and then
//! plateaus bends the line that much and is cut; a steady leak is a line and is kept whole,
//! and an allocator step in mid-run (a fraction of a MiB) is not worth the data it would cost
//! (plain MSER keeps cutting to get past such steps, which halved power in calibration).

use crate::stats::sample::Sample;

/// Batch size of MSER-5: batch means tame single-request noise before the search.
const BATCH: usize = 5;
/// A cut is taken only where it beats every smaller cut by more than this factor.
const TOLERANCE: f64 = 2.0;
/// Fewest batches a line is fitted to (with two parameters, fewer leave no residual).
const MIN_BATCHES: usize = 4;

/// How many leading readings of `s` to drop (a multiple of 5, at most `max_cut`).
pub(crate) fn mser5_cut(s: &Sample, max_cut: usize) -> usize {
    let nb = s.len() / BATCH;
    if nb < MIN_BATCHES + 1 {
        return 0;
    }
    let means: Vec<(f64, f64)> = (0..nb)
        .map(|b| {
            let r = b * BATCH..(b + 1) * BATCH;
            let mx = s.x()[r.clone()].iter().sum::<f64>() / BATCH as f64;
            let my = s.y()[r].iter().sum::<f64>() / BATCH as f64;
            (mx, my)
        })
        .collect();
    let max_d = (max_cut / BATCH).min(nb - MIN_BATCHES);
    let stats: Vec<f64> = (0..=max_d)
        .map(|d| {
            let rest = &means[d..];
            let m = rest.len() as f64;
            let (sse, sxx) = line_sse(rest);
            sse / (m - 2.0) / sxx
        })
        .collect();
    let min = stats.iter().copied().fold(f64::INFINITY, f64::min);
    // The statistic is itself noisy (a staircase's residual variance swings with the phase of
    // its steps): take the smallest cut within a factor TOLERANCE of the best, so data is only
    // discarded for a clear gain.
    let best = stats
        .iter()
        .position(|s| *s <= TOLERANCE * min)
        .unwrap_or(0);
    best * BATCH
}

/// Sum of squared residuals of the least-squares line through `pts`, and Sxx.
fn line_sse(pts: &[(f64, f64)]) -> (f64, f64) {
    let m = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / m;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / m;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    // Batch x's are distinct request indices, so sxx > 0 with MIN_BATCHES points.
    ((syy - sxy * sxy / sxx).max(0.0), sxx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(v: &[f64]) -> Sample {
        Sample::from_values(v, 0).0.unwrap()
    }

    fn jitter(i: usize) -> f64 {
        // Deterministic pseudo-noise, enough to make the line fit imperfect.
        ((i * 7919 % 101) as f64 - 50.0) * 10.0
    }

    #[test]
    fn cuts_a_warm_up_step() {
        let v: Vec<f64> = (0..100)
            .map(|i| if i < 12 { 0.0 } else { 1e6 } + jitter(i))
            .collect();
        let cut = mser5_cut(&sample(&v), 50);
        assert!((10..=20).contains(&cut), "cut {cut}");
    }

    #[test]
    fn keeps_a_steady_leak() {
        let v: Vec<f64> = (0..100).map(|i| 1e5 * i as f64 + jitter(i)).collect();
        assert!(mser5_cut(&sample(&v), 50) <= 10);
    }

    #[test]
    fn cuts_a_cache_that_fills_then_plateaus() {
        let v: Vec<f64> = (0..100)
            .map(|i| 1e5 * (i.min(30) as f64) + jitter(i))
            .collect();
        let cut = mser5_cut(&sample(&v), 50);
        assert!((25..=40).contains(&cut), "cut {cut}");
    }

    #[test]
    fn never_beyond_the_limit_and_short_series_are_left_alone() {
        let v: Vec<f64> = (0..100)
            .map(|i| 1e5 * (i.min(80) as f64) + jitter(i))
            .collect();
        assert!(mser5_cut(&sample(&v), 50) <= 50);
        assert_eq!(mser5_cut(&sample(&[1.0, 5.0, 3.0]), 50), 0);
    }
}
