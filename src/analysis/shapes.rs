//! The shapes a window's growth can take besides a straight line, each found before the verdict
//! judges the line: a collector's sawtooth, a few jumps, growth that slows down, growth the
//! cooldown gave back, and a cache that filled and stopped.

use super::{Plateau, Rule};
use crate::stats::sample::{Sample, median};
use crate::stats::trend;

/// How a window moves from one reading to the next: the differences and their median size (the
/// pace a climb or the noise sets), which the sawtooth and the jumps are measured against.
pub(super) struct Moves {
    diffs: Vec<f64>,
    pace: f64,
}

impl Moves {
    pub(super) fn of(w: &Sample) -> Self {
        let diffs: Vec<f64> = w.y().windows(2).map(|p| p[1] - p[0]).collect();
        let pace = median(&diffs.iter().map(|d| d.abs()).collect::<Vec<_>>());
        Self { diffs, pace }
    }
}

/// Falls a window must show for its troughs to be judged: a sawtooth of fewer cycles has too
/// few troughs for a trend.
pub const SAWTOOTH_MIN_CYCLES: usize = 4;
/// Readings a cycle spans on average, at least.
pub(super) const SAWTOOTH_MIN_PERIOD: usize = 4;
/// A fall is at least this share of the rule's floor…
pub(super) const SAWTOOTH_FALL_FLOOR: f64 = 0.5;
/// …and this many times the median step between readings (the climb's own pace).
pub(super) const SAWTOOTH_FALL_STEPS: f64 = 4.0;

/// The window's sawtooth, when it has one: at least [`SAWTOOTH_MIN_CYCLES`] falls, each at least
/// half the floor and four times the median step, and the Theil–Sen slope of the cycles' troughs
/// (the lowest reading between one fall and the next). A straight line fitted through a sawtooth
/// of 1–4 MiB moves by a tooth's height with where the window happens to end in a cycle — a few
/// KiB a request over 300 requests — while the troughs are what a leak raises cycle after cycle.
pub(super) fn sawtooth(
    w: &Sample,
    moves: &Moves,
    rule: &Rule,
    level: f64,
) -> Option<super::Sawtooth> {
    let y = w.y();
    if y.len() < 2 * PLATEAU_MIN_POINTS {
        return None;
    }
    let steps = &moves.diffs;
    let fall = (SAWTOOTH_FALL_FLOOR * rule.min_growth).max(SAWTOOTH_FALL_STEPS * moves.pace);
    let falls: Vec<usize> = (0..steps.len()).filter(|&i| steps[i] < -fall).collect();
    // A tooth climbs over several readings: falls every other reading are noise as large as
    // the floor, not cycles.
    if falls.len() < SAWTOOTH_MIN_CYCLES || falls.len() * SAWTOOTH_MIN_PERIOD > y.len() {
        return None;
    }
    let height = median(&falls.iter().map(|&i| -steps[i]).collect::<Vec<_>>());
    let (mut tx, mut ty) = (Vec::new(), Vec::new());
    for (k, &i) in falls.iter().enumerate() {
        let end = falls.get(k + 1).map_or(y.len(), |&j| j + 1);
        let (at, low) = (i + 1..end)
            .map(|j| (j, y[j]))
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        tx.push(w.x()[at]);
        ty.push(low);
    }
    let troughs = Sample::from_points(tx, ty)?;
    let fit = trend::theil_sen(&troughs, level)?;
    Some(super::Sawtooth {
        cycles: falls.len(),
        height,
        troughs: fit.estimate,
    })
}

/// At most this many jumps make growth "a few steps"; more is a staircase (a leak of large
/// objects), judged as it is.
pub const MAX_STEPS: usize = 8;

