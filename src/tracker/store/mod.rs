//! The shared store every source writes into: bounded in memory whatever the run's length, with
//! every reading also streamed to the raw files when the tracker has a folder for them.
//!
//! Per metric it keeps the plot envelope ([`envelope`]), the per-request values ([`align`]) and
//! the per-hour batch means of the measured and idle phases; per run the phases, the measured
//! requests' completion times (8 bytes each) and the processes seen. A million requests cost a
//! few MiB.

mod align;
mod envelope;
pub(crate) mod sink;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::timeline::{
    Mark, Phase, PhaseSpan, Point, ProcessInfo, Series, SourceStatus, Timeline, Unit,
};
use crate::tracker::BatchMeans;
use align::{Aligner, Completions};
use envelope::Envelope;
use sink::Sink;

/// Cooldown readings kept per metric (the cooldown is short; this only guards a stuck one).
const MAX_COOLDOWN_POINTS: usize = 50_000;
/// µs in an hour, for the per-hour series.
const US_PER_HOUR: f64 = 3.6e9;

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

/// What is kept of one metric.
#[derive(Debug, Clone, Default)]
struct MetricState {
    unit: Option<Unit>,
    first: Option<f64>,
    last: Option<Point>,
    envelope: Envelope,
    aligner: Aligner,
    by_time: BatchMeans,
    idle: BatchMeans,
    cooldown: Vec<Point>,
}

#[derive(Debug, Default)]
struct State {
    interval_ms: u64,
    started_at: String,
    metrics: BTreeMap<String, MetricState>,
    phases: Vec<PhaseSpan>,
    completions: Completions,
    processes: BTreeMap<u32, ProcessInfo>,
    sources: Vec<SourceStatus>,
    sink: Option<Sink>,
}

impl State {
    fn current(&self) -> Option<Phase> {
        self.phases.last().map(|p| p.phase)
    }

    fn start_of(&self, phase: Phase) -> Option<u64> {
        self.phases
            .iter()
            .find(|p| p.phase == phase)
            .map(|p| p.from_us)
    }

    fn reading(&mut self, t_us: u64, r: Reading) {
        if let Some(sink) = &mut self.sink {
            sink.reading(t_us, &r.metric, r.unit, r.v);
        }
        let phase = self.current();
        let measure_from = self.start_of(Phase::Measure);
        let idle_from = self.start_of(Phase::Idle);
        let m = self.metrics.entry(r.metric).or_default();
        m.unit.get_or_insert(r.unit);
        m.first.get_or_insert(r.v);
        let p = Point { t_us, v: r.v };
        // Sources run on different threads; a reading older than the metric's last one is
        // plotted but cannot move the per-request cursor backwards.
        let in_order = m.last.is_none_or(|l| t_us >= l.t_us);
        m.envelope.push(p);
        if in_order {
            m.last = Some(p);
            m.aligner.reading(&self.completions, t_us, r.v);
        }
        match (phase, measure_from, idle_from) {
            (Some(Phase::Measure), Some(from), _) => {
                m.by_time
                    .push(t_us.saturating_sub(from) as f64 / US_PER_HOUR, r.v);
            }
            (Some(Phase::Idle), _, Some(from)) => {
                m.idle
                    .push(t_us.saturating_sub(from) as f64 / US_PER_HOUR, r.v);
            }
            (Some(Phase::Cooldown), _, _) if m.cooldown.len() < MAX_COOLDOWN_POINTS => {
                m.cooldown.push(p);
            }
            _ => {}
        }
    }

    fn mark(&mut self, m: Mark) {
        if let Some(sink) = &mut self.sink {
            sink.mark(&m);
        }
        match self.phases.last_mut() {
            Some(last) if last.phase == m.phase => {
                last.to_us = last.to_us.max(m.t_us);
            }
            _ => {
                if self.current() == Some(Phase::Measure) {
                    self.completions.phase_end = Some(m.t_us);
                }
                self.phases.push(PhaseSpan {
                    phase: m.phase,
                    from_us: m.t_us,
                    to_us: m.t_us,
                    requests: 0,
                });
            }
        }
        // A phase change carries request 0 and no completion: only requests count. The first
        // mark of a phase opens it; every mark of the request phases is a completion.
        if matches!(m.phase, Phase::Warmup | Phase::Measure)
            && let Some(last) = self.phases.last_mut()
        {
            last.requests += 1;
            if m.phase == Phase::Measure {
                self.completions.complete(m.t_us);
            }
        }
    }

    fn timeline(&self) -> Timeline {
        let mut tl = Timeline {
            interval_ms: self.interval_ms,
            started_at: self.started_at.clone(),
            phases: self.phases.clone(),
            processes: self.processes.clone(),
            sources: self.sources.clone(),
            raw: self.sink.as_ref().map(|s| s.files.clone()),
            envelope_bucket: 1,
            ..Timeline::default()
        };
        for (name, m) in &self.metrics {
            let unit = m.unit.unwrap_or(Unit::Count);
            tl.envelope_bucket = tl.envelope_bucket.max(m.envelope.bucket());
            tl.series.insert(
                name.clone(),
                Series {
                    unit,
                    points: m.envelope.points(),
                },
            );
            if let Some(values) = m.aligner.finish(&self.completions) {
                tl.per_request.insert(name.clone(), values);
            }
            if m.by_time.count() > 0 {
                tl.by_time.insert(name.clone(), m.by_time.finish());
            }
            if m.idle.count() > 0 {
                tl.idle.insert(name.clone(), m.idle.finish());
            }
            if !m.cooldown.is_empty() {
                tl.cooldown.insert(name.clone(), m.cooldown.clone());
            }
        }
        tl
    }
}

