//! What happened to the requests: counters and a latency histogram in memory (constant size
//! whatever the run's length), every record streamed to `<stem>.requests.csv`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::driver::RequestRecord;
use super::send::RequestOutcome;
use crate::tracker::Phase;

/// Counts and latencies over a run's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestSummary {
    /// Requests sent (warm-up included).
    pub sent: u64,
    /// Answered as planned (2xx; for an abort kind, finished before the abort).
    pub ok: u64,
    /// Failures: anything but the planned outcome (counted by the error-rate guard).
    pub failed: u64,
    /// Refused as planned (the 4xx of a rejection kind): never failures.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected: u64,
    /// Ended by `/abort_request` as planned.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub aborted: u64,
    /// Dropped by the client mid-stream as planned.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disconnected: u64,
    /// The same counts per request kind (`plain`, `stream`, `abort`, …), when the run sent
    /// more than `plain`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_kind: BTreeMap<String, KindCounts>,
    /// `failed / sent`.
    pub error_rate: f64,
    /// Measured requests that completed.
    #[serde(default)]
    pub measured: u64,
    /// Median latency of successful requests, ms.
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile latency of successful requests, ms.
    pub latency_p95_ms: Option<f64>,
    /// 99th percentile latency of successful requests, ms.
    #[serde(default)]
    pub latency_p99_ms: Option<f64>,
    /// Images sent with the requests.
    #[serde(default)]
    pub images: u64,
    /// First failure seen.
    pub first_error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What happened to the requests of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    /// Requests of this kind that finished (warm-up included).
    pub sent: u64,
    /// Of those, measured.
    pub measured: u64,
    /// Answered as planned.
    pub ok: u64,
    /// Refused as planned.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rejected: u64,
    /// Aborted as planned.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub aborted: u64,
    /// Dropped mid-stream as planned.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub disconnected: u64,
    /// Failed.
    pub failed: u64,
    /// First failure of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Which kind each measured request was (by its index), for the per-kind attribution: kinds
/// as small ids (a million requests take a megabyte).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindSequence {
    /// Kind names; an id is a position here.
    pub names: Vec<String>,
    /// The id of measured request `i` (`u8::MAX`: not known, e.g. an index never finished).
    pub ids: Vec<u8>,
}

impl KindSequence {
    /// The kinds `mix` gives the first `n` measured requests (what a run of that mix sends).
    pub fn from_mix(mix: &super::Mix, n: u64) -> Self {
        let mut s = Self::default();
        for i in 0..n {
            s.set(i, mix.kind_of(i).as_str());
        }
        s
    }

    fn set(&mut self, index: u64, kind: &str) {
        let id = match self.names.iter().position(|n| n == kind) {
            Some(i) => i,
            None if self.names.len() < usize::from(u8::MAX) => {
                self.names.push(kind.to_owned());
                self.names.len() - 1
            }
            // More kinds than ids: the rest share the last one's id.
            None => usize::from(u8::MAX) - 1,
        };
        let Ok(i) = usize::try_from(index) else {
            return;
        };
        if i >= self.ids.len() {
            self.ids.resize(i + 1, u8::MAX);
        }
        self.ids[i] = u8::try_from(id).unwrap_or(u8::MAX - 1);
    }
}

/// The run's requests: summary in memory, records on disk.
#[derive(Debug)]
pub struct RequestLog {
    summary: RequestSummary,
    latencies: hdrhistogram::Histogram<u64>,
    consecutive_no_answer: usize,
    file: Option<(PathBuf, csv::Writer<File>)>,
    write_error: Option<String>,
    kinds: KindSequence,
}

impl Default for RequestLog {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl RequestLog {
    /// Counters only (no file).
    pub fn in_memory() -> Self {
        Self {
            summary: RequestSummary::default(),
            // 1 µs to 1 hour, 3 significant digits: ~180 KB, constant.
            latencies: hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .unwrap_or_else(|_| {
                    hdrhistogram::Histogram::new(3)
                        .unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
                }),
            consecutive_no_answer: 0,
            file: None,
            write_error: None,
            kinds: KindSequence::default(),
        }
    }

