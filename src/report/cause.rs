//! Likely causes: a pass over a finished report that names an engine cache when memory grew.
//!
//! The verdict judges memory; it does not know what the engine keeps on purpose. A cache that
//! is on and that this run's requests fill (vLLM's multimodal processor cache with unique images,
//! its prefix cache, SGLang's multimodal embedding cache turned back on) grows exactly like a leak
//! until it is full. When a memory metric leaked or stayed undecided in a process that holds such
//! a cache, the report says so, with the cache's size, how soon this rate would fill it, and the
//! setting that switches it off — so "leak" comes with what to rerun to tell the two apart.

use serde::{Deserialize, Serialize};

use super::{CacheGrowth, CacheInfo, Report};
use crate::analysis::{MetricAnalysis, Outcome};
use crate::tracker::Unit;
use crate::tracker::metric::{Metric, Scope, Source};
use crate::util::{human_bytes, human_count};

/// Growth above this many times what the cache can hold is more than the cache explains.
const EXPLAINS_SLACK: f64 = 1.5;

/// An engine cache that may explain memory that leaked or is undecided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LikelyCause {
    /// The cache, as the report's `caches` names it.
    pub cache: String,
    /// The metrics it may explain: judged memory that leaked or is undecided, in the processes
    /// that hold the cache (or the whole tree).
    pub metrics: Vec<String>,
    /// Whether the cache can hold all of that growth (`false`: it explains only part of it).
    pub explains_all: bool,
    /// The sentence for a person: the cache, its size, what fills it, what to rerun.
    pub message: String,
}

/// The likely causes of a finished report: for each cache that is on and grows with this run's
/// input (a [`CacheGrowth`] in `caches`), the judged memory metrics that leaked or are undecided
/// where the cache lives. Causes that can hold all of the growth come first. Empty for a report
/// without a verdict, a pass, or no such cache.
pub fn likely_causes(report: &Report) -> Vec<LikelyCause> {
    let Some(verdict) = &report.verdict else {
        return Vec::new();
    };
    let engine = crate::engine::engine(&report.target.kind)
        .map(|e| format!("{}'s ", e.display_name()))
        .unwrap_or_default();
    let mut causes: Vec<LikelyCause> = report
        .caches
        .iter()
        .filter_map(|c| Some((c, c.growth.as_ref()?)))
        .filter_map(|(cache, growth)| {
            let suspects: Vec<&MetricAnalysis> = verdict
                .metrics
                .iter()
                .filter(|m| m.judged && m.outcome != Outcome::Pass && m.unit == Unit::Bytes)
                .filter(|m| m.growth.is_finite() && m.growth > 0.0)
                .filter(|m| held_where(report, &m.metric, growth))
                .collect();
            (!suspects.is_empty()).then(|| cause(report, &engine, cache, growth, &suspects))
        })
        .collect();
    causes.sort_by_key(|c| !c.explains_all);
    causes
}

/// Whether `metric` measures memory where the cache lives: a process whose role holds a copy
/// (`scheduler` covers `scheduler_TP1`), `/dev/shm` for a shared-memory cache, or the whole tree
/// when a holder is in it and the holders' own metrics do not all pass (growth elsewhere in the
/// tree is not the cache's).
fn held_where(report: &Report, metric: &str, growth: &CacheGrowth) -> bool {
    let Ok(m) = metric.parse::<Metric>() else {
        return false;
    };
    let holds = |pid: &u32| {
        report.timeline.processes.get(pid).is_some_and(|p| {
            let role = p.label();
            growth.held_by.iter().any(|h| role.starts_with(h.as_str()))
        })
    };
    match (m.source, &m.scope) {
        (Source::Shm, _) => growth.held_by.iter().any(|h| h == "/dev/shm"),
        (Source::Host | Source::Gpu, Scope::Pid(pid)) => holds(pid),
        (source @ (Source::Host | Source::Gpu), Scope::Tree) => {
            let holders: Vec<u32> = report
                .timeline
                .processes
                .keys()
                .copied()
                .filter(holds)
                .collect();
            let own: Vec<&MetricAnalysis> = report
                .verdict
                .iter()
                .flat_map(|v| &v.metrics)
                .filter(|a| {
                    a.judged
                        && a.metric
                            .starts_with(&format!("{}.{}@pid:", source.as_str(), m.quantity))
                })
                .filter(|a| {
                    crate::tracker::metric::pid_of(&a.metric).is_some_and(|p| holders.contains(&p))
                })
                .collect();
            !holders.is_empty()
                && (own.is_empty() || own.iter().any(|a| a.outcome != Outcome::Pass))
        }
        _ => false,
    }
}

