//! The raw files: every reading and every mark, appended as they happen and flushed at least
//! once a second, so that a harness killed at any moment leaves everything up to the last second
//! on disk (`sglang-memtest analyze` rebuilds the report from it).
//!
//! CSV in long format (`t_us,metric,unit,value`; `t_us,phase,request`): pandas and polars read it
//! as is (`pd.read_csv`, `pl.read_csv`), it appends without rewriting anything, a torn last line
//! after a crash is one bad row rather than an unreadable file, and it needs no columnar
//! library in the harness. Processes go to a JSON-lines file (their command lines hold anything).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::super::timeline::{Mark, ProcessInfo, RawFiles, Unit};

/// How often the buffers reach the file at least.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Sink {
    samples: csv::Writer<File>,
    marks: csv::Writer<File>,
    processes: BufWriter<File>,
    pub(crate) files: RawFiles,
    last_flush: Instant,
    /// The first write error, kept: a failing disk must show in the report, not stop sampling.
    pub(crate) error: Option<String>,
}

fn unit_name(u: Unit) -> &'static str {
    match u {
        Unit::Bytes => "bytes",
        Unit::Count => "count",
        Unit::Ratio => "ratio",
    }
}

pub(crate) fn parse_unit(s: &str) -> Option<Unit> {
    match s {
        "bytes" => Some(Unit::Bytes),
        "count" => Some(Unit::Count),
        "ratio" => Some(Unit::Ratio),
        _ => None,
    }
}

/// `<stem>.samples.csv`, `<stem>.marks.csv`, `<stem>.processes.jsonl` in `dir`.
pub(crate) fn paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("{stem}.samples.csv")),
        dir.join(format!("{stem}.marks.csv")),
        dir.join(format!("{stem}.processes.jsonl")),
    )
}

fn create(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)
}

impl Sink {
    /// Creates (truncates) the three files and writes the CSV headers.
    pub(crate) fn create(dir: &Path, stem: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (s, m, p) = paths(dir, stem);
        let mut samples = csv::Writer::from_writer(create(&s)?);
        samples.write_record(["t_us", "metric", "unit", "value"])?;
        let mut marks = csv::Writer::from_writer(create(&m)?);
        marks.write_record(["t_us", "phase", "request"])?;
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let mut sink = Self {
            samples,
            marks,
            processes: BufWriter::new(create(&p)?),
            files: RawFiles {
                samples: name(&s),
                marks: name(&m),
                processes: name(&p),
            },
            last_flush: Instant::now(),
            error: None,
        };
        sink.flush();
        Ok(sink)
    }

    fn note(&mut self, r: Result<(), impl std::fmt::Display>) {
        if let Err(e) = r
            && self.error.is_none()
        {
            self.error = Some(format!("writing the raw files failed: {e}"));
        }
    }

    pub(crate) fn reading(&mut self, t_us: u64, metric: &str, unit: Unit, v: f64) {
        let r = self.samples.write_record([
            t_us.to_string().as_str(),
            metric,
            unit_name(unit),
            // Shortest round-trip text: the value reads back bit-exact.
            format!("{v}").as_str(),
        ]);
        self.note(r);
    }

    pub(crate) fn mark(&mut self, m: &Mark) {
        let r = self.marks.write_record([
            m.t_us.to_string().as_str(),
            m.phase.as_str(),
            m.request.to_string().as_str(),
        ]);
        self.note(r);
    }

    pub(crate) fn process(&mut self, p: &ProcessInfo) {
        let r = serde_json::to_writer(&mut self.processes, p)
            .map_err(std::io::Error::other)
            .and_then(|()| self.processes.write_all(b"\n"));
        self.note(r);
    }

    /// Flush when the last flush is older than [`FLUSH_EVERY`].
    pub(crate) fn flush_if_due(&mut self) {
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    pub(crate) fn flush(&mut self) {
        let r = self
            .samples
            .flush()
            .and_then(|()| self.marks.flush())
            .and_then(|()| self.processes.flush());
        self.note(r);
        self.last_flush = Instant::now();
    }
}
