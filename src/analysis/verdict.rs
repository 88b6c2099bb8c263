//! One metric: measure it (warm-up cut, trends, levels), then judge it against its rule once
//! the p-values of all judged metrics have been corrected together.

use super::shapes::{
    DECEL_MIN_POINTS, MAX_DECEL_CUTS, Moves, decelerating, find_plateau, given_back, sawtooth,
    steps,
};
use super::units::{fmt_per_request, fmt_value};
use super::warmup;
use super::{MetricAnalysis, Outcome, RequestSeries, Rule, SeedBand, Thresholds};
use crate::stats::sample::{Sample, median};
use crate::stats::trend::{self, Trend};
use crate::tracker::metric::Unit;
use crate::util::MIB;

/// How the reason of a transient process's metric starts (see `analyze_with`).
pub(crate) const TRANSIENT: &str = "a transient process";

/// Fewest readings left after the warm-up cut for a judgement.
pub const MIN_JUDGED: usize = 10;
/// Missing readings above this share of the series are named in the reasons.
const MISSING_NOTE: f64 = 0.05;

/// Measure one series: everything but the outcome and the corrected p-value.
pub(crate) fn measure(
    s: &RequestSeries,
    t: &Thresholds,
) -> (MetricAnalysis, Option<Sample>, Option<Trend>) {
    let b = &s.values;
    let total = b.readings as usize;
    let batch = b.batch.max(1);
    // The request index of the first point's first request.
    let first =
        b.x.first()
            .map_or(0.0, |x| (x - (batch - 1) as f64 / 2.0).round().max(0.0));
    let half = first + (total / 2) as f64;
    let explicit = t.min_warmup_requests.min(total / 2);
    let skip =
        b.x.iter()
            .take_while(|x| **x < first + explicit as f64)
            .count();
    let (sample, dropped) = Sample::from_batched(b, skip);
    let rule = t.rule_for(&s.metric);
    let mut m = MetricAnalysis {
        metric: s.metric.clone(),
        unit: s.unit,
        judged: rule.is_some(),
        warmup_cut: explicit,
        n: 0,
        batch,
        requests: 0,
        baseline: f64::NAN,
        last: f64::NAN,
        peak: f64::NAN,
        growth: f64::NAN,
        late_growth: f64::NAN,
        slope: None,
        late_slope: None,
        p_value: None,
        p_value_adjusted: None,
        residual: None,
        seed_band: seed_band(s),
        requests_to_oom: None,
        requests_to_decide: None,
        missing: dropped,
        autocorrelation_inflation: None,
        hourly: Vec::new(),
        plateau: None,
        deceleration: None,
        sawtooth: None,
        steps: None,
        warmed_from: explicit,
        steady: false,
        given_back: None,
        per_day: None,
        by_kind: None,
        outcome: Outcome::Inconclusive,
        reasons: Vec::new(),
    };
    if dropped as f64 > MISSING_NOTE * b.len() as f64 {
        let what = if batch > 1 {
            "batches of readings"
        } else {
            "readings"
        };
        m.reasons.push(format!(
            "{dropped} of {} {what} were missing and were skipped",
            b.len()
        ));
    }
    let Some(sample) = sample else {
        return (m, None, None);
    };
    // The automatic cut may only take readings taken before the half-way request.
    let max_cut = sample.x().iter().take_while(|x| **x < half).count();
    let cut = warmup::mser5_cut(&sample, max_cut);
    // Where the measured requests started, for a plateau's growth (the warm-up cut may have
    // taken most of a cache's filling).
    let measured_start = sample.head_level((sample.len() / 10).max(3));
    let window = sample.tail(cut).unwrap_or(sample);
    // Growth that slowed down (a server warming up) is judged on its second half: what goes on
    // growing at the end is what a long run sees.
    let whole = window.clone();
    m.warmed_from = ((whole.x()[0] - (batch - 1) as f64 / 2.0).round() - first).max(0.0) as usize;
    let mut window = window;
    let mut still_slowing = false;
    for cut in 0..=MAX_DECEL_CUTS {
        let Some((late, early, late_fit)) = decelerating(&window, t.confidence) else {
            break;
        };
        if cut == MAX_DECEL_CUTS {
            still_slowing = true;
            break;
        }
        let from = (late.x()[0] - (batch - 1) as f64 / 2.0 - first).max(0.0);
        m.deceleration = Some(super::Deceleration {
            early: m.deceleration.map_or(early, |d| d.early),
            late: late_fit,
            from_request: from.round() as u64,
        });
        window = late;
    }
    // Growth that slowed down until too little was left to test is still warming up.
    if m.deceleration.is_some() && window.len() < 2 * DECEL_MIN_POINTS {
        still_slowing = true;
    }
    let n = window.len();
    let k = (n / 10).max(3);
    let window_first = (window.x()[0] - (batch - 1) as f64 / 2.0).round().max(0.0);
    m.warmup_cut = (window_first - first).max(0.0) as usize;
    m.n = n;
    m.requests = (total as u64).saturating_sub(m.warmup_cut as u64);
    m.baseline = window.head_level(k);
    m.last = window.y()[n - 1];
    m.peak = window.y().iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m.growth = window.tail_level(k) - m.baseline;
    if let Some(late) = window.tail(n / 2) {
        m.late_growth = late.tail_level(k) - late.head_level(k);
    }
    let fit = trend::theil_sen(&window, t.confidence);
    m.slope = fit.map(|f| f.estimate);
    m.autocorrelation_inflation = fit.map(|f| f.inflation);
    m.late_slope = window
        .tail(n / 2)
        .and_then(|w| trend::theil_sen(&w, t.confidence))
        .map(|f| f.estimate);
    // A straight line grows in both halves: growth confined to one (a step, a warm-up, a late
    // burst) is not a leak yet, whatever the slope over the whole window says.
    let early_slope = window
        .head(n / 2)
        .filter(|w| w.len() >= trend::MIN_POINTS)
        .and_then(|w| trend::theil_sen(&w, t.confidence))
        .map(|f| f.estimate);
    m.steady = !still_slowing
        && early_slope.is_some_and(|e| e.ci.lo > 0.0)
        && m.late_slope.is_some_and(|l| l.ci.lo > 0.0);
    if let (Some(r), Some(f)) = (rule, fit) {
        m.p_value = Some(trend::p_above(
            &window,
            r.max_slope_per_request,
            f.inflation,
        ));
    }
    let cool: Vec<f64> = s
        .cooldown
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if !cool.is_empty() {
        let cooled = median(&cool);
        m.residual = Some(cooled - m.baseline);
        if let Some(r) = rule {
            m.given_back = given_back(
                window.tail_level(k) - measured_start,
                cooled - measured_start,
                total as f64,
                r,
            );
        }
    }
    m.per_day = m.slope.map(|e| e.point * t.traffic_per_day);
    m.requests_to_oom = match (s.headroom, m.slope) {
        (Some(h), Some(e)) if h.is_finite() && h >= 0.0 && e.point > 0.0 => Some(h / e.point),
        _ => None,
    };
    // GPU memory grows in allocator segments: a staircase of 20 MiB steps has long flat
    // stretches that would read as "it stopped". Plateaus are looked for in host and /dev/shm
    // memory, where caches fill in small steps.
    let stepwise = s
        .metric
        .parse::<crate::tracker::metric::Metric>()
        .is_ok_and(|m| m.source == crate::tracker::metric::Source::Gpu);
    if let (Some(r), false) = (rule, stepwise) {
        let moves = Moves::of(&window);
        m.sawtooth = sawtooth(&window, &moves, r, t.confidence);
        m.steps = steps(&window, &moves, r, t.confidence);
        m.plateau = find_plateau(&whole, r, t.confidence, batch, first).map(|mut p| {
            // Report the growth from the first measured request, not from the cut.
            p.growth = p.growth.max(p.level - measured_start);
            p
        });
    }
    if let Some(g) = &mut m.given_back {
        g.capped = m.plateau.is_some();
    }
    (m, Some(window), fit)
}

