//! Host memory of the server's process tree, from procfs.
//!
//! RSS comes from `/proc/PID/statm` every tick (a few µs per process). PSS and USS come from
//! `/proc/PID/smaps_rollup`, whose cost grows with resident memory (≈ 15 ms per GiB), so they
//! are read every `pss_every` ticks only, on a thread of their own ([`sample_rollups`]).

use std::collections::HashMap;

use super::metric::{self, HOST_PROCS_TREE, HOST_PSS_TREE, HOST_RSS_TREE, HOST_USS_TREE};
use super::{ProcessInfo, Reading};

/// PSS and USS of one process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Rollup {
    pub pss: u64,
    pub uss: u64,
}

/// Parse the text of `/proc/PID/smaps_rollup` (values in kB).
pub(crate) fn parse_rollup(text: &str) -> Option<Rollup> {
    let mut rollup = Rollup::default();
    let mut seen_pss = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(kb) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        match key {
            "Pss" => {
                rollup.pss = kb * 1024;
                seen_pss = true;
            }
            "Private_Clean" | "Private_Dirty" | "Private_Hugetlb" => rollup.uss += kb * 1024,
            _ => {}
        }
    }
    seen_pss.then_some(rollup)
}

/// A short, stable name for a process: the title it set (`sglang::scheduler_TP0`), else
/// `comm` with what tells same-named interpreters apart: the module of `python -m module`, the
/// script of `python script.py`, the multiprocessing role of a spawned worker.
pub(crate) fn process_name(comm: &str, cmdline: &[String]) -> String {
    if let Some(first) = cmdline.first() {
        let title = first.trim();
        if title.contains("::") {
            return title.split_whitespace().next().unwrap_or(title).to_owned();
        }
    }
    if let Some(i) = cmdline.iter().position(|a| a == "-m")
        && let Some(module) = cmdline.get(i + 1)
    {
        return format!("{comm} -m {module}");
    }
    if let Some(i) = cmdline.iter().position(|a| a == "-c")
        && let Some(code) = cmdline.get(i + 1)
        && let Some(rest) = code.split("from multiprocessing.").nth(1)
    {
        let role: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        return format!("{comm} (multiprocessing {role})");
    }
    if let Some(script) = cmdline
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .filter(|a| a.ends_with(".py"))
    {
        let base = script.rsplit('/').next().unwrap_or(script);
        return format!("{comm} {base}");
    }
    comm.to_owned()
}

/// The role of a process in an inference server, from its title and command line (see
/// [`ProcessInfo::role`]); `None` when it is not recognised.
///
/// Each engine knows its own processes (`engine::sglang`: the launcher is the
/// `tokenizer_manager`, children titled `sglang::scheduler`, …; `engine::vllm`: `VLLM::EngineCore`,
/// `VLLM::Worker…`, an untitled `api_server`). The reference server plays SGLang's launcher, and
/// Python's multiprocessing resource tracker is named whatever the engine.
pub(crate) fn process_role(cmdline: &[String]) -> Option<String> {
    if let Some(role) = crate::engine::role(cmdline) {
        return Some(role);
    }
    let cmd = crate::engine::Cmdline::new(cmdline);
    if cmd.program == "sglang-memtest" && cmd.sub == Some("serve-reference") {
        return Some("tokenizer_manager".into());
    }
    let has = |a: &str| cmdline.iter().any(|x| x == a);
    if has("-c")
        && cmdline
            .iter()
            .any(|a| a.contains("multiprocessing.resource_tracker"))
    {
        return Some("resource_tracker".into());
    }
    None
}

fn resident_bytes(pid: u32, page_size: u64) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size)
}

fn describe(pid: u32, t_ms: u64) -> Option<ProcessInfo> {
    let proc = procfs::process::Process::new(pid as i32).ok()?;
    let stat = proc.stat().ok()?;
    let cmdline = proc.cmdline().unwrap_or_default();
    // Secrets on a command line (`--api-key K`) never reach the report.
    let mut joined = crate::fixture::redact(&cmdline).join(" ");
    if joined.len() > 512 {
        let mut cut = 512;
        while !joined.is_char_boundary(cut) {
            cut -= 1;
        }
        joined.truncate(cut);
    }
    Some(ProcessInfo {
        pid,
        ppid: stat.ppid.max(0) as u32,
        name: process_name(&stat.comm, &cmdline),
        role: process_role(&cmdline),
        cmdline: joined,
        first_seen_ms: t_ms,
        last_seen_ms: t_ms,
    })
}

/// The host source: per-process RSS every tick (PSS/USS: [`sample_rollups`]).
#[derive(Debug)]
pub(crate) struct HostSource {
    known: HashMap<u32, ProcessInfo>,
}

impl HostSource {
    pub(crate) fn new() -> Self {
        Self {
            known: HashMap::new(),
        }
    }

    /// Processes seen for the first time during the last [`sample`](Self::sample).
    pub(crate) fn describe_new(&mut self, pids: &[u32], t_ms: u64) -> Vec<ProcessInfo> {
        let mut new = Vec::new();
        for &pid in pids {
            if !self.known.contains_key(&pid)
                && let Some(info) = describe(pid, t_ms)
            {
                self.known.insert(pid, info.clone());
                new.push(info);
            }
        }
        new
    }
}

/// RSS of every process of the tree (`/proc/PID/statm`), every tick: the fast host source.
#[derive(Debug)]
pub(crate) struct HostRss {
    page_size: u64,
}

impl HostRss {
    pub(crate) fn new() -> Self {
        Self {
            page_size: procfs::page_size(),
        }
    }