/// The window's jumps when there are 1..=[`MAX_STEPS`] of them — readings that moved by at least
/// a quarter of the floor and eight times the median step at once — and the Theil–Sen slope of
/// the window with them taken out. A heap that grows in 0.3–0.6 MiB chunks now and then reads,
/// over 300 requests, as a few KiB a request in both halves; between its jumps it is flat.
pub(super) fn steps(w: &Sample, moves: &Moves, rule: &Rule, level: f64) -> Option<super::Steps> {
    let y = w.y();
    let diffs = &moves.diffs;
    let jump = (0.25 * rule.min_growth).max(8.0 * moves.pace);
    let jumps: Vec<f64> = diffs.iter().copied().filter(|d| d.abs() >= jump).collect();
    if jumps.is_empty() || jumps.len() > MAX_STEPS {
        return None;
    }
    let mut shift = 0.0;
    let mut flat = Vec::with_capacity(y.len());
    flat.push(y[0]);
    for (i, d) in diffs.iter().enumerate() {
        if d.abs() >= jump {
            shift += d;
        }
        flat.push(y[i + 1] - shift);
    }
    let rest = Sample::from_points(w.x().to_vec(), flat)?;
    Some(super::Steps {
        count: jumps.len(),
        total: jumps.iter().sum(),
        between: trend::theil_sen(&rest, level)?.estimate,
    })
}

/// Fewest points in each half of a window for the deceleration test.
pub(super) const DECEL_MIN_POINTS: usize = 20;
/// One-sided level of the deceleration test: the first half must grow faster than the second
/// with this confidence…
pub(super) const DECEL_LEVEL: f64 = 0.95;
/// …and at least this many times as fast (a leak whose rate wobbles is not "slowing down").
pub(super) const DECEL_RATIO: f64 = 1.5;
/// Halvings of the window for growth that keeps slowing down; if the last quarter still slows
/// down, the growth is still warming up and cannot be called a leak.
pub(super) const MAX_DECEL_CUTS: usize = 2;

/// The second half of `w` when the first half grew confidently faster (by [`DECEL_LEVEL`]) and
/// at least [`DECEL_RATIO`] times as fast as the second: growth that slows down is a server
/// warming up (buffers sized on use, caches filling, lazily built tables), and what goes on
/// growing once it has is what a long run sees. Returns the second half, the first half's slope
/// and the second half's fit. A straight line (a leak) has halves that agree and is judged whole.
pub(super) fn decelerating(
    w: &Sample,
    level: f64,
) -> Option<(Sample, super::Estimate, super::Estimate)> {
    let n = w.len();
    if n < 2 * DECEL_MIN_POINTS {
        return None;
    }
    let early = trend::theil_sen(&w.head(n / 2)?, level)?.estimate;
    let late_sample = w.tail(n / 2)?;
    let late = trend::theil_sen(&late_sample, level)?.estimate;
    let z = trend::normal_quantile(DECEL_LEVEL);
    let gap = early.point - late.point;
    let slower = early.point > 0.0
        && gap > z * early.std_err.hypot(late.std_err)
        && early.point > DECEL_RATIO * late.point.max(0.0);
    slower.then_some((late_sample, early, late))
}

/// Whether the cooldown gave the growth back: the window grew at least the floor, and what was
/// still held after the cooldown is within the limit (per measured request) or at most
/// [`KEPT_SHARE`] of the growth. Python servers rarely hand freed memory back, so a leak never
/// passes this way; a cache the flush empties and a collector's sawtooth do. (Reference cycles
/// of 256 KiB a request in real SGLang: 60 MiB grew over 300 requests, the flush's collection
/// gave back all but 3.4–3.6 MiB — 6–10 %, the arenas it left fragmented.)
pub(super) fn given_back(
    grew: f64,
    kept: f64,
    requests: f64,
    rule: &Rule,
) -> Option<super::GivenBack> {
    let allowed = rule
        .min_growth
        .max(rule.max_slope_per_request * requests)
        .max(KEPT_SHARE * grew);
    (grew >= rule.min_growth && requests > 0.0 && kept <= allowed && kept <= grew / 2.0).then_some(
        super::GivenBack {
            grew,
            kept,
            capped: false,
        },
    )
}