/// The seed tool's rule: first-to-last growth scaled to 100 requests (byte metrics only).
fn seed_band(s: &RequestSeries) -> Option<SeedBand> {
    if s.unit != Unit::Bytes {
        return None;
    }
    let mut finite = s
        .values
        .x
        .iter()
        .zip(&s.values.y)
        .filter(|(_, v)| v.is_finite());
    let (x0, v0) = finite.next()?;
    let (x1, v1) = finite.next_back()?;
    let per100 = (v1 - v0) / (x1 - x0) * 100.0;
    Some(if per100 < 100.0 * MIB {
        SeedBand::Stable
    } else if per100 <= 500.0 * MIB {
        SeedBand::Concern
    } else {
        SeedBand::Leak
    })
}

/// Judge a measured metric, given its p-value after the correction across metrics.
pub(crate) fn judge(
    m: &mut MetricAnalysis,
    rule: Option<&Rule>,
    alpha: f64,
    total_requests: u64,
    traffic: f64,
) {
    let Some(rule) = rule else {
        m.outcome = Outcome::Pass;
        if !m.reasons.iter().any(|r| r.starts_with(TRANSIENT)) {
            m.reasons
                .push("not judged: no threshold rule matches this metric".into());
        }
        m.judged = false;
        return;
    };
    let unit = m.unit;
    let per = |v: f64| fmt_per_request(unit, v);
    let val = |v: f64| fmt_value(unit, v);
    let theta = rule.max_slope_per_request;
    let (Some(s), true) = (m.slope, m.n >= MIN_JUDGED) else {
        m.outcome = Outcome::Inconclusive;
        if m.n == 0 {
            m.reasons.push("no readings: nothing to judge".into());
        } else {
            m.reasons.push(format!(
                "only {} readings after the warm-up cut; a trend needs at least {MIN_JUDGED}",
                m.n
            ));
            // Twice the minimum: the automatic warm-up cut may take up to half a run.
            m.requests_to_decide =
                Some((2 * MIN_JUDGED as u64 * m.batch).max(4 * m.requests.max(m.n as u64)));
        }
        return;
    };
    let ci = format!("{}..{}", per(s.ci.lo), per(s.ci.hi));
    let level = (s.ci.level * 100.0).round();
    let p_adj = m.p_value_adjusted.unwrap_or(1.0);
    // Levelled off: the last half is confidently below the limit *and* grew less than the
    // floor. The second half of the test keeps a staircase whose last step came late (a long
    // flat run after a 20 MiB allocator segment) from passing for a plateau.
    let late_levelled =
        m.late_slope.is_some_and(|l| l.ci.hi < theta) && m.late_growth < rule.min_growth;
    if let Some(d) = m.deceleration {
        m.reasons.push(format!(
            "growth slowed from {} to {} (first and second half of the window): judged from request {} on, the first half as warm-up",
            per(d.early.point),
            per(d.late.point),
            d.from_request
        ));
    }
    let limit = format!("{} limit ({})", per(theta), super::budget(unit, theta));
    // "a sawtooth (N cycles, falls of H)" + `then` + " troughs grow T (CI lo..hi)".
    let sawtooth_text = |t: &super::Sawtooth, then: &str| {
        format!(
            "a sawtooth ({} cycles, falls of {}){then} troughs grow {} ({level}% CI {}..{})",
            t.cycles,
            val(t.height).trim_start_matches('+'),
            per(t.troughs.point),
            per(t.troughs.ci.lo),
            per(t.troughs.ci.hi),
        )
    };
    m.outcome = if let Some(p) = m.plateau {
        m.reasons.push(format!(
            "bounded growth: {}, flat since request {} ({} requests on the plateau, slope at most {}): a cache that filled, not a leak",
            val(p.growth),
            p.since_request,
            p.flat_requests,
            per(p.slope_hi.max(0.0))
        ));
        Outcome::Pass
    } else if let Some(g) = m.given_back {
        m.reasons.push(format!(
            "grew {} during the run and the cooldown gave it back ({} still held, within the limit): memory that is freed — a flushable cache or a collector's sawtooth — not a leak{}",
            val(g.grew),
            val(g.kept),
            if s.ci.lo > theta {
                "; no cap was seen: it grows until something flushes it"
            } else {
                ""
            }
        ));
        Outcome::Pass
    } else if let Some(t) = m.sawtooth.filter(|t| t.troughs.ci.hi < theta) {
        m.reasons.push(format!(
            "{}, confidently below the {limit} — memory freed cycle after cycle, not a leak",
            sawtooth_text(&t, ": its")
        ));
        Outcome::Pass
    } else if let Some(t) = m
        .sawtooth
        .filter(|t| t.troughs.ci.lo <= theta && p_adj <= alpha)
    {
        m.reasons.push(format!(
            "grows {} ({level}% CI {ci}) through {}: not clearly above the {limit}; a longer run would tell",
            per(s.point),
            sawtooth_text(&t, ", but its")
        ));
        m.requests_to_decide = Some(2 * total_requests);
        Outcome::Inconclusive
    } else if m.growth < rule.min_growth && p_adj <= alpha {
        // Confidently above the limit, but too little growth so far to count: a short run.
        m.reasons.push(format!(
            "grows {} ({level}% CI {ci}), above the {limit}, but grew only {} so far, below the {} floor",
            per(s.point),
            val(m.growth),
            val(rule.min_growth)
        ));
        let more = ((rule.min_growth - m.growth.max(0.0)) / s.point.max(f64::MIN_POSITIVE)).ceil();
        m.requests_to_decide = (more < 1e9).then(|| m.warmup_cut as u64 + m.requests + more as u64);
        Outcome::Inconclusive
    } else if s.ci.hi < theta {
        m.reasons.push(format!(
            "grows {} ({level}% CI {ci}), confidently below the {limit}",
            per(s.point),
        ));
        Outcome::Pass
    } else if m.growth < rule.min_growth && s.ci.lo <= 0.0 {
        m.reasons.push(format!(
            "grew {} over {} requests, below the {} floor, and not confidently at all ({level}% CI {ci})",
            val(m.growth),
            m.requests,
            val(rule.min_growth)
        ));
        Outcome::Pass
    } else if m.growth < rule.min_growth {
        // Small, but confidently growing: not a pass until the interval clears the limit.
        m.reasons.push(format!(
            "grows {} ({level}% CI {ci}): confidently growing, not yet clearly above or below the {limit}; grew {} so far",
            per(s.point),
            val(m.growth),
        ));
        m.requests_to_decide =
            requests_to_decide(s.point, s.ci.lo, s.ci.hi, theta, m.requests, m.warmup_cut);
        Outcome::Inconclusive
    } else if p_adj <= alpha && !late_levelled && m.steady {
        let late = m.late_slope.map_or("n/a".into(), |l| per(l.point));
        m.reasons.push(format!(
            "grows {} ({level}% CI {ci}), above the {limit} (p = {p_adj:.2e} after the correction across metrics), and still {late} over the last half",
            per(s.point),
        ));
        Outcome::Leak
    } else if p_adj <= alpha && !late_levelled {
        m.reasons.push(format!(
            "grows {} ({level}% CI {ci}), above the {limit}, but not like a straight line: {}; a longer run would tell",
            per(s.point),
            if m.deceleration.is_some() {
                "the growth is still slowing down (a warm-up)"
            } else {
                "one half of the window grew and the other did not (a step, a burst, a late warm-up)"
            }
        ));
        m.requests_to_decide = Some(2 * total_requests);
        Outcome::Inconclusive
    } else if p_adj <= alpha {
        m.reasons.push(format!(
            "grew {} ({level}% CI {ci}) but levelled off over the last half ({}): a bounded cache or a late warm-up; a longer run would tell",
            per(s.point),
            per(m.late_slope.map_or(0.0, |l| l.point))
        ));
        m.requests_to_decide = Some(2 * total_requests);
        Outcome::Inconclusive
    } else {
        m.reasons.push(format!(
            "grows {} ({level}% CI {ci}): not clearly above or below the {limit} (p = {p_adj:.2} after the correction across metrics)",
            per(s.point),
        ));
        m.requests_to_decide =
            requests_to_decide(s.point, s.ci.lo, s.ci.hi, theta, m.requests, m.warmup_cut);
        Outcome::Inconclusive
    };
    if let (Some(day), true) = (
        m.per_day,
        m.outcome != Outcome::Pass && unit == super::Unit::Bytes,
    ) {
        m.reasons.push(format!(
            "at {} requests/day that is {}/day",
            crate::util::human_count(traffic),
            crate::util::signed_bytes(day)
        ));
    }
    if let Some(r) = m.requests_to_decide {
        m.reasons
            .push(format!("about {r} measured requests would decide it"));
    }
    residual_reason(m, &val);
    if let Some(oom) = m.requests_to_oom.filter(|_| m.outcome == Outcome::Leak) {
        m.reasons.push(format!(
            "at this rate the headroom runs out after about {} more requests",
            crate::util::human_count(oom)
        ));
    }
}

