//! Where in a process the memory grew: `/proc/PID/smaps` read after the warm-up and after the
//! last measured request, summed by mapping kind, and the difference.
//!
//! The kinds answer "glibc heap vs mmap'd arena vs shared memory vs driver-pinned memory":
//! a retained object graph of a Python server grows pymalloc's 1 MiB arenas and glibc's heap,
//! big tensors kept on the host grow large anonymous mappings, shared-memory rings grow
//! `/dev/shm` mappings, pinned host buffers grow mappings of `/dev/nvidia*`.

use std::collections::BTreeMap;
use std::path::Path;

use procfs::process::{MMapPath, MemoryMaps, Process};
use serde::{Deserialize, Serialize};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The kind of a mapping: how it was made, and for anonymous memory its size class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MappingKind {
    /// `[heap]`: glibc's main arena (`brk`).
    Heap,
    /// Anonymous, at most 256 KiB: small `mmap`s, guard pages.
    AnonSmall,
    /// Anonymous, 256 KiB to 1 MiB: pymalloc arenas (1 MiB since Python 3.10), glibc's
    /// `mmap`ped chunks.
    AnonArena,
    /// Anonymous, 1 MiB to 64 MiB: glibc's thread arenas (64 MiB reservations), thread stacks.
    AnonMedium,
    /// Anonymous, over 64 MiB: big buffers (tensors on the host, KV pools, allocator pools).
    AnonLarge,
    /// `[stack]` of the main thread.
    Stack,
    /// Backed by a file outside `/dev/shm` (libraries, model weights mapped from disk).
    File,
    /// `/dev/shm` segments and System V shared memory.
    Shm,
    /// `memfd:` files (anonymous shared memory passed between processes).
    Memfd,
    /// GPU-driver mappings (`/dev/nvidia*`, `/dev/dri/*`): pinned host memory, UVM.
    GpuDriver,
    /// Everything else (`[vdso]`, `[vvar]`, other pseudo-paths).
    Other,
}

impl MappingKind {
    /// The label used in reports.
    pub fn label(self) -> &'static str {
        match self {
            MappingKind::Heap => "[heap]",
            MappingKind::AnonSmall => "anon ≤256 KiB",
            MappingKind::AnonArena => "anon ≤1 MiB",
            MappingKind::AnonMedium => "anon ≤64 MiB",
            MappingKind::AnonLarge => "anon >64 MiB",
            MappingKind::Stack => "[stack]",
            MappingKind::File => "file",
            MappingKind::Shm => "/dev/shm",
            MappingKind::Memfd => "memfd",
            MappingKind::GpuDriver => "gpu driver",
            MappingKind::Other => "other",
        }
    }

    /// What growth of this kind usually means, for a person.
    pub fn meaning(self) -> &'static str {
        match self {
            MappingKind::Heap => "glibc's main heap: small objects kept (or fragmentation)",
            MappingKind::AnonSmall => "small anonymous mappings",
            MappingKind::AnonArena => {
                "pymalloc arenas / mmapped malloc chunks: Python objects kept alive"
            }
            MappingKind::AnonMedium => "glibc thread arenas or thread stacks",
            MappingKind::AnonLarge => "large buffers (host tensors, pools) kept alive",
            MappingKind::Stack => "the main thread's stack",
            MappingKind::File => "file-backed pages (libraries, mapped weights, page cache)",
            MappingKind::Shm => "shared-memory segments mapped by the process",
            MappingKind::Memfd => "memfd shared memory",
            MappingKind::GpuDriver => "GPU driver mappings: pinned host memory",
            MappingKind::Other => "kernel pseudo-mappings",
        }
    }

    /// The kind of a mapping with this path and size.
    pub fn of(path: &MMapPath, size: u64) -> Self {
        match path {
            MMapPath::Heap => MappingKind::Heap,
            MMapPath::Stack => MappingKind::Stack,
            MMapPath::TStack(_) => MappingKind::AnonMedium,
            MMapPath::Anonymous => match size {
                s if s <= 256 * KIB => MappingKind::AnonSmall,
                s if s <= MIB => MappingKind::AnonArena,
                s if s <= 64 * MIB => MappingKind::AnonMedium,
                _ => MappingKind::AnonLarge,
            },
            MMapPath::Vsys(_) => MappingKind::Shm,
            MMapPath::Path(p) => path_kind(p),
            MMapPath::Other(name) if name.starts_with("anon:") => MappingKind::AnonSmall,
            _ => MappingKind::Other,
        }
    }
}

fn path_kind(p: &Path) -> MappingKind {
    let s = p.to_string_lossy();
    if s.starts_with("/dev/shm/") {
        MappingKind::Shm
    } else if s.starts_with("/memfd:") {
        MappingKind::Memfd
    } else if s.starts_with("/dev/nvidia") || s.starts_with("/dev/dri/") {
        MappingKind::GpuDriver
    } else if s.starts_with("/dev/zero") || s.starts_with("/SYSV") {
        // Shared anonymous memory (`MAP_SHARED|MAP_ANONYMOUS`) shows as /dev/zero (deleted).
        MappingKind::Shm
    } else {
        MappingKind::File
    }
}

