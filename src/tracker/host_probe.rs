//! [`HostProbe`]: the host source's two ticks, public for benchmarks that time one reading of a
//! process tree (for example against psutil doing the same walk).

use super::Reading;
use super::host::HostRss;

/// The host source, one tick at a time.
#[derive(Debug)]
pub struct HostProbe {
    source: HostRss,
    out: Vec<Reading>,
}

impl Default for HostProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl HostProbe {
    /// A probe (nothing is read yet).
    pub fn new() -> Self {
        Self {
            source: HostRss::new(),
            out: Vec::new(),
        }
    }

    /// The RSS tick over `pids` (what every reading costs): readings made.
    pub fn rss_tick(&mut self, pids: &[u32]) -> usize {
        self.out.clear();
        self.source.sample_rss(pids, &mut self.out);
        self.out.len()
    }

    /// The PSS/USS tick over `pids` (`smaps_rollup`, every few readings): readings made.
    pub fn rollup_tick(&mut self, pids: &[u32]) -> usize {
        self.out.clear();
        super::host::sample_rollups(pids, &mut self.out);
        self.out.len()
    }
}
