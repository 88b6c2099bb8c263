//! The harness's side of the tracer: the exchange folder, the control file, the state files.
//!
//! The folder `<out>/<scenario>.py-heap/` holds `site/sitecustomize.py` (first on the server's
//! `PYTHONPATH`), `control` (written here: `<seq> begin`, `<seq> end`) and one `<pid>.json` per
//! Python process of the server (written there: its state, and at the end its top allocation
//! sites). See `sitecustomize.py` for the other side.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{PyHeapConfig, PyHeapError, PyStack};

/// The tracer, written into the run folder and imported by every Python process of the server.
pub(crate) const SITECUSTOMIZE: &str = include_str!("sitecustomize.py");

/// The server-side variables the tracer reads.
pub(crate) const DIR_ENV: &str = "MEMTEST_PY_HEAP_DIR";
pub(crate) const FRAMES_ENV: &str = "MEMTEST_PY_HEAP_FRAMES";

/// How long every process gets to answer one command: a snapshot of a big heap (a GPU
/// scheduler with torch loaded holds a million traced blocks) takes seconds, grouping it more.
pub(crate) const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the state files are read while waiting (the tracer reads `control` every 0.2 s).
const POLL: Duration = Duration::from_millis(100);

/// What a process's `<pid>.json` says (fields it has not reached yet are absent).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StateFile {
    pub(crate) pid: u32,
    pub(crate) argv: Vec<String>,
    pub(crate) python: String,
    pub(crate) frames: u16,
    /// `started`, `begun`, `ended` or `error`.
    pub(crate) state: String,
    /// The last command it handled.
    pub(crate) seq: u32,
    pub(crate) error: Option<String>,
    pub(crate) traced_before: u64,
    pub(crate) traced_after: u64,
    pub(crate) tracemalloc_memory: u64,
    pub(crate) growth: i64,
    pub(crate) sites_grown: u64,
    pub(crate) begin_ms: Option<u64>,
    pub(crate) end_ms: Option<u64>,
    pub(crate) top: Vec<SiteFile>,
}

/// One allocation site as the tracer wrote it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SiteFile {
    pub(crate) file: String,
    pub(crate) line: u32,
    pub(crate) code: String,
    pub(crate) growth: i64,
    pub(crate) count: i64,
    pub(crate) stacks: Vec<PyStack>,
}

/// Every state file of the folder now: pid → its state, or why it could not be read.
pub(crate) type States = BTreeMap<u32, Result<StateFile, String>>;

/// One run's exchange folder.
#[derive(Debug)]
pub(crate) struct Exchange {
    dir: PathBuf,
    site: PathBuf,
    frames: u16,
    seq: AtomicU32,
}

