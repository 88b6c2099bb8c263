//! `/dev/shm` files: the per-request leak (`sgl_shm_reference_<pid>_<seq>`, written, never
//! removed) and the sparse ring-buffer look-alike (`psm_reference_<pid>`, removed on clean exit).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::ReferenceError;

/// Where POSIX shared memory lives on Linux.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// Bytes written into the sparse segment: one page, so it has a block or so allocated.
const SEGMENT_WRITTEN: u64 = 4096;

/// Chunk used to write files without holding their whole size in memory.
const CHUNK: usize = 1 << 20;

fn shm_err(path: &Path) -> impl FnOnce(std::io::Error) -> ReferenceError + '_ {
    move |source| ReferenceError::Shm {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` of a non-zero pattern into `file` so that tmpfs really allocates the blocks.
fn fill(file: &mut File, bytes: u64) -> std::io::Result<()> {
    let chunk = vec![0xA5u8; CHUNK.min(usize::try_from(bytes).unwrap_or(CHUNK))];
    let mut left = bytes;
    while left > 0 {
        let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.flush()
}

/// Creates the per-request leak files, numbering them.
#[derive(Debug, Default)]
pub(crate) struct ShmLeaker {
    seq: AtomicU64,
    bytes: AtomicU64,
}

impl ShmLeaker {
    /// Creates and writes the next `/dev/shm/sgl_shm_reference_<pid>_<seq>` file of `bytes`.
    pub(crate) fn leak(&self, bytes: u64) -> Result<(), ReferenceError> {
        if bytes == 0 {
            return Ok(());
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let path =
            Path::new(SHM_DIR).join(format!("sgl_shm_reference_{}_{seq}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(shm_err(&path))?;
        fill(&mut file, bytes).map_err(shm_err(&path))?;
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// Bytes leaked into `/dev/shm` so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Files leaked so far.
    pub(crate) fn files(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }
}

/// The sparse segment; removed when dropped (clean shutdown).
#[derive(Debug)]
pub(crate) struct ShmSegment {
    path: PathBuf,
}

impl ShmSegment {
    /// Creates `/dev/shm/psm_reference_<pid>` with apparent size `bytes`, 4 KiB written.
    pub(crate) fn create(bytes: u64) -> Result<Self, ReferenceError> {
        let path = Path::new(SHM_DIR).join(format!("psm_reference_{}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(shm_err(&path))?;
        let segment = Self { path };
        let err = shm_err(&segment.path);
        let result = file
            .set_len(bytes)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| fill(&mut file, bytes.min(SEGMENT_WRITTEN)));
        // On error `segment` drops here and removes the half-made file.
        result.map_err(err)?;
        Ok(segment)
    }

    /// The segment's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ShmSegment {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "failed to remove shm segment");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn segment_is_sparse_and_removed() {
        if !Path::new(SHM_DIR).is_dir() {
            return; // no /dev/shm on this machine: nothing to check
        }
        let segment = ShmSegment::create(64 << 20).expect("create");
        let meta = std::fs::metadata(segment.path()).expect("metadata");
        assert_eq!(meta.len(), 64 << 20);
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "sparse: {} blocks",
            meta.blocks()
        );
        let path = segment.path().to_path_buf();
        drop(segment);
        assert!(!path.exists());
    }
}
