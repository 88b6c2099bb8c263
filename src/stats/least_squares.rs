//! Least squares, both kinds the crate fits: a line through points (the sweep's growth per
//! request against a knob) and a linear model with Newey–West standard errors (growth per
//! request split by request kind, `analysis::by_kind`).

use serde::{Deserialize, Serialize};

/// Least-squares line of growth per request against x.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// Bytes per request per unit of x (per pixel, per image, …).
    pub per_unit: f64,
    /// Bytes per request at x = 0: growth that does not follow the knob.
    pub intercept: f64,
    /// Share of the variance the line explains.
    pub r2: f64,
}

/// Ordinary least squares over `(x, y)`; `None` with fewer than two distinct x.
pub fn fit(points: &[(f64, f64)]) -> Option<Fit> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let per_unit = sxy / sxx;
    let intercept = my - per_unit * mx;
    let ss_res: f64 = points
        .iter()
        .map(|p| (p.1 - intercept - per_unit * p.0).powi(2))
        .sum();
    let ss_tot: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    };
    Some(Fit {
        per_unit,
        intercept,
        r2,
    })
}

/// A linear model fitted by [`ols_newey_west`]: coefficients and their standard errors.
pub(crate) struct Regression {
    /// The coefficients, one per column of the design.
    pub(crate) beta: Vec<f64>,
    /// Their Newey–West standard errors.
    pub(crate) se: Vec<f64>,
}

/// Least squares of `y` on `x` (rows), with Newey–West (Bartlett) standard errors.
pub(crate) fn ols_newey_west(x: &[Vec<f64>], y: &[f64]) -> Option<Regression> {
    let n = x.len();
    let p = x.first()?.len();
    let mut xtx = vec![vec![0.0; p]; p];
    let mut xty = vec![0.0; p];
    for (row, &yi) in x.iter().zip(y) {
        for a in 0..p {
            xty[a] += row[a] * yi;
            for b in 0..p {
                xtx[a][b] += row[a] * row[b];
            }
        }
    }
    let inv = invert(&xtx)?;
    let beta: Vec<f64> = (0..p)
        .map(|a| (0..p).map(|b| inv[a][b] * xty[b]).sum())
        .collect();
    let resid: Vec<f64> = x
        .iter()
        .zip(y)
        .map(|(row, &yi)| yi - row.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>())
        .collect();
    // Bandwidth: wider than the textbook rule, since allocator steps make long correlations.
    let lags = ((n as f64).cbrt() * 1.5).floor().max(4.0) as usize;
    let mut s = vec![vec![0.0; p]; p];
    for lag in 0..=lags.min(n.saturating_sub(1)) {
        let w = if lag == 0 {
            1.0
        } else {
            1.0 - lag as f64 / (lags as f64 + 1.0)
        };
        for t in lag..n {
            let (u, v) = (resid[t], resid[t - lag]);
            for a in 0..p {
                for b in 0..p {
                    let term = x[t][a] * x[t - lag][b] * u * v;
                    s[a][b] += w * term;
                    if lag > 0 {
                        s[b][a] += w * term;
                    }
                }
            }
        }
    }
    let dof = n.saturating_sub(p).max(1) as f64;
    let scale = n as f64 / dof;
    let se: Vec<f64> = (0..p)
        .map(|a| {
            let mut v = 0.0;
            for i in 0..p {
                for j in 0..p {
                    v += inv[a][i] * s[i][j] * inv[j][a];
                }
            }
            (v * scale).max(0.0).sqrt()
        })
        .collect();
    Some(Regression { beta, se })
}

/// The inverse of a small symmetric matrix (Gauss–Jordan with partial pivoting); `None` when it
/// is singular.
fn invert(m: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let p = m.len();
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut r = row.clone();
            r.extend((0..p).map(|j| if i == j { 1.0 } else { 0.0 }));
            r
        })
        .collect();
    let scale = m
        .iter()
        .flatten()
        .fold(0.0f64, |acc, v| acc.max(v.abs()))
        .max(1.0);
    for col in 0..p {
        let pivot = (col..p).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= scale * 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let d = a[col][col];
        for v in &mut a[col] {
            *v /= d;
        }
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            let f = row[col];
            if r != col && f != 0.0 {
                for (v, pv) in row.iter_mut().zip(&pivot_row) {
                    *v -= f * pv;
                }
            }
        }
    }
    Some(a.into_iter().map(|r| r[p..].to_vec()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inversion_is_exact_on_a_known_matrix() {
        let inv = invert(&[vec![4.0, 7.0], vec![2.0, 6.0]]).unwrap_or_default();
        let want = [[0.6, -0.7], [-0.2, 0.4]];
        for (r, w) in inv.iter().zip(want) {
            for (a, b) in r.iter().zip(w) {
                assert!((a - b).abs() < 1e-12);
            }
        }
        assert!(invert(&[vec![1.0, 2.0], vec![2.0, 4.0]]).is_none());
    }
}