impl Exchange {
    /// Makes `<out_dir>/<stem>.py-heap/` afresh (a previous run's files would be read as this
    /// run's) and writes the tracer into its `site/`.
    ///
    /// # Errors
    /// [`PyHeapError::Prepare`] when the folder or the file cannot be written.
    pub(crate) fn prepare(
        out_dir: &Path,
        stem: &str,
        config: PyHeapConfig,
    ) -> Result<Self, PyHeapError> {
        let dir = out_dir.join(format!("{stem}.py-heap"));
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| PyHeapError::Prepare { path, source }
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(err(&dir))?;
        }
        let site = dir.join("site");
        std::fs::create_dir_all(&site).map_err(err(&site))?;
        // Absolute: the server may run in another folder than the harness.
        let dir = std::fs::canonicalize(&dir).map_err(err(&dir))?;
        let site = dir.join("site");
        let file = site.join("sitecustomize.py");
        crate::util::write_atomic(&file, SITECUSTOMIZE.as_bytes()).map_err(err(&file))?;
        Ok(Self {
            dir,
            site,
            frames: config.frames,
            seq: AtomicU32::new(0),
        })
    }

    /// The exchange folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder to put first on the server's `PYTHONPATH`.
    pub(crate) fn site(&self) -> &Path {
        &self.site
    }

    /// The variables the server needs besides `PYTHONPATH`.
    pub(crate) fn env(&self) -> [(&'static str, String); 2] {
        [
            (DIR_ENV, self.dir.display().to_string()),
            (FRAMES_ENV, self.frames.to_string()),
        ]
    }

    /// Every `<pid>.json` of the folder.
    pub(crate) fn states(&self) -> States {
        read_states(&self.dir)
    }

    /// Writes `<seq> <word>` into `control` and waits until every live process in `expect`
    /// (all live processes with a state file, when `None`) has handled it, failed, or exited,
    /// or `timeout` passed. Returns the states then, and the PIDs that did not answer in time.
    pub(crate) async fn command(
        &self,
        word: &str,
        expect: Option<&[u32]>,
        timeout: Duration,
    ) -> Result<(States, Vec<u32>), PyHeapError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let control = self.dir.join("control");
        crate::util::write_atomic(&control, format!("{seq} {word}\n").as_bytes()).map_err(
            |source| PyHeapError::Control {
                path: control.clone(),
                source,
            },
        )?;
        let deadline = Instant::now() + timeout;
        loop {
            tokio::time::sleep(POLL).await;
            let dir = self.dir.clone();
            let states = tokio::task::spawn_blocking(move || read_states(&dir))
                .await
                .unwrap_or_default();
            let waiting: Vec<u32> = states
                .iter()
                .filter(|(pid, _)| expect.is_none_or(|e| e.contains(pid)) && alive(**pid))
                .filter(|(_, s)| s.as_ref().is_ok_and(|s| s.seq < seq && s.state != "error"))
                .map(|(pid, _)| *pid)
                .collect();
            if waiting.is_empty() || Instant::now() >= deadline {
                return Ok((states, waiting));
            }
        }
    }
}

/// Every `<pid>.json` of `dir`.
pub(crate) fn read_states(dir: &Path) -> States {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return States::new();
    };
    entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let pid: u32 = path
                .file_name()?
                .to_str()?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            let state = std::fs::read(&path)
                .map_err(|e| format!("could not read {}: {e}", path.display()))
                .and_then(|bytes| {
                    serde_json::from_slice::<StateFile>(&bytes).map_err(|e| {
                        format!("{} is not the tracer's state file: {e}", path.display())
                    })
                });
            Some((pid, state))
        })
        .collect()
}

/// Whether `pid` runs (a zombie does not).
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            != Some("Z")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_are_read_and_bad_ones_say_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("12.json"),
            r#"{"pid": 12, "state": "ended", "seq": 2, "growth": 100, "top": [{"file": "a.py", "line": 3, "growth": 100, "count": 1, "stacks": []}]}"#,
        )
        .expect("write");
        std::fs::write(dir.path().join("13.json"), "{not json").expect("write");
        std::fs::write(dir.path().join("control"), "1 begin").expect("write");
        std::fs::write(dir.path().join("14.json.tmp"), "{}").expect("write");
        let states = read_states(dir.path());
        assert_eq!(states.len(), 2, "{states:?}");
        let s = states[&12].as_ref().expect("readable");
        assert_eq!((s.state.as_str(), s.seq, s.top[0].line), ("ended", 2, 3));
        let e = states[&13].as_ref().expect_err("unreadable");
        assert!(e.contains("13.json is not the tracer's state file"), "{e}");
    }

    #[test]
    fn the_folder_is_made_afresh_with_the_tracer_in_it() {
        let out = tempfile::tempdir().expect("tempdir");
        let stale = out.path().join("run.py-heap");
        std::fs::create_dir_all(&stale).expect("mkdir");
        std::fs::write(stale.join("99.json"), "{}").expect("write");
        let x = Exchange::prepare(out.path(), "run", PyHeapConfig { frames: 3 }).expect("prepare");
        assert!(x.states().is_empty(), "a stale state file survived");
        let written = std::fs::read_to_string(x.site().join("sitecustomize.py")).expect("read");
        assert_eq!(written, SITECUSTOMIZE);
        assert!(x.dir().is_absolute());
        assert_eq!(x.env()[1], (FRAMES_ENV, "3".to_owned()));
    }
}
