//! Host memory that really counts: leaked blocks, the bounded cache, and handing freed memory
//! back to the operating system.

use std::collections::VecDeque;

use super::ReferenceError;

/// The byte every planted allocation is filled with. Non-zero so that every page is really
/// written (and cannot stay a shared zero page), which is what makes RSS grow.
const FILL: u8 = 0xA5;

/// Allocates `bytes` and writes every one of them.
///
/// Uses `try_reserve_exact` so that an absurd knob becomes an error instead of an abort.
pub(crate) fn alloc_written(bytes: u64) -> Result<Box<[u8]>, ReferenceError> {
    let len = usize::try_from(bytes).map_err(|_| ReferenceError::OutOfMemory { bytes })?;
    let mut block = Vec::new();
    block
        .try_reserve_exact(len)
        .map_err(|_| ReferenceError::OutOfMemory { bytes })?;
    block.resize(len, FILL);
    Ok(block.into_boxed_slice())
}

/// Asks glibc to return free heap pages to the OS.
///
/// Blocks of 128 KiB and more are mmapped and unmapped on free, but smaller ones (and larger
/// ones once glibc raises its dynamic mmap threshold after a free) live in the heap, whose free
/// pages glibc keeps unless told otherwise: without this, a bounded cache would not plateau in
/// RSS terms and a flushed cache would look like it still holds its memory.
pub(crate) fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; it has no preconditions.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Fixes glibc's mmap threshold at its 128 KiB default.
///
/// glibc raises the threshold dynamically (up to 32 MiB) each time an mmapped block is freed,
/// after which blocks of that size come from the heap arenas and their pages may stay resident
/// after free. A bounded cache evicting 2 MiB entries would then stop giving memory back. Fixing
/// the threshold keeps every planted block of 128 KiB or more mmapped, so dropping it unmaps it.
pub(crate) fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a glibc tunable; it has no preconditions.
    unsafe {
        nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Blocks that are kept forever (planted leaks and the warm-up step).
#[derive(Debug, Default)]
pub(crate) struct Leaks {
    blocks: Vec<Box<[u8]>>,
    bytes: u64,
}

impl Leaks {
    /// Allocates, writes and keeps `bytes` (nothing for 0).
    pub(crate) fn leak(&mut self, bytes: u64) -> Result<(), ReferenceError> {
        if bytes == 0 {
            return Ok(());
        }
        self.keep(alloc_written(bytes)?);
        Ok(())
    }

    /// Keeps a block allocated elsewhere (so a caller can allocate outside a lock).
    pub(crate) fn keep(&mut self, block: Box<[u8]>) {
        self.bytes += block.len() as u64;
        self.blocks.push(block);
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// A cache that grows by one entry per request up to a cap, then evicts its oldest entries.
#[derive(Debug)]
pub(crate) struct BoundedCache {
    entries: VecDeque<Box<[u8]>>,
    bytes: u64,
    cap: u64,
}

impl BoundedCache {
    /// An empty cache holding at most `cap` bytes.
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            cap,
        }
    }

    /// Inserts a block, evicting the oldest entries until the total is within the cap again.
    /// Returns the number of entries evicted. A block larger than the cap is not kept at all.
    pub(crate) fn insert(&mut self, block: Box<[u8]>) -> usize {
        let len = block.len() as u64;
        if len > self.cap {
            return 0;
        }
        self.bytes += len;
        self.entries.push_back(block);
        let mut evicted = 0;
        while self.bytes > self.cap {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= old.len() as u64;
            evicted += 1;
        }
        evicted
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.entries.shrink_to_fit();
        self.bytes = 0;
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_written() {
        let block = alloc_written(10_000).expect("alloc");
        assert_eq!(block.len(), 10_000);
        assert!(block.iter().all(|&b| b == FILL));
    }

    #[test]
    fn absurd_allocation_is_an_error() {
        assert!(matches!(
            alloc_written(u64::MAX),
            Err(ReferenceError::OutOfMemory { .. })
        ));
    }

    #[test]
    fn leaks_count_their_bytes() {
        let mut leaks = Leaks::default();
        leaks.leak(100).expect("leak");
        leaks.leak(0).expect("leak");
        leaks.leak(28).expect("leak");
        assert_eq!(leaks.bytes(), 128);
    }

    #[test]
    fn cache_plateaus_at_its_cap() {
        let mut cache = BoundedCache::new(1000);
        let mut evicted = 0;
        for _ in 0..3 {
            evicted += cache.insert(alloc_written(300).expect("alloc"));
        }
        assert_eq!((cache.bytes(), cache.len(), evicted), (900, 3, 0));
        // The 4th entry would make 1200: the oldest goes, total 900 again.
        assert_eq!(cache.insert(alloc_written(300).expect("alloc")), 1);
        assert_eq!((cache.bytes(), cache.len()), (900, 3));
        for _ in 0..10 {
            cache.insert(alloc_written(300).expect("alloc"));
            assert!(cache.bytes() <= 1000);
        }
        // A block bigger than the cap is never kept.
        assert_eq!(cache.insert(alloc_written(2000).expect("alloc")), 0);
        assert_eq!(cache.bytes(), 900);
        cache.clear();
        assert_eq!((cache.bytes(), cache.len()), (0, 0));
    }

    #[test]
    fn cache_exactly_at_cap_keeps_everything() {
        let mut cache = BoundedCache::new(1000);
        for _ in 0..4 {
            cache.insert(alloc_written(250).expect("alloc"));
        }
        assert_eq!((cache.bytes(), cache.len()), (1000, 4));
    }
}