/// Requests (warm-up included) at which the interval, shrinking like n^-3/2 as a slope's
/// standard error does, would no longer straddle the threshold. None when the estimate sits
/// on the threshold (no run length decides it).
fn requests_to_decide(point: f64, lo: f64, hi: f64, theta: f64, n: u64, cut: usize) -> Option<u64> {
    let (width, gap) = if point > theta {
        (point - lo, point - theta)
    } else {
        (hi - point, theta - point)
    };
    if gap <= 0.0 || !width.is_finite() {
        return None;
    }
    let needed = n as f64 * (width / gap).max(1.0).powf(2.0 / 3.0);
    (needed < 1e9).then(|| (needed.ceil() as u64 + cut as u64).max(n + cut as u64 + 1))
}

/// The cooldown residual only ever adds a sentence: Python servers rarely hand freed memory
/// back, so a high residual supports a leak and a low one hints at a cache, but neither
/// overrules the trend.
fn residual_reason(m: &mut MetricAnalysis, val: &dyn Fn(f64) -> String) {
    let Some(r) = m.residual else { return };
    let growth = m.growth.max(0.0);
    let sentence = match m.outcome {
        Outcome::Leak if r >= 0.5 * growth => {
            format!(
                "after the cooldown it stayed {} above the baseline: not given back, which supports the leak",
                val(r)
            )
        }
        Outcome::Leak => format!(
            "after the cooldown it fell back to {} from the baseline: some of it is reclaimable, but the growth during the run says leak",
            val(r)
        ),
        Outcome::Inconclusive if r < 0.25 * growth => {
            format!(
                "after the cooldown it fell back to {} from the baseline, which points to a cache",
                val(r)
            )
        }
        Outcome::Inconclusive => {
            format!(
                "after the cooldown it stayed {} above the baseline (a hint, not a verdict)",
                val(r)
            )
        }
        Outcome::Pass => return,
    };
    m.reasons.push(sentence);
}
