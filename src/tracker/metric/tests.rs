//! Tests of the parent module.

use super::*;

#[test]
fn names_round_trip() {
    for name in [
        "host.rss@tree",
        "host.rss@pid:42",
        "host.mem_available",
        "gpu.used@dev:0",
        "gpu.proc@tree",
        "shm.bytes",
        "shm.bytes@psm",
        "server.num_used_tokens",
        "server.mem.kvcache@rank:1",
    ] {
        let m: Metric = name.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.to_string(), name);
    }
    assert_eq!(pid_of("gpu.proc@pid:7"), Some(7));
    assert_eq!(pid_of("gpu.proc@tree"), None);
    assert_eq!(
        "host.rss@pid:9".parse::<Metric>().ok(),
        Some(Metric::host_pid("rss", 9))
    );
}

#[test]
fn typos_are_errors() {
    for bad in [
        "gpu.proc@tre",
        "host.rsss@tree",
        "hots.rss",
        "host",
        "gpu.proc@pid:x",
    ] {
        assert!(bad.parse::<MetricPattern>().is_err(), "{bad} parsed");
    }
    let e = "gpu.proc@tre".parse::<MetricPattern>().unwrap_err();
    assert!(e.to_string().contains("tre"), "{e}");
    let e = "host.rsss@tree".parse::<MetricPattern>().unwrap_err();
    assert!(e.to_string().contains("rss, pss"), "{e}");
}

#[test]
fn patterns_match() {
    let p = |s: &str| s.parse::<MetricPattern>().expect(s);
    let m = |s: &str| s.parse::<Metric>().expect(s);
    assert!(p("host.rss@pid:*").matches(&m("host.rss@pid:3")));
    assert!(!p("host.rss@pid:*").matches(&m("host.rss@tree")));
    assert!(p("gpu.*").matches(&m("gpu.used@dev:1")));
    assert!(p("gpu.*").matches(&m("gpu.proc@tree")));
    assert!(!p("gpu.*").matches(&m("host.rss@tree")));
    assert!(p("host.*@tree").matches(&m("host.pss@tree")));
    assert!(!p("host.*@tree").matches(&m("host.pss@pid:1")));
    assert!(p("shm.bytes").matches(&m("shm.bytes")));
    assert!(!p("shm.bytes").matches(&m("shm.bytes@psm")));
    assert!(p("gpu.proc@*").matches(&m("gpu.proc@pid:1")));
    assert!(p("server.num_used_tokens").matches(&m("server.num_used_tokens")));
    assert_eq!(p("gpu.*").to_string(), "gpu.*");
}

#[test]
fn units_and_roles() {
    let m = |s: &str| s.parse::<Metric>().expect(s);
    assert_eq!(m("host.procs@tree").unit(), Some(Unit::Count));
    assert_eq!(m("gpu.used@dev:0").unit(), Some(Unit::Bytes));
    assert_eq!(m("server.token_usage").unit(), None);
    assert!(m("host.rss@tree").can_leak());
    assert!(!m("gpu.free@dev:0").can_leak());
    assert!(!m("host.mem_available").can_leak());
    assert!(!m("server.num_used_tokens").can_leak());
    assert!(m("gpu.proc@pid:1").is_server_memory());
    assert!(!m("shm.bytes").is_server_memory());
    // The server's segments can leak; the machine's folder is context, never judged.
    assert!(m("shm.bytes").can_leak() && m("shm.bytes@psm").can_leak());
    assert!(!m("shm.bytes@host").can_leak());
}
