//! What happened to the requests: counters and a latency histogram in memory (constant size
//! whatever the run's length), every record streamed to `<stem>.requests.csv`.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::driver::RequestRecord;
use crate::tracker::Phase;

/// Counts and latencies over a run's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestSummary {
    /// Requests sent (warm-up included).
    pub sent: u64,
    /// 2xx responses.
    pub ok: u64,
    /// Everything else.
    pub failed: u64,
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

/// The run's requests: summary in memory, records on disk.
#[derive(Debug)]
pub struct RequestLog {
    summary: RequestSummary,
    latencies: hdrhistogram::Histogram<u64>,
    consecutive_no_answer: usize,
    file: Option<(PathBuf, csv::Writer<File>)>,
    write_error: Option<String>,
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
        if r.phase == Phase::Measure {
            s.measured += 1;
        }
        if r.ok() {
            s.ok += 1;
            let us = (r.latency_ms * 1000.0).round().max(1.0) as u64;
            let _ = self.latencies.record(us.min(3_600_000_000));
        } else {
            s.failed += 1;
            if s.first_error.is_none() {
                s.first_error = Some(r.describe_failure());
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

    /// The counts and latencies so far.
    pub fn summary(&self) -> RequestSummary {
        let mut s = self.summary.clone();
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
