//! A plot's view of a long series: every reading while they are few, then the minimum and
//! maximum of each bucket of readings, buckets doubling as the run grows, so a spike survives
//! and the point count stays bounded.

use super::super::timeline::Point;

/// Buckets kept at most (each contributes its min and its max).
const MAX_BUCKETS: usize = 2000;

#[derive(Debug, Clone, Default)]
pub(crate) struct Envelope {
    /// Readings per bucket.
    bucket: u64,
    /// Closed buckets: (min, max) in time order within each.
    closed: Vec<(Point, Point)>,
    open: Option<(Point, Point, u64)>,
}

fn ordered(a: Point, b: Point) -> (Point, Point) {
    if a.t_us <= b.t_us { (a, b) } else { (b, a) }
}

fn combine(a: (Point, Point), b: (Point, Point)) -> (Point, Point) {
    let all = [a.0, a.1, b.0, b.1];
    let lo = all
        .iter()
        .copied()
        .min_by(|x, y| x.v.total_cmp(&y.v))
        .unwrap_or(a.0);
    let hi = all
        .iter()
        .copied()
        .max_by(|x, y| x.v.total_cmp(&y.v))
        .unwrap_or(a.1);
    ordered(lo, hi)
}

impl Envelope {
    pub(crate) fn push(&mut self, p: Point) {
        if self.bucket == 0 {
            self.bucket = 1;
        }
        let (lo, hi, n) = match self.open.take() {
            None => (p, p, 1),
            Some((lo, hi, n)) => {
                let (lo, hi) = combine((lo, hi), (p, p));
                (lo, hi, n + 1)
            }
        };
        if n >= self.bucket {
            self.closed.push((lo, hi));
            if self.closed.len() >= 2 * MAX_BUCKETS {
                self.closed = self
                    .closed
                    .chunks(2)
                    .map(|c| c.iter().copied().reduce(combine).unwrap_or(c[0]))
                    .collect();
                self.bucket *= 2;
            }
        } else {
            self.open = Some((lo, hi, n));
        }
    }

    /// Readings per bucket.
    pub(crate) fn bucket(&self) -> u64 {
        self.bucket.max(1)
    }

    /// The points to draw, in time order (a bucket of one reading gives one point).
    pub(crate) fn points(&self) -> Vec<Point> {
        let mut out = Vec::with_capacity(2 * self.closed.len() + 2);
        let buckets = self
            .closed
            .iter()
            .copied()
            .chain(self.open.map(|(lo, hi, _)| (lo, hi)));
        for (a, b) in buckets {
            out.push(a);
            if b != a {
                out.push(b);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_series_are_kept_and_long_ones_bounded_with_their_spike() {
        let mut e = Envelope::default();
        for i in 0..10 {
            e.push(Point {
                t_us: i,
                v: i as f64,
            });
        }
        assert_eq!(e.points().len(), 10);
        let mut e = Envelope::default();
        for i in 0..1_000_000u64 {
            let v = if i == 777_777 { 1e9 } else { (i % 10) as f64 };
            e.push(Point { t_us: i, v });
        }
        let pts = e.points();
        assert!(pts.len() <= 4 * MAX_BUCKETS, "{}", pts.len());
        assert!(pts.iter().any(|p| p.v == 1e9), "the spike survives");
        assert!(pts.windows(2).all(|w| w[0].t_us <= w[1].t_us));
    }
}
