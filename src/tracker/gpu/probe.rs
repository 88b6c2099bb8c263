//! [`GpuProbe`]: the GPU source, public for integration tests and benchmarks.

use super::GpuSource;
use crate::tracker::GpuUnavailable;

/// GPU memory through NVML, for integration tests and benchmarks that time one sample (for
/// example against `nvidia-smi`).
///
/// Honours `CUDA_VISIBLE_DEVICES` for the per-device readings; per-process readings cover the
/// given PIDs on every device.
pub struct GpuProbe {
    source: GpuSource,
}

impl std::fmt::Debug for GpuProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl GpuProbe {
    /// Loads NVML and lists the GPUs in `visible_devices` (the `CUDA_VISIBLE_DEVICES` syntax;
    /// `None`: all).
    ///
    /// # Errors
    ///
    /// One line for a person saying why GPU metrics are unavailable: no NVML library (no NVIDIA
    /// driver), the driver not loaded, no permission, or no visible GPU.
    pub fn open(visible_devices: Option<&str>) -> Result<GpuProbe, GpuUnavailable> {
        GpuSource::open(visible_devices)
            .map(|source| GpuProbe { source })
            .map_err(|reason| GpuUnavailable { reason })
    }

    /// Devices (index, name, total memory, UUID), driver version and notes, on one line.
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// Process-list reads so far, and ticks that reused the last list because no device's
    /// memory had moved.
    pub fn list_reads(&self) -> (u64, u64) {
        self.source.list_reads()
    }

    /// Takes one sample: `(metric name, value)` pairs, e.g. `("gpu.used@dev:0", bytes)`,
    /// `("gpu.proc@pid:4321", bytes)`, `("gpu.proc@tree", bytes)` summed over `pids`.
    /// NVML errors during the sample leave the affected readings out.
    pub fn sample_once(&mut self, pids: &[u32]) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        self.source.sample(pids, &mut out);
        out.into_iter().map(|r| (r.metric, r.v)).collect()
    }
}
