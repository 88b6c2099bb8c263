//! `/dev/shm`: allocated bytes and file count, SGLang's segments broken out.
//!
//! Engines map large sparse ring buffers (vLLM: 400 MiB apparent, 3 MiB allocated), so bytes are
//! counted as allocated blocks (`st_blocks × 512`), never as apparent size.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::Reading;
use super::metric::{SHM_BYTES, SHM_FILES};

/// One entry of the shm directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShmEntry {
    pub name: String,
    pub allocated: u64,
    pub apparent: u64,
}

/// The SGLang family a segment name belongs to, if any.
pub(crate) fn family(name: &str) -> Option<&'static str> {
    if name.starts_with("psm_") {
        Some("psm")
    } else if name.starts_with("sgl_shm") || name.contains("sglang") {
        Some("sgl_shm")
    } else {
        None
    }
}

/// List the regular files of `dir` (missing directory: empty).
pub(crate) fn scan(dir: &Path) -> Vec<ShmEntry> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| ShmEntry {
                name: e.file_name().to_string_lossy().into_owned(),
                allocated: meta.blocks() * 512,
                apparent: meta.len(),
            })
        })
        .collect()
}

/// Readings for one scan: totals plus the SGLang families.
pub(crate) fn readings(entries: &[ShmEntry]) -> Vec<Reading> {
    let total: u64 = entries.iter().map(|e| e.allocated).sum();
    let mut out = vec![
        Reading::bytes(SHM_BYTES, total),
        Reading::count(SHM_FILES, entries.len() as u64),
    ];
    for fam in ["psm", "sgl_shm"] {
        let bytes: u64 = entries
            .iter()
            .filter(|e| family(&e.name) == Some(fam))
            .map(|e| e.allocated)
            .sum();
        out.push(Reading::bytes(format!("shm.bytes@{fam}"), bytes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_allocated_not_apparent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sparse = std::fs::File::create(dir.path().join("psm_1")).expect("create");
        sparse.set_len(64 << 20).expect("set_len");
        std::fs::write(dir.path().join("sgl_shm_2"), vec![7u8; 256 << 10]).expect("write");
        std::fs::write(dir.path().join("other"), b"x").expect("write");
        let entries = scan(dir.path());
        assert_eq!(entries.len(), 3);
        let r = readings(&entries);
        let get = |m: &str| r.iter().find(|x| x.metric == m).map(|x| x.v).expect(m);
        assert!(
            get("shm.bytes@psm") < (1 << 20) as f64,
            "sparse file counted by apparent size"
        );
        assert!(get("shm.bytes@sgl_shm") >= (256 << 10) as f64);
        assert_eq!(get(SHM_FILES), 3.0);
    }

    #[test]
    fn families() {
        assert_eq!(family("psm_abc"), Some("psm"));
        assert_eq!(family("sgl_shm_x"), Some("sgl_shm"));
        assert_eq!(family("my_sglang_seg"), Some("sgl_shm"));
        assert_eq!(family("pulse-shm"), None);
        assert!(scan(Path::new("/nonexistent/dir")).is_empty());
    }
}
