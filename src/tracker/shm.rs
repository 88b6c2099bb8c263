//! `/dev/shm`: the server's own segments (judged), and the whole folder (context only).
//!
//! `shm.bytes` / `shm.files` count the segments the server's tree maps or holds open, and the
//! ones it made during the run (see the fixture's ledger, `fixture/shm.rs`): another job's
//! segments on the same machine never count. `shm.bytes@psm` / `shm.bytes@sgl_shm` break the
//! server's bytes down by family. `shm.bytes@host` / `shm.files@host` are the whole folder, for
//! context: never judged.
//!
//! Engines map large sparse ring buffers (vLLM: 400 MiB apparent, 3 MiB allocated), so bytes are
//! counted as allocated blocks (`st_blocks × 512`), never as apparent size.

use std::path::PathBuf;
use std::sync::Arc;

use super::Reading;
use super::metric::{SHM_BYTES, SHM_BYTES_HOST, SHM_FILES, SHM_FILES_HOST};
use crate::fixture::shm::{ShmLedger, ShmView, family};
use crate::fixture::tree::TreeLedger;

/// Where the tracker's shm observations go: the launching fixture's ledger (so teardown
/// knows what the tree held), or one of the tracker's own (attached servers, other folders).
#[derive(Debug)]
pub(crate) enum ShmSource {
    /// The fixture's.
    Shared(Arc<TreeLedger>),
    /// The tracker's own.
    Own(Box<ShmLedger>),
}

impl ShmSource {
    /// The fixture's ledger when it watches `dir`, else a fresh one.
    pub(crate) fn new(dir: PathBuf, ledger: Option<&Arc<TreeLedger>>) -> Self {
        match ledger {
            Some(l) if l.shm_dir() == dir => Self::Shared(Arc::clone(l)),
            _ => Self::Own(Box::new(ShmLedger::snapshot(dir))),
        }
    }

    /// One observation with the tree's live `pids`, as readings.
    pub(crate) fn sample(&mut self, pids: &[u32], out: &mut Vec<Reading>) {
        let view = match self {
            Self::Shared(l) => l.observe_shm(pids),
            Self::Own(l) => l.observe(pids),
        };
        out.extend(readings(&view));
    }
}

/// Readings for one observation: the server's totals and families, then the folder's.
pub(crate) fn readings(view: &ShmView) -> Vec<Reading> {
    let mut out = Vec::new();
    if !view.readable {
        return out;
    }
    let ours: u64 = view.ours.iter().map(|e| e.allocated).sum();
    out.push(Reading::bytes(SHM_BYTES, ours));
    out.push(Reading::count(SHM_FILES, view.ours.len() as u64));
    for fam in ["psm", "sgl_shm"] {
        let bytes: u64 = view
            .ours
            .iter()
            .filter(|e| family(&e.name) == Some(fam))
            .map(|e| e.allocated)
            .sum();
        out.push(Reading::bytes(format!("shm.bytes@{fam}"), bytes));
    }
    out.push(Reading::bytes(SHM_BYTES_HOST, view.host_bytes));
    out.push(Reading::count(SHM_FILES_HOST, view.host_files));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_trees_segments_by_allocated_bytes_and_the_folder_as_context() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut source = ShmSource::new(dir.path().to_path_buf(), None);
        let sparse = std::fs::File::create(dir.path().join("psm_1")).expect("create");
        sparse.set_len(64 << 20).expect("set_len");
        let held = dir.path().join("sgl_shm_2");
        std::fs::write(&held, vec![7u8; 256 << 10]).expect("write");
        let _open = std::fs::File::open(&held).expect("open");
        std::fs::write(dir.path().join("someone_elses"), vec![1u8; 64 << 10]).expect("write");
        let mut out = Vec::new();
        // "The tree" is this process: it holds sgl_shm_2 and psm_1 (open above).
        source.sample(&[std::process::id()], &mut out);
        let get = |m: &str| out.iter().find(|x| x.metric == m).map(|x| x.v).expect(m);
        assert!(
            get("shm.bytes@psm") < (1 << 20) as f64,
            "sparse file counted by apparent size"
        );
        assert!(get("shm.bytes@sgl_shm") >= (256 << 10) as f64);
        assert_eq!(get(SHM_FILES), 2.0, "someone_elses is not the tree's");
        assert!(get(SHM_BYTES) < get(SHM_BYTES_HOST));
        assert_eq!(get(SHM_FILES_HOST), 3.0);
    }

    #[test]
    fn a_missing_folder_gives_no_readings() {
        let mut source = ShmSource::new(PathBuf::from("/nonexistent/dir"), None);
        let mut out = Vec::new();
        source.sample(&[1], &mut out);
        assert!(out.is_empty());
    }
}
