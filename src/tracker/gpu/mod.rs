//! GPU source: device memory and per-process memory of the server's tree, through NVML.
//!
//! NVML is loaded at run time (`libnvidia-ml.so.1`), so this builds and runs where no driver
//! exists: [`GpuSource::open`] then says why GPU metrics are unavailable. See
//! `docs/design/gpu.md` for how memory is attributed and what "unavailable" means.

mod probe;
#[cfg(test)]
mod tests;
mod visible;

use std::collections::{BTreeMap, HashSet};

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;

use super::Reading;
use super::metric::{GPU_PROC_TREE, gpu_dev, gpu_pid};
use visible::{parse_visible_devices, resolve_visible};

pub use probe::GpuProbe;

/// Inode of the initial PID namespace (`PROC_PID_INIT_INO` in the kernel, fixed since 3.8).
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;

/// One device the harness watches.
#[derive(Debug, Clone)]
struct DeviceInfo {
    index: u32,
    name: String,
    uuid: String,
    total: u64,
}
/// True when the harness runs in a PID namespace other than the host's (a container without
/// `--pid=host`). NVML reports host PIDs, and no file inside the namespace names them (the
/// `NSpid` line starts at this namespace), so tree PIDs cannot be matched to NVML's.
fn in_nested_pid_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    // `stat` follows the `pid:[ino]` link to the nsfs inode. Unreadable: assume the host.
    std::fs::metadata("/proc/self/ns/pid").is_ok_and(|m| m.ino() != INIT_PID_NS_INO)
}

/// One process on one device as NVML lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcSample {
    device: u32,
    /// Host PID.
    pid: u32,
    /// Bytes, or `None` when the driver does not say (`Unavailable` or the all-ones sentinel).
    used: Option<u64>,
}

/// Per-process readings for one tick.
#[derive(Debug, Default, PartialEq)]
struct TreeOutcome {
    readings: Vec<Reading>,
    /// Tree processes listed on some device.
    on_gpu: usize,
    /// Tree processes listed with no usable byte count.
    without_data: usize,
    /// True when tree processes were on the GPU but not one of them had data: no `gpu.proc@tree`
    /// this tick (a 0 would read as "the server holds no GPU memory").
    unavailable: bool,
}

/// NVML's byte count, with every "no data" form turned into `None`.
fn used_bytes(used: &UsedGpuMemory) -> Option<u64> {
    match *used {
        // Some drivers (and NVML_VALUE_NOT_AVAILABLE cast to u64) give all ones for every process.
        UsedGpuMemory::Used(b) if b != u64::MAX => Some(b),
        _ => None,
    }
}

/// Matches the device process lists against the tree (host PIDs) and sums per process and over
/// the tree. A process with no data gets no reading; the tree sum is emitted when at least one
/// tree process had data (it is then a lower bound if others had none), and when no tree process
/// is on the GPU at all (then 0 is a fact).
fn tree_readings(procs: &[ProcSample], tree: &[u32]) -> TreeOutcome {
    let tree: HashSet<u32> = tree.iter().copied().collect();
    // pid -> Some(bytes summed over devices) or None while no device gave data for it.
    let mut per_pid: BTreeMap<u32, Option<u64>> = BTreeMap::new();
    for p in procs.iter().filter(|p| tree.contains(&p.pid)) {
        let slot = per_pid.entry(p.pid).or_insert(None);
        if let Some(b) = p.used {
            *slot = Some(slot.unwrap_or(0).saturating_add(b));
        }
    }
    let mut out = TreeOutcome {
        on_gpu: per_pid.len(),
        ..TreeOutcome::default()
    };
    let mut total = 0u64;
    let mut with_data = 0usize;
    for (&pid, &bytes) in &per_pid {
        match bytes {
            Some(b) => {
                with_data += 1;
                total = total.saturating_add(b);
                out.readings.push(Reading::bytes(gpu_pid(pid), b));
            }
            None => out.without_data += 1,
        }
    }
    if out.on_gpu > 0 && with_data == 0 {
        out.unavailable = true;
    } else {
        out.readings.push(Reading::bytes(GPU_PROC_TREE, total));
    }
    out
}

/// One line for a person from an NVML start-up error.
fn explain_init_error(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            "GPU metrics unavailable: NVML library (libnvidia-ml.so.1) not found — no NVIDIA driver on this machine"
                .to_string()
        }
        NvmlError::DriverNotLoaded => {
            "GPU metrics unavailable: NVML found but the NVIDIA driver is not loaded".to_string()
        }
        NvmlError::NoPermission => "GPU metrics unavailable: no permission to talk to the NVIDIA driver (NVML)".to_string(),
        other => format!("GPU metrics unavailable: NVML failed to start: {other}"),
    }
}