/// Cheap to clone; every clone writes into the same store.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    start: Instant,
    inner: Arc<Mutex<State>>,
}

impl Store {
    pub(crate) fn new(interval_ms: u64) -> Self {
        let state = State {
            interval_ms,
            started_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            ..State::default()
        };
        Self {
            start: Instant::now(),
            inner: Arc::new(Mutex::new(state)),
        }
    }

    /// Stream every reading, mark and process into `<stem>.*` files in `dir` from now on.
    pub(crate) fn stream_to(&self, dir: &Path, stem: &str) -> std::io::Result<()> {
        let sink = Sink::create(dir, stem)?;
        self.lock().sink = Some(sink);
        Ok(())
    }

    /// Microseconds since the tracker started.
    pub(crate) fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Milliseconds since the tracker started.
    pub(crate) fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking source must not take the others down: keep using the data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append readings taken at `t_us`.
    pub(crate) fn push(&self, t_us: u64, readings: impl IntoIterator<Item = Reading>) {
        let mut st = self.lock();
        for r in readings {
            st.reading(t_us, r);
        }
    }

    pub(crate) fn mark(&self, t_us: u64, request: u64, phase: Phase) {
        self.lock().mark(Mark {
            t_us,
            request,
            phase,
        });
    }

    /// Record that `pid` was seen alive at `t_ms` (first sighting fills in the rest).
    pub(crate) fn saw_process(&self, t_ms: u64, pid: u32, make: impl FnOnce() -> ProcessInfo) {
        let mut st = self.lock();
        let st = &mut *st;
        match st.processes.get_mut(&pid) {
            Some(p) => p.last_seen_ms = t_ms,
            None => {
                let info = make();
                if let Some(sink) = &mut st.sink {
                    sink.process(&info);
                }
                st.processes.insert(pid, info);
            }
        }
    }

    /// Set (or replace) the status of a source.
    pub(crate) fn set_source(&self, status: SourceStatus) {
        let mut st = self.lock();
        match st.sources.iter_mut().find(|s| s.name == status.name) {
            Some(s) => *s = status,
            None => st.sources.push(status),
        }
    }

    /// Add `n` read errors to a source's count.
    pub(crate) fn source_errors(&self, name: &str, n: u64) {
        if let Some(s) = self.lock().sources.iter_mut().find(|s| s.name == name) {
            s.errors += n;
        }
    }

    /// Flush the raw files if the last flush is a second old (the sampler calls this every tick).
    pub(crate) fn flush_if_due(&self) {
        if let Some(sink) = &mut self.lock().sink {
            sink.flush_if_due();
        }
    }

    /// Flush the raw files now; the first write error, if any.
    pub(crate) fn flush(&self) -> Option<String> {
        let mut st = self.lock();
        let sink = st.sink.as_mut()?;
        sink.flush();
        sink.error.clone()
    }

    /// Where the run is, cheaply: the phase, the requests completed in it, and the first and
    /// latest value of each of `metrics` (a name ending in `*`: every metric of that prefix).
    pub(crate) fn progress(&self, metrics: &[&str]) -> super::Progress {
        let st = self.lock();
        let last = st.phases.last();
        let value = |name: &str, m: &MetricState| Some((name.to_owned(), m.first?, m.last?.v));
        let values = metrics
            .iter()
            .flat_map(|name| match name.strip_suffix('*') {
                // `host.rss@pid:*`: every metric of that prefix.
                Some(prefix) => st
                    .metrics
                    .range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .filter_map(|(k, m)| value(k, m))
                    .collect::<Vec<_>>(),
                None => st
                    .metrics
                    .get(*name)
                    .and_then(|m| value(name, m))
                    .into_iter()
                    .collect(),
            })
            .collect();
        super::Progress {
            phase: last.map(|p| p.phase),
            done: last.map_or(0, |p| p.requests),
            values,
            labels: st
                .processes
                .iter()
                .map(|(pid, p)| (*pid, p.label().to_owned()))
                .collect(),
        }
    }

    /// The bounded summary of everything so far.
    pub(crate) fn snapshot(&self) -> Timeline {
        self.lock().timeline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_requests_and_per_request_values() {
        let s = Store::new(100);
        s.mark(0, 0, Phase::Baseline);
        s.push(1, [Reading::bytes("host.rss@tree", 100)]);
        for i in 0..5u64 {
            let t = 10 + i * 10;
            s.mark(t, i, Phase::Measure);
            s.push(t + 1, [Reading::bytes("host.rss@tree", 100 + i)]);
        }
        s.mark(100, 0, Phase::Cooldown);
        s.push(101, [Reading::bytes("host.rss@tree", 50)]);
        let tl = s.snapshot();
        assert_eq!(tl.requests_in(Phase::Measure), 5);
        assert_eq!(tl.phase_range(Phase::Measure), Some((10, 100)));
        assert_eq!(
            tl.per_request["host.rss@tree"].y,
            [100.0, 101.0, 102.0, 103.0, 104.0]
        );
        assert_eq!(tl.cooldown["host.rss@tree"].len(), 1);
        assert_eq!(tl.series["host.rss@tree"].points.len(), 7);
        assert!(tl.by_time.contains_key("host.rss@tree"));
    }
}
