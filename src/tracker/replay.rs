//! Rebuild a run's [`Timeline`] from its raw files, as if the tracker were replaying it: what
//! `sglang-memtest analyze` does after a harness was killed before it wrote its report.

use std::path::{Path, PathBuf};

use super::store::sink::{parse_unit, paths};
use super::store::{Reading, Store};
use super::timeline::{Mark, Phase, ProcessInfo, Timeline};

/// Why the raw files could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A raw file is missing or unreadable.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A row of a raw file does not parse (other than a torn last line).
    #[error("{}, line {line}: {what}", path.display())]
    Row {
        /// The file.
        path: PathBuf,
        /// The line (1-based, header included).
        line: u64,
        /// What is wrong.
        what: String,
    },
}

/// What a replay found besides the timeline.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Readings read.
    pub readings: u64,
    /// Marks read.
    pub marks: u64,
    /// Rows that could not be read (a torn last line after a kill is one).
    pub bad_rows: u64,
}

fn open(path: &Path) -> Result<csv::Reader<std::fs::File>, ReplayError> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| ReplayError::Read {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })
}

/// Rebuild the timeline of the run whose raw files are `dir/<stem>.*`.
///
/// # Errors
/// [`ReplayError`] when a file is missing or more than its last line is unreadable.
pub fn replay(
    dir: &Path,
    stem: &str,
    interval_ms: u64,
) -> Result<(Timeline, Replayed), ReplayError> {
    let (samples, marks, processes) = paths(dir, stem);
    let store = Store::new(interval_ms);
    let mut seen = Replayed::default();
    // Processes first: they are context, not time series.
    if let Ok(text) = std::fs::read_to_string(&processes) {
        for line in text.lines() {
            if let Ok(p) = serde_json::from_str::<ProcessInfo>(line) {
                let t = p.first_seen_ms;
                store.saw_process(t, p.pid, || p.clone());
                store.saw_process(p.last_seen_ms.max(t), p.pid, || p);
            } else {
                seen.bad_rows += 1;
            }
        }
    }
    // All marks (8–24 bytes each), then the readings in file order, each preceded by the marks
    // that happened before it: the order the live store saw them in.
    let mut all_marks = Vec::new();
    for (i, row) in open(&marks)?.records().enumerate() {
        let parsed = row.ok().and_then(|r| {
            Some(Mark {
                t_us: r.get(0)?.parse().ok()?,
                phase: r.get(1)?.parse::<Phase>().ok()?,
                request: r.get(2)?.parse().ok()?,
            })
        });
        match parsed {
            Some(m) => all_marks.push(m),
            None => seen.bad_rows += 1,
        }
        let _ = i;
    }
    all_marks.sort_by_key(|m| m.t_us);
    seen.marks = all_marks.len() as u64;
    let mut next_mark = 0;
    let mut apply_until = |t: u64| {
        while next_mark < all_marks.len() && all_marks[next_mark].t_us <= t {
            let m = all_marks[next_mark];
            store.mark(m.t_us, m.request, m.phase);
            next_mark += 1;
        }
    };
    for row in open(&samples)?.records() {
        let parsed = row.ok().and_then(|r| {
            let t: u64 = r.get(0)?.parse().ok()?;
            let unit = parse_unit(r.get(2)?)?;
            let v: f64 = r.get(3)?.parse().ok()?;
            Some((
                t,
                Reading {
                    metric: r.get(1)?.to_owned(),
                    unit,
                    v,
                },
            ))
        });
        match parsed {
            Some((t, reading)) => {
                apply_until(t);
                store.push(t, [reading]);
                seen.readings += 1;
            }
            None => seen.bad_rows += 1,
        }
    }
    apply_until(u64::MAX);
    let mut tl = store.snapshot();
    tl.raw = Some(super::RawFiles {
        samples: name(&samples),
        marks: name(&marks),
        processes: name(&processes),
    });
    Ok((tl, seen))
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_gives_the_live_timeline_back() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let live = Store::new(100);
        live.stream_to(dir.path(), "run")?;
        live.mark(0, 0, Phase::Baseline);
        live.push(1, [Reading::bytes("host.rss@tree", 1000)]);
        for i in 0..50u64 {
            let t = 10 + 10 * i;
            live.mark(t, i, Phase::Measure);
            live.push(t + 2, [Reading::bytes("host.rss@tree", 1000 + 64 * i)]);
        }
        live.mark(600, 0, Phase::Cooldown);
        live.push(601, [Reading::bytes("host.rss@tree", 900)]);
        assert_eq!(live.flush(), None);
        let want = live.snapshot();
        // A torn last line, as a SIGKILL mid-write leaves.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("run.samples.csv"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"602,host.rss@tr"))?;
        let (got, seen) = replay(dir.path(), "run", 100)?;
        assert_eq!(seen.readings, 52);
        assert_eq!(seen.bad_rows, 1);
        assert_eq!(got.per_request, want.per_request);
        assert_eq!(got.phases, want.phases);
        assert_eq!(got.series, want.series);
        Ok(())
    }
}
