//! Metric names, typed: `source.quantity@scope`. This is the one place that builds, parses and
//! matches them; everything else holds a [`Metric`] or a [`MetricPattern`].
//!
//! | source | quantities | scopes |
//! |---|---|---|
//! | `host` | `rss`, `pss`, `uss`, `procs`, `mem_available` | `tree`, `pid:P`, none |
//! | `gpu` | `used`, `free`, `total`, `reserved`, `proc` | `dev:I`, `tree`, `pid:P` |
//! | `shm` | `bytes`, `files` | none (the server's segments), a family of them (`psm`, `sgl_shm`), or `host` (the whole folder, never judged) |
//! | `server` | the server's own gauges (`num_used_tokens`, `mem.kvcache`, …) | none, `rank:R` |

mod pattern;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use pattern::MetricPattern;

/// Where a metric comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// procfs: the server's process tree and the host.
    Host,
    /// NVML: devices and the tree's processes on them.
    Gpu,
    /// `/dev/shm`.
    Shm,
    /// The server's own `/metrics` and `/server_info`.
    Server,
}

impl Source {
    /// `host`, `gpu`, `shm` or `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Host => "host",
            Source::Gpu => "gpu",
            Source::Shm => "shm",
            Source::Server => "server",
        }
    }

    /// The quantities this source produces (`None`: any, the server's own names).
    pub fn quantities(self) -> Option<&'static [&'static str]> {
        match self {
            Source::Host => Some(&["rss", "pss", "uss", "procs", "mem_available"]),
            Source::Gpu => Some(&["used", "free", "total", "reserved", "proc"]),
            Source::Shm => Some(&["bytes", "files"]),
            Source::Server => None,
        }
    }
}

impl FromStr for Source {
    type Err = MetricParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "host" => Ok(Source::Host),
            "gpu" => Ok(Source::Gpu),
            "shm" => Ok(Source::Shm),
            "server" => Ok(Source::Server),
            _ => Err(MetricParseError::Source(s.to_owned())),
        }
    }
}

/// What a metric covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// No `@…`: the machine or the server as a whole (`shm.bytes`, `host.mem_available`).
    Whole,
    /// `@tree`: summed over the server's process tree.
    Tree,
    /// `@pid:P`: one process.
    Pid(u32),
    /// `@dev:I`: one GPU (NVML index).
    Dev(u32),
    /// `@rank:R`: one data-parallel rank of the server.
    Rank(u32),
    /// `@name`: a named family (`shm.bytes@psm`).
    Family(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Whole => Ok(()),
            Scope::Tree => f.write_str("@tree"),
            Scope::Pid(p) => write!(f, "@pid:{p}"),
            Scope::Dev(d) => write!(f, "@dev:{d}"),
            Scope::Rank(r) => write!(f, "@rank:{r}"),
            Scope::Family(n) => write!(f, "@{n}"),
        }
    }
}

/// What a series measures (defined with the byte units below every room, so that an engine's
/// idle accounting can say it too).
pub use crate::util::Unit;

/// A metric name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricParseError {
    /// The part before the first `.` is not a source.
    #[error("unknown source {0:?}: use host, gpu, shm or server")]
    Source(String),
    /// No `.quantity` after the source.
    #[error("{0:?} has no quantity: write source.quantity[@scope], e.g. host.rss@tree")]
    NoQuantity(String),
    /// The quantity is not one the source produces.
    #[error("unknown quantity {quantity:?} for {of}: use one of {known}")]
    Quantity {
        /// The source.
        of: &'static str,
        /// What was given.
        quantity: String,
        /// The quantities that exist.
        known: String,
    },
    /// The scope after `@` is not one of the known forms.
    #[error(
        "unknown scope {0:?}: use tree, pid:N, dev:N, rank:N (or * / pid:* / dev:* in a pattern)"
    )]
    Scope(String),
}

/// One metric: `source.quantity@scope`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Metric {
    /// Where it comes from.
    pub source: Source,
    /// What it measures (`rss`, `proc`, `num_used_tokens`, …).
    pub quantity: String,
    /// What it covers.
    pub scope: Scope,
}

impl Metric {
    /// `source.quantity@scope`.
    pub fn new(source: Source, quantity: impl Into<String>, scope: Scope) -> Self {
        Self {
            source,
            quantity: quantity.into(),
            scope,
        }
    }

    /// `host.<quantity>@tree`.
    pub fn host_tree(quantity: &str) -> Self {
        Self::new(Source::Host, quantity, Scope::Tree)
    }

    /// `host.<quantity>@pid:<pid>`.
    pub fn host_pid(quantity: &str, pid: u32) -> Self {
        Self::new(Source::Host, quantity, Scope::Pid(pid))
    }

    /// `gpu.proc@pid:<pid>`: GPU memory of one process, all devices.
    pub fn gpu_pid(pid: u32) -> Self {
        Self::new(Source::Gpu, "proc", Scope::Pid(pid))
    }

    /// `gpu.<quantity>@dev:<index>`.
    pub fn gpu_dev(quantity: &str, index: u32) -> Self {
        Self::new(Source::Gpu, quantity, Scope::Dev(index))
    }

    /// The process, for `…@pid:P`.
    pub fn pid(&self) -> Option<u32> {
        match self.scope {
            Scope::Pid(p) => Some(p),
            _ => None,
        }
    }

    /// The unit its readings have, when the name alone says so (every source but `server`).
    pub fn unit(&self) -> Option<Unit> {
        match (self.source, self.quantity.as_str()) {
            (Source::Host, "procs") | (Source::Shm, "files") => Some(Unit::Count),
            (Source::Host | Source::Gpu | Source::Shm, _) => Some(Unit::Bytes),
            (Source::Server, _) => None,
        }
    }

