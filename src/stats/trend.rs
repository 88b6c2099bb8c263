//! Trend: Theil–Sen slope, Sen's Kendall-based interval widened for autocorrelation, and the
//! one-sided Mann–Kendall p-value of "slope <= threshold".
//!
//! Why not a bootstrap: memory series are step-shaped and autocorrelated, so a block
//! bootstrap needs blocks as long as the steps are apart (20–40 requests for a GPU staircase),
//! which leaves two or three blocks in a 100-request run and an interval that is mostly
//! resampling noise. The Kendall interval instead inverts a rank test whose variance is
//! inflated by the Hamed–Rao (1998) effective-sample-size factor computed from the rank
//! autocorrelation of the detrended series; it is exact-ish for white noise, honest for
//! steps, needs no random draws, and costs one sort of the n(n-1)/2 pairwise slopes.
//! docs/design/statistics.md has the comparison.

use super::sample::{Sample, median_in_place};
use super::{ConfidenceInterval, Estimate};

/// Fewest readings a slope is estimated from.
pub(crate) const MIN_POINTS: usize = 3;

/// A fitted trend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Trend {
    /// Slope in units per request, with its interval.
    pub(crate) estimate: Estimate,
    /// Variance inflation of the Kendall statistic for autocorrelation (>= 1; n / ESS).
    pub(crate) inflation: f64,
}

/// Theil–Sen slope of `s` with Sen's interval at `level`, widened for autocorrelation.
///
/// None with fewer than [`MIN_POINTS`] readings.
pub(crate) fn theil_sen(s: &Sample, level: f64) -> Option<Trend> {
    let n = s.len();
    if n < MIN_POINTS {
        return None;
    }
    let (x, y) = (s.x(), s.y());
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            slopes.push((y[j] - y[i]) / (x[j] - x[i]));
        }
    }
    let point = median_in_place(&mut slopes);
    let inflation = hamed_rao_inflation(s, point);
    let nf = n as f64;
    let var_s = nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0 * inflation;
    let z = normal_quantile(0.5 + level / 2.0);
    let c = z * var_s.sqrt();
    let big_n = slopes.len() as f64;
    // Sen (1968): the interval runs from the M1-th to the (M2+1)-th ordered slope
    // (1-based), M1 = (N - C)/2, M2 = (N + C)/2; interpolate between ranks.
    slopes.sort_unstable_by(f64::total_cmp);
    let lo = rank_value(&slopes, (big_n - c) / 2.0 - 1.0);
    let hi = rank_value(&slopes, (big_n + c) / 2.0);
    let std_err = if z > 0.0 { (hi - lo) / (2.0 * z) } else { 0.0 };
    Some(Trend {
        estimate: Estimate {
            point,
            std_err,
            ci: ConfidenceInterval { level, lo, hi },
        },
        inflation,
    })
}

/// Value at a fractional 0-based rank of sorted `v`, clamped to its ends.
fn rank_value(v: &[f64], rank: f64) -> f64 {
    let r = rank.clamp(0.0, (v.len() - 1) as f64);
    let (i, frac) = (r.floor() as usize, r.fract());
    if i + 1 < v.len() {
        v[i] + frac * (v[i + 1] - v[i])
    } else {
        v[i]
    }
}

/// One-sided p-value of H0 "slope <= threshold": Mann–Kendall on `y - threshold * x`,
/// with the tie-corrected variance times the autocorrelation `inflation`.
pub(crate) fn p_above(s: &Sample, threshold: f64, inflation: f64) -> f64 {
    let z: Vec<f64> = s
        .x()
        .iter()
        .zip(s.y())
        .map(|(x, y)| y - threshold * x)
        .collect();
    let n = z.len();
    let mut stat = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            stat += match z[j].total_cmp(&z[i]) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    let var = kendall_var_ties(&z) * inflation;
    if var <= 0.0 {
        return if stat > 0 { 0.0 } else { 1.0 };
    }
    // Continuity correction: S moves in steps of 2.
    let corrected = stat as f64 - (stat.signum() as f64);
    normal_sf(corrected / var.sqrt())
}

