//! Growth per hour: the soak's judgement. A per-request limit tuned for 100-request tests
//! (32 KiB) lets a 4 KiB/request leak through, yet at production traffic that is gigabytes a
//! day; and memory that grows while no request arrives (timers, metrics collectors) has no
//! per-request slope at all. Both are judged here against time: the readings of the measured
//! phase (and of the idle phase, on its own) against hours since the phase started, with the
//! same estimator, interval and test as the per-request verdict.

use serde::{Deserialize, Serialize};

use super::{Batched, Estimate, Outcome, Thresholds, warmup};
use crate::stats::sample::Sample;
use crate::stats::trend;

/// Which stretch of the run an hourly judgement covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stretch {
    /// The measured requests.
    Traffic,
    /// The idle phase: no request at all.
    Idle,
}

/// A metric's growth against time over one stretch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourlyAnalysis {
    /// Which stretch.
    pub stretch: Stretch,
    /// Hours covered (after the warm-up cut).
    pub hours: f64,
    /// Points (batch means of readings).
    pub n: usize,
    /// Growth per hour.
    pub slope: Option<Estimate>,
    /// The limit it was judged against (bytes per hour).
    pub limit: f64,
    /// One-sided p-value of "growth per hour <= limit" (before the correction across metrics).
    pub p_value: Option<f64>,
    /// After the Holm correction across every judged test of the run.
    pub p_value_adjusted: Option<f64>,
    /// Hours until the headroom is used up at this rate.
    pub hours_to_oom: Option<f64>,
    /// Outcome of this judgement.
    pub outcome: Outcome,
    /// Why, for a person.
    pub reason: String,
}

/// The hourly analysis of `series` (readings against hours), before the correction across
/// metrics; `None` when the stretch is shorter than `thresholds.soak_min_hours` or too sparse.
pub(crate) fn measure(
    series: &Batched,
    stretch: Stretch,
    limit: f64,
    headroom: Option<f64>,
    t: &Thresholds,
) -> Option<HourlyAnalysis> {
    let (sample, _) = Sample::from_batched(series, 0);
    let sample = sample?;
    let span = sample.x().last()? - sample.x().first()?;
    if span < t.soak_min_hours || sample.len() < super::verdict::MIN_JUDGED {
        return None;
    }
    let cut = warmup::mser5_cut(&sample, sample.len() / 2);
    let window = sample.tail(cut).unwrap_or(sample);
    let hours = window.x().last()? - window.x().first()?;
    let fit = trend::theil_sen(&window, t.confidence)?;
    let p = trend::p_above(&window, limit, fit.inflation);
    let hours_to_oom = match headroom {
        Some(h) if h.is_finite() && h >= 0.0 && fit.estimate.point > 0.0 => {
            Some(h / fit.estimate.point)
        }
        _ => None,
    };
    Some(HourlyAnalysis {
        stretch,
        hours,
        n: window.len(),
        slope: Some(fit.estimate),
        limit,
        p_value: Some(p),
        p_value_adjusted: None,
        hours_to_oom,
        outcome: Outcome::Inconclusive,
        reason: String::new(),
    })
}

/// Judge an hourly analysis once its p-value is corrected; `floor` is the metric's growth floor.
pub(crate) fn judge(h: &mut HourlyAnalysis, alpha: f64, floor: f64, fmt: &dyn Fn(f64) -> String) {
    let Some(s) = h.slope else {
        h.outcome = Outcome::Inconclusive;
        h.reason = "no trend over time".into();
        return;
    };
    let what = match h.stretch {
        Stretch::Traffic => "under traffic",
        Stretch::Idle => "while idle (no request at all)",
    };
    let p = h.p_value_adjusted.or(h.p_value).unwrap_or(1.0);
    let grown = s.point * h.hours;
    let per_hour = |v: f64| format!("{}/hour", fmt(v));
    let ci = format!("{}..{}", per_hour(s.ci.lo), per_hour(s.ci.hi));
    h.outcome = if grown < floor {
        h.reason = format!(
            "{what}: grew {} over {}, below the {} floor",
            fmt(grown),
            human_hours(h.hours),
            fmt(floor)
        );
        Outcome::Pass
    } else if s.ci.hi < h.limit {
        h.reason = format!(
            "{what}: grows {} (CI {ci}), confidently below the {} soak limit",
            per_hour(s.point),
            per_hour(h.limit)
        );
        Outcome::Pass
    } else if p <= alpha {
        h.reason = format!(
            "{what}: grows {} (CI {ci}) over {}, above the {} soak limit (p = {p:.2e} after the correction across metrics)",
            per_hour(s.point),
            human_hours(h.hours),
            per_hour(h.limit)
        );
        Outcome::Leak
    } else {
        h.reason = format!(
            "{what}: grows {} (CI {ci}): not clearly above or below the {} soak limit",
            per_hour(s.point),
            per_hour(h.limit)
        );
        Outcome::Inconclusive
    };
    if let Some(oom) = h.hours_to_oom.filter(|_| h.outcome == Outcome::Leak) {
        h.reason.push_str(&format!(
            "; at this rate the headroom runs out in about {}",
            human_hours(oom)
        ));
    }
}

/// `40 s`, `14 min`, `3.2 h`, `2.1 days`.
pub(crate) fn human_hours(h: f64) -> String {
    if h < 1.0 / 60.0 {
        format!("{:.0} s", h * 3600.0)
    } else if h < 1.0 {
        format!("{:.0} min", h * 60.0)
    } else if h < 48.0 {
        format!("{h:.1} h")
    } else {
        format!("{:.1} days", h / 24.0)
    }
}