    /// Whether growth of this metric can be a leak: memory held, not capacities
    /// (`gpu.total`), headroom (`gpu.free`, `host.mem_available`) or the server's own
    /// accounting (judged separately).
    pub fn can_leak(&self) -> bool {
        match self.source {
            Source::Host => !matches!(self.quantity.as_str(), "mem_available" | "procs"),
            Source::Gpu => !matches!(self.quantity.as_str(), "total" | "free"),
            // The whole folder is context: other jobs' segments are in it.
            Source::Shm => self.quantity == "bytes" && self.scope != Scope::Family("host".into()),
            Source::Server => false,
        }
    }

    /// Whether it is memory of the server itself (host or GPU), as opposed to the
    /// machine's `/dev/shm` or the server's own counters.
    pub fn is_server_memory(&self) -> bool {
        matches!(self.source, Source::Host | Source::Gpu) && self.can_leak()
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}{}",
            self.source.as_str(),
            self.quantity,
            self.scope
        )
    }
}

impl From<Metric> for String {
    fn from(m: Metric) -> Self {
        m.to_string()
    }
}

/// The part after `@` (`None`: no `@`).
fn parse_scope(source: Source, scope: Option<&str>) -> Result<Scope, MetricParseError> {
    let number = |v: &str, s: &str| v.parse().map_err(|_| MetricParseError::Scope(s.to_owned()));
    Ok(match scope {
        None => Scope::Whole,
        Some("tree") => Scope::Tree,
        Some(s) => match s.split_once(':') {
            Some(("pid", v)) => Scope::Pid(number(v, s)?),
            Some(("dev", v)) => Scope::Dev(number(v, s)?),
            Some(("rank", v)) => Scope::Rank(number(v, s)?),
            // Only /dev/shm has named families (`shm.bytes@psm`).
            None if source == Source::Shm
                && !s.is_empty()
                && s.chars().all(|c| c.is_alphanumeric() || c == '_') =>
            {
                Scope::Family(s.to_owned())
            }
            _ => return Err(MetricParseError::Scope(s.to_owned())),
        },
    })
}

/// `source.quantity` and the scope text.
fn split_name(text: &str) -> Result<(Source, &str, Option<&str>), MetricParseError> {
    let (name, scope) = match text.split_once('@') {
        Some((n, s)) => (n, Some(s)),
        None => (text, None),
    };
    let (source, quantity) = name
        .split_once('.')
        .ok_or_else(|| MetricParseError::NoQuantity(text.to_owned()))?;
    Ok((source.parse()?, quantity, scope))
}

impl FromStr for Metric {
    type Err = MetricParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (source, quantity, scope) = split_name(text)?;
        check_quantity(source, quantity)?;
        Ok(Metric::new(source, quantity, parse_scope(source, scope)?))
    }
}

fn check_quantity(source: Source, quantity: &str) -> Result<(), MetricParseError> {
    match source.quantities() {
        Some(known) if !known.contains(&quantity) => Err(MetricParseError::Quantity {
            of: source.as_str(),
            quantity: quantity.to_owned(),
            known: known.join(", "),
        }),
        _ if quantity.is_empty() => Err(MetricParseError::NoQuantity(format!(
            "{}.",
            source.as_str()
        ))),
        _ => Ok(()),
    }
}

/// The metric names the harness itself builds, as strings (timeline keys).
pub mod names {
    /// `host.rss@tree`: resident set size summed over the server's process tree.
    pub const HOST_RSS_TREE: &str = "host.rss@tree";
    /// `host.pss@tree`: proportional set size summed over the tree.
    pub const HOST_PSS_TREE: &str = "host.pss@tree";
    /// `host.uss@tree`: unique set size summed over the tree.
    pub const HOST_USS_TREE: &str = "host.uss@tree";
    /// `host.procs@tree`: number of processes in the tree.
    pub const HOST_PROCS_TREE: &str = "host.procs@tree";
    /// `host.mem_available`: the host's `MemAvailable` (headroom for `requests_to_oom`).
    pub const HOST_MEM_AVAILABLE: &str = "host.mem_available";
    /// `gpu.proc@tree`: GPU memory held by processes of the tree, all devices.
    pub const GPU_PROC_TREE: &str = "gpu.proc@tree";
    /// `shm.bytes`: allocated bytes of the server's `/dev/shm` segments (those its processes map
    /// or hold open, or made during the run).
    pub const SHM_BYTES: &str = "shm.bytes";
    /// `shm.files`: the server's `/dev/shm` segments.
    pub const SHM_FILES: &str = "shm.files";
    /// `shm.bytes@host`: allocated bytes of everything in `/dev/shm` (context, never judged).
    pub const SHM_BYTES_HOST: &str = "shm.bytes@host";
    /// `shm.files@host`: files in `/dev/shm` (context).
    pub const SHM_FILES_HOST: &str = "shm.files@host";
}
pub use names::*;

/// `host.<quantity>@pid:<pid>`, e.g. `host.rss@pid:4321`.
pub fn host_pid(quantity: &str, pid: u32) -> String {
    Metric::host_pid(quantity, pid).to_string()
}

/// `gpu.proc@pid:<pid>`: GPU memory of one process, all devices.
pub fn gpu_pid(pid: u32) -> String {
    Metric::gpu_pid(pid).to_string()
}

/// `gpu.<quantity>@dev:<index>`, e.g. `gpu.used@dev:0`.
pub fn gpu_dev(quantity: &str, index: u32) -> String {
    Metric::gpu_dev(quantity, index).to_string()
}

/// The PID in a `…@pid:<pid>` metric name.
pub fn pid_of(metric: &str) -> Option<u32> {
    metric.parse::<Metric>().ok()?.pid()
}