/// GPU memory through NVML, per device and per process of the server's tree.
pub(crate) struct GpuSource {
    /// Initialised once: `nvmlInit` costs milliseconds. Device handles borrow it, so they are
    /// fetched per tick (`nvmlDeviceGetHandleByIndex` returns a cached handle, well under a µs)
    /// rather than stored beside it in a self-referential struct.
    nvml: Nvml,
    /// Devices reported per device (`CUDA_VISIBLE_DEVICES`).
    visible: Vec<DeviceInfo>,
    /// Every device: process lists are read on all of them, since the server may be started
    /// with its own `CUDA_VISIBLE_DEVICES`; matching by PID cannot pick up foreign memory.
    all: Vec<u32>,
    driver: String,
    notes: Vec<String>,
    /// Host PIDs cannot be matched to the tree (see [`in_nested_pid_namespace`]).
    nested_pid_ns: bool,
    /// Ticks where tree processes were on the GPU but the driver gave no byte count for any.
    unavailable_ticks: u64,
    /// Ticks sampled.
    ticks: u64,
    /// The device process lists of the last read, reused while no device's memory moved.
    procs: Vec<ProcSample>,
    /// Every device's used bytes when the process lists were last read (`None`: unread).
    lists_at_used: Option<Vec<u64>>,
    /// When the process lists were last read.
    lists_read_at: Option<std::time::Instant>,
    /// Whether the last read had every list.
    lists_ok: bool,
    /// Process-list reads, and ticks that reused the last one.
    lists_read: u64,
    lists_reused: u64,
}

/// Longest a process-list read is reused while no device's memory moved: bounds how stale the
/// per-process split can be if two processes of one device traded exactly the same bytes.
const LIST_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for GpuSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuSource")
            .field("describe", &self.describe())
            .finish()
    }
}

impl GpuSource {
    /// Ok(source) when NVML works and at least one visible device exists; Err(one line for a
    /// person: why GPU metrics are unavailable) otherwise.
    pub(crate) fn open(visible_devices: Option<&str>) -> Result<Self, String> {
        Self::open_with(visible_devices)
    }

    fn open_with(visible_env: Option<&str>) -> Result<Self, String> {
        let nvml = Nvml::init().map_err(|e| explain_init_error(&e))?;
        let count = nvml
            .device_count()
            .map_err(|e| format!("GPU metrics unavailable: NVML could not count devices: {e}"))?;
        let mut devices = Vec::new();
        let mut notes = Vec::new();
        for index in 0..count {
            // A device that cannot be opened (lost, no permission) is noted, not fatal.
            match nvml.device_by_index(index) {
                Ok(d) => devices.push(DeviceInfo {
                    index,
                    name: d.name().unwrap_or_else(|_| "unknown GPU".into()),
                    uuid: d.uuid().unwrap_or_default(),
                    total: d.memory_info().map(|m| m.total).unwrap_or(0),
                }),
                Err(e) => notes.push(format!("GPU {index} could not be opened: {e}")),
            }
        }
        let ids: Vec<(u32, String)> = devices.iter().map(|d| (d.index, d.uuid.clone())).collect();
        let entries = parse_visible_devices(visible_env);
        let (picked, visible_notes) = resolve_visible(entries.as_deref(), &ids);
        notes.extend(visible_notes);
        let visible: Vec<DeviceInfo> = picked
            .iter()
            .filter_map(|i| devices.iter().find(|d| d.index == *i).cloned())
            .collect();
        if visible.is_empty() {
            let why = match visible_env {
                _ if devices.is_empty() => "NVML lists no GPU".to_string(),
                Some(v) => format!("CUDA_VISIBLE_DEVICES={v:?} leaves no GPU visible"),
                None => "no GPU could be opened".to_string(),
            };
            let mut line = format!("GPU metrics unavailable: {why}");
            if !notes.is_empty() {
                line.push_str(&format!(" ({})", notes.join("; ")));
            }
            return Err(line);
        }
        let nested_pid_ns = in_nested_pid_namespace();
        if nested_pid_ns {
            notes.push(
                "harness runs in a PID namespace (container) and NVML reports host PIDs: per-process GPU memory \
                 is not attributed (run the container with --pid=host)"
                    .into(),
            );
        }
        Ok(Self {
            driver: nvml
                .sys_driver_version()
                .unwrap_or_else(|_| "unknown".into()),
            all: devices.iter().map(|d| d.index).collect(),
            nvml,
            visible,
            notes,
            nested_pid_ns,
            unavailable_ticks: 0,
            ticks: 0,
            procs: Vec::new(),
            lists_at_used: None,
            lists_read_at: None,
            lists_ok: false,
            lists_read: 0,
            lists_reused: 0,
        })
    }

