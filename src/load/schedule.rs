//! The request schedule: a pure function from count and interval to send times.

use std::time::Duration;

/// Send offsets (from the start of a phase) of `count` requests, `interval` apart.
///
/// The driver releases request `i` at `offsets[i]` and then waits for a concurrency slot, so a
/// server slower than the interval is never sent more than `concurrency` requests at once.
pub fn schedule(count: u64, interval: Duration) -> Vec<Duration> {
    (0..count)
        .map(|i| interval.saturating_mul(i.min(u32::MAX as u64) as u32))
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
}
