//! Metric names: `source.quantity@scope`. One place builds them so tests and thresholds agree.

/// `host.rss@tree`: resident set size summed over the server's process tree.
pub const HOST_RSS_TREE: &str = "host.rss@tree";
/// `host.pss@tree`: proportional set size summed over the tree (shared pages counted once).
pub const HOST_PSS_TREE: &str = "host.pss@tree";
/// `host.uss@tree`: unique set size summed over the tree.
pub const HOST_USS_TREE: &str = "host.uss@tree";
/// `host.procs@tree`: number of processes in the tree.
pub const HOST_PROCS_TREE: &str = "host.procs@tree";
/// `gpu.proc@tree`: GPU memory held by processes of the tree, all devices.
pub const GPU_PROC_TREE: &str = "gpu.proc@tree";
/// `shm.bytes`: allocated bytes in `/dev/shm`.
pub const SHM_BYTES: &str = "shm.bytes";
/// `shm.files`: files in `/dev/shm`.
pub const SHM_FILES: &str = "shm.files";

/// `host.<quantity>@pid:<pid>`, e.g. `host.rss@pid:4321`.
pub fn host_pid(quantity: &str, pid: u32) -> String {
    format!("host.{quantity}@pid:{pid}")
}

/// `gpu.proc@pid:<pid>`: GPU memory of one process, all devices.
pub fn gpu_pid(pid: u32) -> String {
    format!("gpu.proc@pid:{pid}")
}

/// `gpu.<quantity>@dev:<index>`, e.g. `gpu.used@dev:0`.
pub fn gpu_dev(quantity: &str, index: u32) -> String {
    format!("gpu.{quantity}@dev:{index}")
}

/// The PID in a `…@pid:<pid>` metric name.
pub fn pid_of(metric: &str) -> Option<u32> {
    metric.rsplit_once("@pid:")?.1.parse().ok()
}

/// `host.mem_available`: the host's `MemAvailable` (headroom for `requests_to_oom`).
pub const HOST_MEM_AVAILABLE: &str = "host.mem_available";