    /// Read the tree's RSS.
    pub(crate) fn sample_rss(&mut self, pids: &[u32], out: &mut Vec<Reading>) {
        let mut total = 0u64;
        let mut alive = 0u64;
        for &pid in pids {
            // A process that exited between listing and reading simply has no reading.
            // A zombie (or a process gone since listing) reads as 0 pages: no data, not 0 bytes.
            if let Some(rss) = resident_bytes(pid, self.page_size).filter(|&b| b > 0) {
                total += rss;
                alive += 1;
                out.push(Reading::bytes(metric::host_pid("rss", pid), rss));
            }
        }
        if alive > 0 {
            out.push(Reading::bytes(HOST_RSS_TREE, total));
            out.push(Reading::count(HOST_PROCS_TREE, alive));
        }
    }
}

/// PSS/USS of `pids` (and the host's headroom). Slow on big processes (≈ 15 ms per GiB
/// resident): the slow sampling thread calls it, never the one that reads after each request.
pub(crate) fn sample_rollups(pids: &[u32], out: &mut Vec<Reading>) {
    let (mut pss, mut uss, mut any) = (0u64, 0u64, false);
    for &pid in pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            continue;
        };
        if let Some(r) = parse_rollup(&text) {
            any = true;
            pss += r.pss;
            uss += r.uss;
            out.push(Reading::bytes(metric::host_pid("pss", pid), r.pss));
            out.push(Reading::bytes(metric::host_pid("uss", pid), r.uss));
        }
    }
    if any {
        out.push(Reading::bytes(HOST_PSS_TREE, pss));
        out.push(Reading::bytes(HOST_USS_TREE, uss));
    }
    if let Some(avail) = mem_available() {
        out.push(Reading::bytes(metric::HOST_MEM_AVAILABLE, avail));
    }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes: the host's headroom.
pub(crate) fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_parses_pss_and_private() {
        let text = "55d0-7ffd ---p 00000000 00:00 0  [rollup]\nRss:  2048 kB\nPss:  1024 kB\n\
                    Pss_Anon: 512 kB\nShared_Clean: 100 kB\nPrivate_Clean: 10 kB\nPrivate_Dirty: 20 kB\n";
        let r = parse_rollup(text).expect("parsed");
        assert_eq!(r.pss, 1024 * 1024);
        assert_eq!(r.uss, 30 * 1024);
        assert_eq!(parse_rollup("garbage"), None);
    }

    #[test]
    fn names_prefer_titles_then_modules() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            process_name("sglang::schedul", &argv("sglang::scheduler_TP0")),
            "sglang::scheduler_TP0"
        );
        assert_eq!(
            process_name(
                "python3",
                &argv("python3 -m sglang.launch_server --model-path m")
            ),
            "python3 -m sglang.launch_server"
        );
        assert_eq!(process_name("sleep", &argv("sleep 10")), "sleep");
        assert_eq!(
            process_name(
                "python3",
                &argv("python3 fixtures/servers/torch_server.py --port 1")
            ),
            "python3 torch_server.py"
        );
        let spawned = vec![
            "python3".to_owned(),
            "-B".to_owned(),
            "-c".to_owned(),
            "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)".to_owned(),
        ];
        assert_eq!(
            process_name("python3", &spawned),
            "python3 (multiprocessing spawn)"
        );
        assert_eq!(process_name("x", &[]), "x");
    }

    #[test]
    fn roles_of_sglang_vllm_and_the_reference_server() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let role = |s: &str| process_role(&argv(s));
        assert_eq!(
            role("/v/bin/python -m sglang.launch_server --model-path m").as_deref(),
            Some("tokenizer_manager")
        );
        assert_eq!(role("sglang::scheduler").as_deref(), Some("scheduler"));
        assert_eq!(
            role("sglang::scheduler_TP1").as_deref(),
            Some("scheduler_TP1")
        );
        assert_eq!(role("sglang::detokenizer").as_deref(), Some("detokenizer"));
        assert_eq!(role("VLLM::EngineCore").as_deref(), Some("EngineCore"));
        assert_eq!(
            role("/v/bin/python -m vllm.entrypoints.openai.api_server --model m").as_deref(),
            Some("api_server")
        );
        assert_eq!(
            role("/t/sglang-memtest serve-reference --port 1").as_deref(),
            Some("tokenizer_manager")
        );
        let tracker = vec![
            "/v/bin/python".to_owned(),
            "-B".to_owned(),
            "-c".to_owned(),
            "from multiprocessing.resource_tracker import main;main(6)".to_owned(),
        ];
        assert_eq!(process_role(&tracker).as_deref(), Some("resource_tracker"));
        assert_eq!(role("sleep 10"), None);
        assert_eq!(role("sglang::"), None);
        assert_eq!(process_role(&[]), None);
    }

    #[test]
    fn samples_this_process() {
        let me = std::process::id();
        let mut host = HostRss::new();
        let mut out = Vec::new();
        host.sample_rss(&[me], &mut out);
        sample_rollups(&[me], &mut out);
        let rss = out
            .iter()
            .find(|r| r.metric == HOST_RSS_TREE)
            .expect("tree rss")
            .v;
        assert!(rss > 1024.0 * 1024.0, "rss {rss}");
        assert!(out.iter().any(|r| r.metric == HOST_PSS_TREE));
        let mut names = HostSource::new();
        let new = names.describe_new(&[me], 0);
        assert_eq!(new.len(), 1);
        assert!(names.describe_new(&[me], 1).is_empty());
    }
}