/// Resident bytes and mapping count of one kind in one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindTotal {
    /// Resident bytes (`Rss`, summed), swapped-out bytes added (`Swap`).
    pub bytes: u64,
    /// Mappings of this kind.
    pub mappings: u64,
}

/// One mapping (the kernel's area): where, its kind, its resident bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Area {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Its kind.
    pub kind: MappingKind,
    /// `Rss + Swap`.
    pub bytes: u64,
}

/// One process's mappings, summed by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessMaps {
    /// By kind.
    pub kinds: BTreeMap<MappingKind, KindTotal>,
    /// Every area, by start address.
    pub areas: Vec<Area>,
}

impl ProcessMaps {
    /// Sums parsed smaps entries by kind.
    pub fn of(maps: &MemoryMaps) -> Self {
        let mut kinds = BTreeMap::<MappingKind, KindTotal>::new();
        let mut areas = Vec::with_capacity(maps.0.len());
        for m in &maps.0 {
            let size = m.address.1.saturating_sub(m.address.0);
            let kind = MappingKind::of(&m.pathname, size);
            let get = |k: &str| m.extension.map.get(k).copied().unwrap_or(0);
            let bytes = get("Rss") + get("Swap");
            let t = kinds.entry(kind).or_default();
            t.bytes += bytes;
            t.mappings += 1;
            areas.push(Area {
                start: m.address.0,
                end: m.address.1,
                kind,
                bytes,
            });
        }
        areas.sort_by_key(|a| a.start);
        Self { kinds, areas }
    }

    /// The kind of the area holding `addr`.
    fn kind_at(&self, addr: u64) -> Option<MappingKind> {
        let i = self.areas.partition_point(|a| a.start <= addr);
        let a = self.areas.get(i.checked_sub(1)?)?;
        (addr < a.end).then_some(a.kind)
    }

    /// These totals with every area counted under the kind of the area of `later` that now
    /// holds its start: an anonymous area that grew (the kernel merges adjacent anonymous
    /// mappings) moves up a size class, and its earlier bytes must move with it, or the diff
    /// shows a drop in one class and a jump in the next.
    fn as_classified_by(&self, later: &ProcessMaps) -> BTreeMap<MappingKind, KindTotal> {
        let mut kinds = BTreeMap::<MappingKind, KindTotal>::new();
        for a in &self.areas {
            let t = kinds
                .entry(later.kind_at(a.start).unwrap_or(a.kind))
                .or_default();
            t.bytes += a.bytes;
            t.mappings += 1;
        }
        kinds
    }

    /// Reads and sums `/proc/PID/smaps`.
    ///
    /// # Errors
    /// The `procfs` error (no such process, permission denied).
    pub fn read(pid: u32) -> Result<Self, procfs::ProcError> {
        let pid = i32::try_from(pid)
            .map_err(|_| procfs::ProcError::Other(format!("pid {pid} out of range")))?;
        Ok(Self::of(&Process::new(pid)?.smaps()?))
    }

    /// Resident bytes of every kind together.
    pub fn total(&self) -> u64 {
        self.kinds.values().map(|t| t.bytes).sum()
    }
}

/// How one kind of mapping changed in one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindGrowth {
    /// The kind ([`MappingKind::label`]): `[heap]`, `anon ≤1 MiB`, `/dev/shm`, `gpu driver`, ….
    pub kind: String,
    /// Resident bytes after the warm-up.
    pub before: u64,
    /// Resident bytes after the last measured request.
    pub after: u64,
    /// `after - before`.
    pub growth: i64,
    /// Growth per measured request (`null` without requests).
    pub per_request: Option<f64>,
    /// Mappings of this kind before and after.
    pub mappings: [u64; 2],
    /// What growth of this kind usually means.
    pub meaning: String,
}

/// How one process's mappings changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessGrowth {
    /// Host PID.
    pub pid: u32,
    /// Role or name (`scheduler`, `tokenizer_manager`, …).
    pub label: String,
    /// Resident bytes of every mapping, before and after.
    pub before: u64,
    /// Resident bytes after.
    pub after: u64,
    /// `after - before`.
    pub growth: i64,
    /// Growth per measured request.
    pub per_request: Option<f64>,
    /// Every kind the process maps, the biggest growth first.
    pub kinds: Vec<KindGrowth>,
}

impl ProcessGrowth {
    /// The kind that grew most, when one grew.
    pub fn top(&self) -> Option<&KindGrowth> {
        self.kinds.first().filter(|k| k.growth > 0)
    }
}

