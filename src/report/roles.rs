//! Names that outlive a run: a process by its role (`tokenizer_manager`, `scheduler`,
//! `EngineCore`), never by its PID. Plots, headlines, the HTML report and `compare` all name
//! per-process metrics through here, so `host.rss@pid:944` reads `host.rss@scheduler` everywhere.

use std::collections::BTreeMap;

use crate::tracker::Timeline;

/// Every process of `timeline` by PID, named by its role (else its title or command). Two
/// processes with the same name (vLLM's `Worker`s) get `#2`, `#3`… in the order they were first
/// seen, so the names stay unique and stable across runs of the same server.
pub fn process_keys(timeline: &Timeline) -> BTreeMap<u32, String> {
    let mut order: Vec<_> = timeline.processes.values().collect();
    order.sort_by_key(|p| (p.first_seen_ms, p.pid));
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut keys = BTreeMap::new();
    for p in order {
        let label = match p.label() {
            "" => "process",
            l => l,
        };
        let n = seen.entry(label).or_insert(0);
        *n += 1;
        let key = if *n == 1 {
            label.to_owned()
        } else {
            format!("{label}#{n}")
        };
        keys.insert(p.pid, key);
    }
    keys
}

/// `host.rss@pid:944` → `host.rss@scheduler` (the process's key in `keys`); any other name, and a
/// PID `keys` does not know, unchanged.
pub fn stable_metric(metric: &str, keys: &BTreeMap<u32, String>) -> String {
    relabel(metric, keys)
}

/// Every `@pid:N` in `text` (a metric name, a reason sentence) replaced by `@<role>`.
pub fn relabel(text: &str, keys: &BTreeMap<u32, String>) -> String {
    const TAG: &str = "@pid:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(TAG) {
        out.push_str(&rest[..at]);
        let after = &rest[at + TAG.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match after[..digits]
            .parse::<u32>()
            .ok()
            .and_then(|pid| keys.get(&pid))
        {
            Some(key) => {
                out.push('@');
                out.push_str(key);
            }
            None => out.push_str(&rest[at..at + TAG.len() + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::ProcessInfo;

    fn timeline(procs: &[(u32, &str, Option<&str>, u64)]) -> Timeline {
        let mut tl = Timeline::default();
        for &(pid, name, role, first_seen_ms) in procs {
            tl.processes.insert(
                pid,
                ProcessInfo {
                    pid,
                    ppid: 1,
                    name: name.to_owned(),
                    role: role.map(str::to_owned),
                    cmdline: String::new(),
                    first_seen_ms,
                    last_seen_ms: first_seen_ms,
                },
            );
        }
        tl
    }

    #[test]
    fn roles_name_processes_and_duplicates_are_numbered_in_the_order_seen() {
        let tl = timeline(&[
            (900, "VLLM::Worker", Some("Worker"), 20),
            (100, "python3", Some("api_server"), 0),
            (50, "VLLM::Worker", Some("Worker"), 10),
            (70, "python3 torch_server.py", None, 5),
        ]);
        let keys = process_keys(&tl);
        assert_eq!(keys[&100], "api_server");
        assert_eq!(keys[&70], "python3 torch_server.py");
        assert_eq!(keys[&50], "Worker");
        assert_eq!(keys[&900], "Worker#2");
    }

    #[test]
    fn pids_in_names_and_sentences_become_roles() {
        let tl = timeline(&[(944, "sglang::scheduler_TP0", Some("scheduler"), 0)]);
        let keys = process_keys(&tl);
        assert_eq!(
            stable_metric("host.rss@pid:944", &keys),
            "host.rss@scheduler"
        );
        assert_eq!(stable_metric("host.rss@tree", &keys), "host.rss@tree");
        assert_eq!(
            relabel(
                "gpu.proc@pid:944: grows; host.rss@pid:94 and @pid:9440 unknown",
                &keys
            ),
            "gpu.proc@scheduler: grows; host.rss@pid:94 and @pid:9440 unknown"
        );
        assert_eq!(relabel("trailing @pid:", &keys), "trailing @pid:");
    }
}