    /// Counters, and every record appended to `dir/<stem>.requests.csv`.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn to_file(dir: &Path, stem: &str) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{stem}.requests.csv"));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&path)?;
        let mut log = Self::in_memory();
        log.file = Some((path, csv::Writer::from_writer(f)));
        Ok(log)
    }

    /// The file the records go to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Count (and write) one finished request.
    pub fn record(&mut self, r: &RequestRecord) {
        let s = &mut self.summary;
        s.sent += 1;
        s.images += u64::from(r.images);
        let measured = r.phase == Phase::Measure;
        if measured {
            s.measured += 1;
            self.kinds.set(r.index, &r.kind);
        }
        let outcome = if r.ok() {
            r.outcome
        } else {
            RequestOutcome::Failed
        };
        let k = s.by_kind.entry(r.kind.clone()).or_default();
        k.sent += 1;
        k.measured += u64::from(measured);
        match outcome {
            RequestOutcome::Ok => {
                s.ok += 1;
                k.ok += 1;
                let us = (r.latency_ms * 1000.0).round().max(1.0) as u64;
                let _ = self.latencies.record(us.min(3_600_000_000));
            }
            RequestOutcome::Rejected => (s.rejected, k.rejected) = (s.rejected + 1, k.rejected + 1),
            RequestOutcome::Aborted => (s.aborted, k.aborted) = (s.aborted + 1, k.aborted + 1),
            RequestOutcome::Disconnected => {
                (s.disconnected, k.disconnected) = (s.disconnected + 1, k.disconnected + 1);
            }
            RequestOutcome::Failed => {
                s.failed += 1;
                k.failed += 1;
                if s.first_error.is_none() {
                    s.first_error = Some(r.describe_failure());
                }
                if k.first_error.is_none() {
                    k.first_error = Some(r.describe_failure());
                }
            }
        }
        s.error_rate = s.failed as f64 / s.sent as f64;
        self.consecutive_no_answer = if r.no_answer() {
            self.consecutive_no_answer + 1
        } else {
            0
        };
        if let Some((_, w)) = &mut self.file
            && let Err(e) = w.serialize(r)
            && self.write_error.is_none()
        {
            self.write_error = Some(format!("writing the request records failed: {e}"));
        }
    }

    /// Requests in a row that got no answer at all (refused, timed out).
    pub fn consecutive_no_answer(&self) -> usize {
        self.consecutive_no_answer
    }

    /// Which kind each measured request was.
    pub fn kinds(&self) -> &KindSequence {
        &self.kinds
    }

    /// The counts and latencies so far (`by_kind` only when more than `plain` was sent).
    pub fn summary(&self) -> RequestSummary {
        let mut s = self.summary.clone();
        if s.by_kind.keys().all(|k| k == "plain") {
            s.by_kind.clear();
        }
        if !self.latencies.is_empty() {
            let ms = |q: f64| self.latencies.value_at_quantile(q) as f64 / 1000.0;
            s.latency_p50_ms = Some(ms(0.5));
            s.latency_p95_ms = Some(ms(0.95));
            s.latency_p99_ms = Some(ms(0.99));
        }
        s
    }

    /// Flush the file; the first write error, if any.
    pub fn flush(&mut self) -> Option<String> {
        if let Some((_, w)) = &mut self.file
            && let Err(e) = w.flush()
            && self.write_error.is_none()
        {
            self.write_error = Some(format!("writing the request records failed: {e}"));
        }
        self.write_error.clone()
    }
}

/// Read the records a run wrote.
///
/// # Errors
/// The file cannot be read or a row does not parse.
pub fn read_records(path: &Path) -> Result<Vec<RequestRecord>, csv::Error> {
    csv::Reader::from_path(path)?.deserialize().collect()
}