/// The difference of two readings of one process.
pub fn diff(
    pid: u32,
    label: String,
    before: &ProcessMaps,
    after: &ProcessMaps,
    requests: u64,
) -> ProcessGrowth {
    let per = |g: i64| (requests > 0).then(|| g as f64 / requests as f64);
    let before_kinds = if before.areas.is_empty() {
        before.kinds.clone()
    } else {
        before.as_classified_by(after)
    };
    let mut kinds: Vec<KindGrowth> = before_kinds
        .keys()
        .chain(after.kinds.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|k| {
            let b = before_kinds.get(k).copied().unwrap_or_default();
            let a = after.kinds.get(k).copied().unwrap_or_default();
            let growth = a.bytes as i64 - b.bytes as i64;
            KindGrowth {
                kind: k.label().to_owned(),
                before: b.bytes,
                after: a.bytes,
                growth,
                per_request: per(growth),
                mappings: [b.mappings, a.mappings],
                meaning: k.meaning().to_owned(),
            }
        })
        .collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.growth));
    let (b, a) = (before.total(), after.total());
    let growth = a as i64 - b as i64;
    ProcessGrowth {
        pid,
        label,
        before: b,
        after: a,
        growth,
        per_request: per(growth),
        kinds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::FromBufRead;

    const SMAPS: &str = "\
55d4c0000000-55d4c2000000 rw-p 00000000 00:00 0                          [heap]
Size:              32768 kB
Rss:               20480 kB
Swap:                  0 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Size:               1024 kB
Rss:                1024 kB
7f0001000000-7f0009000000 rw-p 00000000 00:00 0 
Size:             131072 kB
Rss:               65536 kB
Swap:               1024 kB
7f000a000000-7f000a400000 rw-s 00000000 00:1a 12                         /dev/shm/psm_abc
Size:               4096 kB
Rss:                2048 kB
7f000b000000-7f000b200000 rw-s 00000000 00:05 40                         /dev/nvidiactl
Size:               2048 kB
Rss:                2048 kB
7f000c000000-7f000c100000 r-xp 00000000 08:01 99                         /usr/lib/libc.so.6
Size:               1024 kB
Rss:                 512 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                  40 kB
";

    fn maps() -> ProcessMaps {
        ProcessMaps::of(&MemoryMaps::from_buf_read(SMAPS.as_bytes()).expect("parses"))
    }

    #[test]
    fn mappings_are_summed_by_kind() {
        let m = maps();
        let get = |k| m.kinds.get(&k).copied().unwrap_or_default();
        assert_eq!(get(MappingKind::Heap).bytes, 20480 * KIB);
        assert_eq!(get(MappingKind::AnonArena).bytes, MIB);
        assert_eq!(get(MappingKind::AnonLarge).bytes, 65 * MIB);
        assert_eq!(get(MappingKind::Shm).bytes, 2 * MIB);
        assert_eq!(get(MappingKind::GpuDriver).bytes, 2 * MIB);
        assert_eq!(get(MappingKind::File).bytes, 512 * KIB);
        assert_eq!(get(MappingKind::Stack).bytes, 40 * KIB);
        assert_eq!(
            m.total(),
            (20480 + 1024 + 66560 + 2048 + 2048 + 512 + 40) * KIB
        );
    }

    #[test]
    fn the_diff_puts_the_biggest_grower_first_with_its_rate() {
        let before = maps();
        let mut after = before.clone();
        after.kinds.entry(MappingKind::AnonArena).and_modify(|t| {
            t.bytes += 100 * MIB;
            t.mappings += 100;
        });
        after
            .kinds
            .entry(MappingKind::Heap)
            .and_modify(|t| t.bytes += MIB);
        let d = diff(7, "scheduler".into(), &before, &after, 100);
        let top = d.top().expect("a kind grew");
        assert_eq!(top.kind, "anon ≤1 MiB");
        assert_eq!(top.growth, 100 * MIB as i64);
        assert_eq!(top.per_request, Some(MIB as f64));
        assert_eq!(top.mappings, [1, 101]);
        assert_eq!(d.kinds[1].kind, "[heap]");
        assert_eq!(d.kinds.len(), 7, "every kind is listed");
        assert_eq!(d.kinds[2].growth, 0);
        assert_eq!(d.growth, 101 * MIB as i64);
    }

    #[test]
    fn an_area_that_grew_into_a_larger_class_takes_its_earlier_bytes_along() {
        let area = |end_mib: u64, bytes_mib: u64| Area {
            start: 0x7f00_0000_0000,
            end: 0x7f00_0000_0000 + end_mib * MIB,
            kind: MappingKind::of(&MMapPath::Anonymous, end_mib * MIB),
            bytes: bytes_mib * MIB,
        };
        let one = |a: Area| ProcessMaps {
            kinds: BTreeMap::from([(
                a.kind,
                KindTotal {
                    bytes: a.bytes,
                    mappings: 1,
                },
            )]),
            areas: vec![a],
        };
        let (before, after) = (one(area(40, 40)), one(area(100, 100)));
        let d = diff(1, "x".into(), &before, &after, 60);
        assert_eq!(d.kinds.len(), 1, "{d:?}");
        assert_eq!(d.kinds[0].kind, "anon >64 MiB");
        assert_eq!(d.kinds[0].growth, 60 * MIB as i64);
        assert_eq!(d.kinds[0].per_request, Some(MIB as f64));
    }

    #[test]
    fn this_process_can_be_read() {
        let m = ProcessMaps::read(std::process::id()).expect("own smaps");
        assert!(m.total() > 0);
        assert!(m.kinds.contains_key(&MappingKind::File));
    }
}
