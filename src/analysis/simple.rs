//! First-cut per-metric analysis: least-squares slope with a normal interval.

use super::{ConfidenceInterval, Estimate, MetricAnalysis, Outcome, RequestSeries, SeedBand, Thresholds};

const MIB: f64 = 1024.0 * 1024.0;

fn ols(values: &[f64], level: f64) -> Option<Estimate> {
    let n = values.len();
    if n < 3 {
        return None;
    }
    let nf = n as f64;
    let mx = (nf - 1.0) / 2.0;
    let my = values.iter().sum::<f64>() / nf;
    let sxx: f64 = (0..n).map(|i| (i as f64 - mx).powi(2)).sum();
    let sxy: f64 = values.iter().enumerate().map(|(i, y)| (i as f64 - mx) * (y - my)).sum();
    let b = sxy / sxx;
    let a = my - b * mx;
    let rss: f64 = values.iter().enumerate().map(|(i, y)| (y - a - b * i as f64).powi(2)).sum();
    let se = (rss / (nf - 2.0) / sxx).sqrt();
    let z = if level >= 0.99 { 2.576 } else { 1.96 };
    Some(Estimate { point: b, std_err: se, ci: ConfidenceInterval { level, lo: b - z * se, hi: b + z * se } })
}

pub(super) fn analyze_one(s: &RequestSeries, t: &Thresholds) -> MetricAnalysis {
    let rule = t.rule_for(&s.metric);
    let cut = t.min_warmup_requests.min(s.values.len());
    let window: Vec<f64> = s.values[cut..].iter().copied().filter(|v| v.is_finite()).collect();
    let n = window.len();
    let baseline = window.first().copied().unwrap_or(f64::NAN);
    let last = window.last().copied().unwrap_or(f64::NAN);
    let peak = window.iter().copied().fold(f64::NAN, f64::max);
    let growth = last - baseline;
    let slope = ols(&window, t.confidence);
    let late_slope = ols(&window[n / 2..], t.confidence);
    let mut reasons = Vec::new();
    let outcome = match (rule, slope, late_slope) {
        (None, _, _) => Outcome::Pass,
        (Some(_), None, _) | (Some(_), _, None) => {
            reasons.push(format!("only {n} measured requests: too few to estimate a trend"));
            Outcome::Inconclusive
        }
        (Some(r), Some(s), Some(l)) => {
            let limit = r.max_slope_per_request;
            if growth < r.min_growth || s.ci.hi < limit {
                reasons.push(format!("slope {:.0}/request, below the limit {limit:.0}", s.point));
                Outcome::Pass
            } else if s.ci.lo > limit && l.ci.lo > limit {
                reasons.push(format!(
                    "growing {:.0}/request (CI {:.0}..{:.0}), above the limit {limit:.0}, and still growing at the end",
                    s.point, s.ci.lo, s.ci.hi
                ));
                Outcome::Leak
            } else {
                reasons.push(format!("slope {:.0}/request is not clearly above or below {limit:.0}", s.point));
                Outcome::Inconclusive
            }
        }
    };
    let residual = (!s.cooldown.is_empty())
        .then(|| s.cooldown.iter().sum::<f64>() / s.cooldown.len() as f64 - baseline);
    let per100 = if n > 1 { growth / (n - 1) as f64 * 100.0 } else { 0.0 };
    let seed_band = s.metric.contains("rss").then_some(()).or(s.metric.starts_with("gpu").then_some(())).map(|_| {
        if per100 < 100.0 * MIB {
            SeedBand::Stable
        } else if per100 <= 500.0 * MIB {
            SeedBand::Concern
        } else {
            SeedBand::Leak
        }
    });
    let requests_to_oom = match (s.headroom, slope) {
        (Some(h), Some(e)) if e.point > 0.0 => Some(h / e.point),
        _ => None,
    };
    MetricAnalysis {
        metric: s.metric.clone(),
        judged: rule.is_some(),
        warmup_cut: cut,
        n,
        baseline,
        last,
        peak,
        growth,
        slope,
        late_slope,
        p_value: None,
        residual,
        seed_band,
        requests_to_oom,
        outcome,
        reasons,
    }
}