/// Share of the growth the cooldown may keep for the rest to count as given back: at least four
/// fifths returned. (No allocator returns everything: real SGLang's collected reference cycles
/// kept 9.5 % in the scheduler, 11.6 % in the tree with the other processes' own warm-up.)
pub(super) const KEPT_SHARE: f64 = 0.2;

/// Plateaus the analysis looks for: the flat stretch is at least this share of the window…
pub(super) const PLATEAU_MIN_SHARE: f64 = 0.3;
/// …and this many points.
pub(super) const PLATEAU_MIN_POINTS: usize = 20;

/// Rises the growth before a plateau must consist of: a cache fills in many small steps, an
/// allocator staircase (a GPU leak seen through 20 MiB segments) in a few large ones with long
/// flat stretches between them, which must not read as "it stopped".
pub(super) const PLATEAU_MIN_RISES: usize = 5;

/// Whether the growth before position `split` of `w` looks like a cache filling: at least
/// [`PLATEAU_MIN_RISES`] rises above the noise, and no pause between them even half as long as
/// the flat stretch after `split`.
pub(super) fn fills_like_a_cache(w: &Sample, split: usize, floor: f64) -> bool {
    // A running median of 5 first: one-reading transients (allocate-and-free) are not rises.
    let raw = w.y();
    let y: Vec<f64> = (0..raw.len())
        .map(|i| median(&raw[i.saturating_sub(2)..(i + 3).min(raw.len())]))
        .collect();
    let tail_diffs: Vec<f64> = y[split..].windows(2).map(|p| (p[1] - p[0]).abs()).collect();
    let noise = (3.0 * median(&tail_diffs)).max(floor / 100.0);
    let rises: Vec<usize> = (1..=split.min(y.len() - 1))
        .filter(|&i| y[i] - y[i - 1] > noise)
        .collect();
    if rises.len() < PLATEAU_MIN_RISES {
        return false;
    }
    let longest_pause = rises.windows(2).map(|p| p[1] - p[0]).max().unwrap_or(0);
    2 * longest_pause <= y.len() - split
}

/// The earliest point from which the window stays flat to its end, when before it the metric
/// grew like a cache fills: "flat" means the tail's slope interval lies wholly below the limit
/// *and* even its upper bound would grow less than the floor over the tail. Growth still going on
/// at the end is never a plateau (the tail would not be flat); a leak below the limit passes
/// anyway; a staircase whose last step came late is not one ([`fills_like_a_cache`]).
pub(super) fn find_plateau(
    window: &Sample,
    rule: &Rule,
    level: f64,
    batch: u64,
    first: f64,
) -> Option<Plateau> {
    let n = window.len();
    let min_tail = PLATEAU_MIN_POINTS.max((n as f64 * PLATEAU_MIN_SHARE).ceil() as usize);
    if n < min_tail + PLATEAU_MIN_POINTS / 2 {
        return None;
    }
    let k = (n / 10).max(3);
    let start_level = window.head_level(k);
    // Candidate starts every ~5% of the window (at most 20 fits), the earliest first.
    let step = (n / 20).max(1);
    let mut s = step;
    while n - s >= min_tail {
        let tail = window.tail(s)?;
        if let Some(fit) = trend::theil_sen(&tail, level) {
            let span = tail.x().last()? - tail.x().first()?;
            let hi = fit.estimate.ci.hi;
            let tail_growth = tail.tail_level(k) - tail.head_level(k);
            let level_reached = tail.head_level(k) - start_level;
            if hi < rule.max_slope_per_request
                && hi * span < rule.min_growth
                && tail_growth < rule.min_growth
                && level_reached >= rule.min_growth
                && fills_like_a_cache(window, s, rule.min_growth)
            {
                let since = (tail.x()[0] - (batch - 1) as f64 / 2.0 - first).max(0.0);
                return Some(Plateau {
                    since_request: since.round() as u64,
                    growth: level_reached,
                    level: tail.head_level(k),
                    flat_requests: (span + batch as f64) as u64,
                    slope_hi: hi,
                });
            }
        }
        s += step;
    }
    None
}