/// Copies of the cache a metric can see: every holder for the tree, one for a process.
fn copies(metric: &str, growth: &CacheGrowth) -> f64 {
    let tree = metric
        .parse::<Metric>()
        .is_ok_and(|m| m.scope == Scope::Tree);
    let holders = growth.held_by.iter().filter(|h| *h != "/dev/shm").count();
    if tree { holders.max(1) as f64 } else { 1.0 }
}

fn cause(
    report: &Report,
    engine: &str,
    cache: &CacheInfo,
    growth: &CacheGrowth,
    suspects: &[&MetricAnalysis],
) -> LikelyCause {
    let explains = |m: &MetricAnalysis| {
        growth
            .cap_bytes
            .is_none_or(|cap| m.growth <= EXPLAINS_SLACK * cap as f64 * copies(&m.metric, growth))
    };
    let explains_all = suspects.iter().all(|m| explains(m));
    // The strongest suspect: the fastest-growing process that holds a copy (it says where the
    // cache lives, and its fill time is one copy's), else the fastest-growing metric.
    let per_process = |m: &&&MetricAnalysis| crate::tracker::metric::pid_of(&m.metric).is_some();
    let fastest = |a: &&&MetricAnalysis, b: &&&MetricAnalysis| rate(a).total_cmp(&rate(b));
    let lead = suspects
        .iter()
        .filter(per_process)
        .max_by(fastest)
        .or_else(|| suspects.iter().max_by(fastest))
        .copied()
        .unwrap_or(suspects[0]);
    let label = super::console::metric_label(report, &lead.metric);
    let mut grew = format!("{label} grew {}", human_bytes(lead.growth));
    if rate(lead) > 0.0 {
        grew.push_str(&format!(" (+{}/request)", human_bytes(rate(lead))));
    }
    let more = suspects.len() - 1;
    if more > 0 {
        grew.push_str(&format!(
            " and {more} other metric{} too",
            if more == 1 { "" } else { "s" }
        ));
    }
    let size = match growth.cap_bytes {
        Some(cap) => {
            let mut s = format!(" (up to {} per copy", human_bytes(cap as f64));
            if rate(lead) > 0.0 {
                let fill = cap as f64 * copies(&lead.metric, growth) / rate(lead);
                s.push_str(&format!(
                    "; at this rate full after about {} requests",
                    human_count(fill)
                ));
            }
            s.push(')');
            s
        }
        None => String::new(),
    };
    let flag = cache
        .flag
        .as_deref()
        .map(|f| format!(" ({f})"))
        .unwrap_or_default();
    let fit = if explains_all {
        String::new()
    } else {
        " — more than the cache can hold, so it is not the whole story".to_owned()
    };
    let message = format!(
        "likely cause: {engine}{} is {}{flag}: it grows with {} until full{size}, held by {}; {grew}{fit}. Rerun with {} to tell a leak from the cache.",
        cache.name,
        cache.state,
        growth.grows_with,
        growth.held_by.join(" and "),
        growth.off
    );
    LikelyCause {
        cache: cache.name.clone(),
        metrics: suspects.iter().map(|m| m.metric.clone()).collect(),
        explains_all,
        message,
    }
}