/// Var(S) of Mann–Kendall with the usual correction for tied values.
fn kendall_var_ties(z: &[f64]) -> f64 {
    let nf = z.len() as f64;
    let mut sorted = z.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let j = sorted[i..].iter().take_while(|v| **v == sorted[i]).count();
        let t = j as f64;
        ties += t * (t - 1.0) * (2.0 * t + 5.0);
        i += j;
    }
    (nf * (nf - 1.0) * (2.0 * nf + 5.0) - ties) / 18.0
}

/// Hamed & Rao (1998) variance inflation n/n*: rank autocorrelation of the series detrended
/// by `slope`, significant lags only, floored at 1 so the interval is never narrower than
/// the independent-noise one.
fn hamed_rao_inflation(s: &Sample, slope: f64) -> f64 {
    let n = s.len();
    let resid: Vec<f64> = s
        .x()
        .iter()
        .zip(s.y())
        .map(|(x, y)| y - slope * x)
        .collect();
    let ranks = average_ranks(&resid);
    let mean = (n as f64 + 1.0) / 2.0;
    let dev: Vec<f64> = ranks.iter().map(|r| r - mean).collect();
    let denom: f64 = dev.iter().map(|d| d * d).sum();
    if denom <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let significant = normal_quantile(0.975) / nf.sqrt();
    let mut acc = 0.0;
    for k in 1..n.saturating_sub(2) {
        let rho: f64 = (0..n - k).map(|i| dev[i] * dev[i + k]).sum::<f64>() / denom;
        if rho.abs() > significant {
            let m = (n - k) as f64;
            acc += m * (m - 1.0) * (m - 2.0) * rho;
        }
    }
    let factor = 1.0 + 2.0 * acc / (nf * (nf - 1.0) * (nf - 2.0));
    factor.clamp(1.0, nf)
}

/// Ranks 1..=n, ties sharing their average rank.
fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_unstable_by(|a, b| v[*a].total_cmp(&v[*b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let j = idx[i..].iter().take_while(|k| v[**k] == v[idx[i]]).count();
        let avg = i as f64 + (j as f64 + 1.0) / 2.0;
        for k in &idx[i..i + j] {
            ranks[*k] = avg;
        }
        i += j;
    }
    ranks
}

/// Upper tail of the standard normal, P(Z > z).
pub(crate) fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7,
/// ample for p-values compared against 0.05 / m).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
pub(crate) fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(v: &[f64]) -> Sample {
        Sample::from_values(v, 0).0.unwrap()
    }

    #[test]
    fn normal_functions() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-5);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_sf(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_sf(-1.0) - 0.841_344_7).abs() < 1e-6);
    }

    #[test]
    fn noiseless_line_has_its_gradient_and_a_tight_interval() {
        let v: Vec<f64> = (0..50).map(|i| 7.0 + 3.5 * i as f64).collect();
        let t = theil_sen(&sample(&v), 0.95).unwrap();
        assert_eq!(t.estimate.point, 3.5);
        assert_eq!((t.estimate.ci.lo, t.estimate.ci.hi), (3.5, 3.5));
    }

    #[test]
    fn too_few_points_is_none() {
        assert!(theil_sen(&sample(&[1.0, 2.0]), 0.95).is_none());
    }

    #[test]
    fn p_value_of_a_clear_trend_is_small_and_of_flat_is_large() {
        let v: Vec<f64> = (0..60)
            .map(|i| 10.0 * i as f64 + if i % 2 == 0 { 3.0 } else { -3.0 })
            .collect();
        let s = sample(&v);
        assert!(p_above(&s, 5.0, 1.0) < 1e-6);
        assert!(p_above(&s, 15.0, 1.0) > 0.99);
    }

    #[test]
    fn autocorrelation_inflates_the_variance() {
        // A staircase: residuals form a sawtooth, strongly autocorrelated.
        let v: Vec<f64> = (0..100).map(|i| ((i / 25) * 100) as f64).collect();
        let f = hamed_rao_inflation(&sample(&v), 4.0);
        assert!(f > 1.5, "inflation {f}");
    }
}
