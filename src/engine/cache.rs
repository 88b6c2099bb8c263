//! The caches an engine keeps on purpose, as the report names them.

use serde::{Deserialize, Serialize};

/// An engine cache that grows with unique inputs, and how the scenario set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheInfo {
    /// The cache (e.g. `radix cache`).
    pub name: String,
    /// `off`, `capped at …` or `on (default)`.
    pub state: String,
    /// The flag that set it, if any.
    pub flag: Option<String>,
    /// How it grows, when it is on and this run's requests fill it (`null` otherwise): what
    /// the report's likely causes name when memory grows.
    #[serde(default)]
    pub growth: Option<CacheGrowth>,
}

/// How a cache that is on grows during a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheGrowth {
    /// What fills it (`every unique image`).
    pub grows_with: String,
    /// Its capacity per copy, in bytes; `None`: bounded by something else or not known.
    pub cap_bytes: Option<u64>,
    /// The roles of the processes that hold a copy (`EngineCore`, `api_server`, `scheduler`), or
    /// `/dev/shm` for a shared-memory cache.
    pub held_by: Vec<String>,
    /// The setting that switches it off, as a user would write it.
    pub off: String,
}

/// The allocator setting every engine gets on the CPU ([`CPU_MALLOC_ENV`](super::CPU_MALLOC_ENV)),
/// named with the caches: freed memory the heap keeps would read as growth.
pub fn cpu_malloc_cache() -> CacheInfo {
    let flag: Vec<String> = super::CPU_MALLOC_ENV
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    CacheInfo {
        name: "glibc heap (freed memory malloc keeps)".into(),
        state: "mmap threshold fixed at 128 KiB: freed tensors go back to the OS".into(),
        flag: Some(flag.join(" ")),
        growth: None,
    }
}