/// The per-request growth of a metric (its slope's point estimate; 0 when unknown or falling).
fn rate(m: &MetricAnalysis) -> f64 {
    m.slope.map_or(0.0, |s| s.point.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{RequestSeries, Thresholds, analyze};
    use crate::report::{ReportFiles, RunOutcome, SCHEMA_VERSION, TargetInfo};
    use crate::tracker::{ProcessInfo, Timeline};

    use crate::util::KIB;

    /// A report of a vLLM image run in which EngineCore (pid 7) grows `per_request` bytes for
    /// 300 requests while the API server (pid 5) stays flat, with `caches`.
    fn report(per_request: f64, caches: Vec<CacheInfo>) -> Report {
        report_with(per_request, caches, "EngineCore")
    }

    /// [`report`], with the growing process (pid 7) in `role`.
    fn report_with(per_request: f64, caches: Vec<CacheInfo>, role: &str) -> Report {
        let n = 300;
        let engine: Vec<f64> = (0..n)
            .map(|i| 1.2e9 + per_request * i as f64 + (i % 7) as f64 * 2048.0)
            .collect();
        let api: Vec<f64> = (0..n).map(|i| 1.1e9 + (i % 5) as f64 * 4096.0).collect();
        let tree: Vec<f64> = engine.iter().zip(&api).map(|(e, a)| e + a + 1e3).collect();
        let series = vec![
            RequestSeries::raw("host.rss@pid:7", Unit::Bytes, &engine),
            RequestSeries::raw("host.rss@pid:5", Unit::Bytes, &api),
            RequestSeries::raw("host.rss@tree", Unit::Bytes, &tree),
        ];
        let verdict = analyze(&series, &Thresholds::default());
        let mut timeline = Timeline::default();
        for (pid, role) in [(7, role), (5, "api_server")] {
            timeline.processes.insert(
                pid,
                ProcessInfo {
                    pid,
                    ppid: 1,
                    name: role.into(),
                    role: Some(role.into()),
                    cmdline: role.into(),
                    first_seen_ms: 0,
                    last_seen_ms: 1,
                },
            );
        }
        Report {
            schema_version: SCHEMA_VERSION,
            tool: "test".into(),
            scenario: "vlm_image".into(),
            test_type: "vlm-image".into(),
            outcome: RunOutcome::from(verdict.outcome),
            error: None,
            started_at: String::new(),
            duration_ms: 0,
            target: TargetInfo {
                kind: "vllm".into(),
                ..TargetInfo::default()
            },
            caches,
            workload: crate::load::Workload::Text,
            driver: crate::load::DriverConfig::default(),
            tracker: crate::tracker::TrackerConfig::default(),
            thresholds: Thresholds::default(),
            requests: None,
            adaptive: None,
            verdict: Some(verdict),
            idle_accounting: None,
            log_watch: None,
            timeline,
            shutdown: None,
            server_log_tail: Vec::new(),
            files: ReportFiles::default(),
            notes: Vec::new(),
            likely_causes: Vec::new(),
            diagnosis: None,
        }
    }

    fn mm_cache(cap_gib: f64) -> CacheInfo {
        crate::engine::vllm::vllm_caches(
            &[
                "--mm-processor-cache-gb".to_owned(),
                cap_gib.to_string(),
                "--no-enable-prefix-caching".to_owned(),
            ],
            true,
            true,
            crate::engine::Device::Cpu,
        )
        .into_iter()
        .find(|c| c.name.starts_with("multimodal"))
        .expect("the multimodal cache")
    }

    #[test]
    fn a_growing_engine_core_with_the_default_cache_names_the_cache() {
        let r = report(299.0 * KIB, vec![mm_cache(4.0)]);
        assert_eq!(r.outcome, crate::report::RunOutcome::Leak);
        let causes = likely_causes(&r);
        assert_eq!(causes.len(), 1, "{causes:?}");
        let c = &causes[0];
        assert_eq!(c.cache, "multimodal processor cache");
        // The tree grows too, but the process that holds the cache leads the sentence.
        assert_eq!(c.metrics.len(), 2, "{:?}", c.metrics);
        assert!(c.metrics.contains(&"host.rss@pid:7".to_owned()));
        assert!(c.explains_all);
        for part in [
            "vLLM's multimodal processor cache is on, 4.00 GiB per process",
            "every unique image",
            "host.rss@pid:7 (EngineCore) grew",
            "full after about 14.0 k requests",
            "and 1 other metric too",
            "--vllm-mm-processor-cache-gb 0",
        ] {
            assert!(c.message.contains(part), "{part:?} not in {}", c.message);
        }
    }

    #[test]
    fn no_cause_for_a_pass_a_cache_that_is_off_or_growth_elsewhere() {
        // Flat: nothing to explain.
        assert!(likely_causes(&report(0.0, vec![mm_cache(4.0)])).is_empty());
        // The cache is off: growth stays a plain leak.
        let r = report(299.0 * KIB, vec![mm_cache(0.0)]);
        assert_eq!(r.outcome, crate::report::RunOutcome::Leak);
        assert!(likely_causes(&r).is_empty());
        // A cache that lives in another process explains nothing here.
        let mut other = mm_cache(4.0);
        if let Some(g) = other.growth.as_mut() {
            g.held_by = vec!["scheduler".into()];
        }
        assert!(likely_causes(&report(299.0 * KIB, vec![other])).is_empty());
        // The tree grows, but in a process that holds no copy while the holder stays flat.
        let r = report_with(299.0 * KIB, vec![mm_cache(4.0)], "Worker");
        assert_eq!(r.outcome, crate::report::RunOutcome::Leak);
        assert!(likely_causes(&r).is_empty(), "{:?}", likely_causes(&r));
    }

    #[test]
    fn growth_beyond_the_cap_is_not_all_the_cache() {
        // 50 MB cache, 300 requests at 1 MiB: 300 MiB is more than one copy can hold.
        let r = report(1024.0 * KIB, vec![mm_cache(0.05)]);
        let causes = likely_causes(&r);
        assert_eq!(causes.len(), 1);
        assert!(!causes[0].explains_all);
        assert!(
            causes[0].message.contains("not the whole story"),
            "{}",
            causes[0].message
        );
    }
}
