//! The shared, append-only store every source writes into.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::timeline::{Mark, Phase, Point, ProcessInfo, Series, SourceStatus, Timeline, Unit};

/// One reading produced by a source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reading {
    /// Metric name (`source.quantity@scope`).
    pub metric: String,
    /// Unit of the value.
    pub unit: Unit,
    /// The value.
    pub v: f64,
}

impl Reading {
    pub(crate) fn bytes(metric: impl Into<String>, v: u64) -> Self {
        Self {
            metric: metric.into(),
            unit: Unit::Bytes,
            v: v as f64,
        }
    }
    pub(crate) fn count(metric: impl Into<String>, v: u64) -> Self {
        Self {
            metric: metric.into(),
            unit: Unit::Count,
            v: v as f64,
        }
    }
    pub(crate) fn ratio(metric: impl Into<String>, v: f64) -> Self {
        Self {
            metric: metric.into(),
            unit: Unit::Ratio,
            v,
        }
    }
}

/// Cheap to clone; every clone writes into the same timeline.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    start: Instant,
    inner: Arc<Mutex<Timeline>>,
}

impl Store {
    pub(crate) fn new(interval_ms: u64) -> Self {
        let timeline = Timeline {
            interval_ms,
            started_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            ..Timeline::default()
        };
        Self {
            start: Instant::now(),
            inner: Arc::new(Mutex::new(timeline)),
        }
    }

    /// Milliseconds since the tracker started.
    pub(crate) fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Milliseconds since the tracker started.
    pub(crate) fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, Timeline> {
        // A panicking source must not take the others down: keep using the data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append readings taken at `t_us`.
    pub(crate) fn push(&self, t_us: u64, readings: impl IntoIterator<Item = Reading>) {
        let mut tl = self.lock();
        for r in readings {
            let series = tl.series.entry(r.metric).or_insert_with(|| Series {
                unit: r.unit,
                points: Vec::new(),
            });
            // Sources run on different threads: keep each series sorted by time.
            let at = series.points.partition_point(|p| p.t_us <= t_us);
            series.points.insert(at, Point { t_us, v: r.v });
        }
    }

    pub(crate) fn mark(&self, t_us: u64, request: u64, phase: Phase) {
        let mut tl = self.lock();
        let at = tl.marks.partition_point(|m| m.t_us <= t_us);
        tl.marks.insert(
            at,
            Mark {
                t_us,
                request,
                phase,
            },
        );
    }

    /// Record that `pid` was seen alive at `t_ms` (first sighting fills in the rest).
    pub(crate) fn saw_process(&self, t_ms: u64, pid: u32, make: impl FnOnce() -> ProcessInfo) {
        let mut tl = self.lock();
        tl.processes
            .entry(pid)
            .and_modify(|p| p.last_seen_ms = t_ms)
            .or_insert_with(make);
    }

    /// Set (or replace) the status of a source.
    pub(crate) fn set_source(&self, status: SourceStatus) {
        let mut tl = self.lock();
        match tl.sources.iter_mut().find(|s| s.name == status.name) {
            Some(s) => *s = status,
            None => tl.sources.push(status),
        }
    }

    /// Add `n` read errors to a source's count.
    pub(crate) fn source_errors(&self, name: &str, n: u64) {
        if let Some(s) = self.lock().sources.iter_mut().find(|s| s.name == name) {
            s.errors += n;
        }
    }

    /// Where the run is, cheaply (no copy of the timeline): the phase of the latest mark, the
    /// requests completed in it, and the first and latest value of each of `metrics`.
    pub(crate) fn progress(&self, metrics: &[&str]) -> super::Progress {
        let tl = self.lock();
        let phase = tl.marks.last().map(|m| m.phase);
        let done = phase.map_or(0, |p| {
            tl.marks.iter().filter(|m| m.phase == p).count() as u64
        });
        let values = metrics
            .iter()
            .filter_map(|name| {
                let points = &tl.series.get(*name)?.points;
                Some(((*name).to_owned(), points.first()?.v, points.last()?.v))
            })
            .collect();
        super::Progress {
            phase,
            done,
            values,
        }
    }

    /// A copy of everything so far.
    pub(crate) fn snapshot(&self) -> Timeline {
        self.lock().clone()
    }
}