    /// A one-line description for the report: devices (index, name, total memory, uuid), the
    /// driver version, and any notes.
    pub(crate) fn describe(&self) -> String {
        let devices: Vec<String> = self
            .visible
            .iter()
            .map(|d| {
                format!(
                    "GPU {} {} {:.1} GiB {}",
                    d.index,
                    d.name,
                    d.total as f64 / (1u64 << 30) as f64,
                    d.uuid
                )
            })
            .collect();
        let mut line = format!("{}; driver {}", devices.join(", "), self.driver);
        for note in &self.notes {
            line.push_str("; ");
            line.push_str(note);
        }
        line
    }

    /// Ticks in which the tree was on the GPU but the driver gave no per-process byte count, so
    /// `gpu.proc@tree` was left out. Non-zero: say "per-process GPU memory unavailable from this
    /// driver" in the report.
    pub(crate) fn unavailable_ticks(&self) -> u64 {
        self.unavailable_ticks
    }

    /// True when per-process attribution is off because PIDs cannot be matched (container).
    pub(crate) fn per_process_disabled(&self) -> bool {
        self.nested_pid_ns
    }

    /// Process-list reads and ticks that reused the last list (device memory had not moved).
    pub(crate) fn list_reads(&self) -> (u64, u64) {
        (self.lists_read, self.lists_reused)
    }

    /// Reads every visible device and the compute-process lists; pushes readings for the
    /// processes in `tree` (host PIDs as seen in /proc). Returns the number of NVML errors this
    /// tick (counted by the caller, never fatal).
    ///
    /// The process lists cost ~100× a device's memory info, so they are read again only when
    /// some device's used memory moved since the last read (or after [`LIST_REFRESH`]): a
    /// process whose memory grows grows its device's, so every growth is attributed from the
    /// tick it shows, and a tick where nothing moved reuses readings that are still exact.
    pub(crate) fn sample(&mut self, tree: &[u32], out: &mut Vec<Reading>) -> u64 {
        self.ticks += 1;
        let mut errors = 0u64;
        for d in &self.visible {
            let info = self
                .nvml
                .device_by_index(d.index)
                .and_then(|dev| dev.memory_info());
            match info {
                Ok(m) => {
                    // v2 call: `used` excludes `reserved` (driver/firmware memory).
                    out.push(Reading::bytes(gpu_dev("used", d.index), m.used));
                    out.push(Reading::bytes(gpu_dev("total", d.index), m.total));
                    out.push(Reading::bytes(gpu_dev("free", d.index), m.free));
                    out.push(Reading::bytes(gpu_dev("reserved", d.index), m.reserved));
                }
                Err(_) => errors += 1,
            }
        }
        if self.nested_pid_ns {
            return errors;
        }
        // Every device's used memory (the lists cover all devices, visible or not).
        let used_now: Option<Vec<u64>> = self
            .all
            .iter()
            .map(|&i| {
                self.nvml
                    .device_by_index(i)
                    .and_then(|dev| dev.memory_info())
                    .ok()
                    .map(|m| m.used)
            })
            .collect();
        let fresh = self
            .lists_read_at
            .is_some_and(|at| at.elapsed() < LIST_REFRESH);
        let unmoved = used_now.is_some() && used_now == self.lists_at_used;
        if fresh && unmoved && self.lists_ok {
            self.lists_reused += 1;
        } else {
            self.procs.clear();
            self.lists_ok = true;
            for &index in &self.all {
                let list = self
                    .nvml
                    .device_by_index(index)
                    .and_then(|dev| dev.running_compute_processes());
                match list {
                    Ok(list) => self.procs.extend(list.iter().map(|p| ProcSample {
                        device: index,
                        pid: p.pid,
                        used: used_bytes(&p.used_gpu_memory),
                    })),
                    Err(_) => {
                        errors += 1;
                        self.lists_ok = false;
                    }
                }
            }
            self.lists_read += 1;
            self.lists_read_at = Some(std::time::Instant::now());
            self.lists_at_used = used_now;
        }
        let lists_ok = self.lists_ok;
        let outcome = tree_readings(&self.procs, tree);
        if outcome.unavailable {
            self.unavailable_ticks += 1;
        }
        // A missing list could hide tree memory: a partial sum would look like a drop.
        if lists_ok {
            out.extend(outcome.readings);
        } else {
            out.extend(
                outcome
                    .readings
                    .into_iter()
                    .filter(|r| r.metric != GPU_PROC_TREE),
            );
        }
        errors
    }
}
