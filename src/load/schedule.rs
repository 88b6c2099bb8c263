//! The request schedule: a pure, seeded sequence of send offsets, produced one at a time so a
//! million-request run never holds a million durations.

use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How request start times are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrival {
    /// Evenly: one request every interval (the seed tool's way).
    #[default]
    Constant,
    /// A Poisson process: exponential gaps with the interval as their mean (as SGLang's
    /// `bench_serving` sends at a request rate), seeded.
    Poisson,
}

/// Send offsets from the start of a phase.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    arrival: Arrival,
    rng: ChaCha8Rng,
    next: Duration,
}

impl Schedule {
    /// Offsets `interval` apart (the mean gap for [`Arrival::Poisson`]), drawn from `seed`.
    pub fn new(interval: Duration, arrival: Arrival, seed: u64) -> Self {
        Self {
            interval,
            arrival,
            rng: ChaCha8Rng::seed_from_u64(seed),
            next: Duration::ZERO,
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let at = self.next;
        let gap = match self.arrival {
            Arrival::Constant => self.interval,
            Arrival::Poisson => {
                // Inverse transform: -ln(U) × mean, U in (0, 1].
                let u: f64 = 1.0 - self.rng.random::<f64>();
                self.interval.mul_f64(-u.ln())
            }
        };
        self.next = self.next.saturating_add(gap);
        Some(at)
    }
}

/// The first `count` offsets of an evenly spaced schedule.
pub fn schedule(count: u64, interval: Duration) -> Vec<Duration> {
    Schedule::new(interval, Arrival::Constant, 0)
        .take(count.min(usize::MAX as u64) as usize)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced() {
        let s = schedule(4, Duration::from_millis(100));
        assert_eq!(s, [0, 100, 200, 300].map(Duration::from_millis));
        assert!(schedule(0, Duration::from_secs(1)).is_empty());
        assert_eq!(schedule(3, Duration::ZERO), vec![Duration::ZERO; 3]);
    }

    #[test]
    fn poisson_has_the_mean_rate_and_is_reproducible() {
        let s: Vec<Duration> = Schedule::new(Duration::from_millis(10), Arrival::Poisson, 7)
            .take(20_001)
            .collect();
        let mean = s[20_000].as_secs_f64() / 20_000.0;
        assert!((mean - 0.010).abs() < 0.0005, "{mean}");
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        let again: Vec<Duration> = Schedule::new(Duration::from_millis(10), Arrival::Poisson, 7)
            .take(100)
            .collect();
        assert_eq!(&s[..100], &again[..]);
    }
}
