//! What the run page's template is given: every section of a [`Report`] as rows of formatted
//! text (the template lays them out and escapes them).

use std::collections::BTreeMap;

use serde::Serialize;

use super::super::plot::PlotInput;
use super::super::roles::{process_keys, relabel};
use super::{NavLink, SuiteLink, nav, verdict_sentence};
use crate::analysis::MetricAnalysis;
use crate::report::Report;
use crate::tracker::Unit;
use crate::util::{human_bytes, signed_bytes};

fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bytes => human_bytes(v),
        _ if v.is_finite() => format!("{v:.4}"),
        _ => "n/a".into(),
    }
}

fn delta(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Bytes => signed_bytes(v),
        _ if v.is_finite() => format!("{v:+.4}"),
        _ => "n/a".into(),
    }
}

/// A value with its interval, formatted.
#[derive(Serialize)]
struct Ranged {
    point: String,
    lo: String,
    hi: String,
}

impl Ranged {
    fn of(unit: Unit, e: &crate::analysis::Estimate) -> Self {
        Self {
            point: delta(unit, e.point),
            lo: delta(unit, e.ci.lo),
            hi: delta(unit, e.ci.hi),
        }
    }
}

#[derive(Serialize)]
struct Limit {
    per_request: String,
    budget: String,
}

#[derive(Serialize)]
struct MetricRow {
    metric: String,
    outcome: &'static str,
    baseline: String,
    last: String,
    growth: String,
    slope: Option<Ranged>,
    limit: Option<Limit>,
    per_day: String,
    requests: u64,
    note: String,
}

#[derive(Serialize)]
struct KindRow {
    metric: String,
    kind: String,
    requests: u64,
    slope: Ranged,
    p: String,
    outcome: &'static str,
}

#[derive(Serialize)]
struct Metrics {
    limits: String,
    judged: Vec<MetricRow>,
    unjudged: Vec<MetricRow>,
    kinds: Vec<KindRow>,
}

fn metric_row(
    v: &crate::analysis::Verdict,
    m: &MetricAnalysis,
    keys: &BTreeMap<u32, String>,
) -> MetricRow {
    let limit = v
        .thresholds
        .rule_for(&m.metric)
        .filter(|_| m.judged)
        .map(|r| Limit {
            per_request: delta(m.unit, r.max_slope_per_request),
            budget: crate::analysis::budget(m.unit, r.max_slope_per_request),
        });
    let note = match (&m.plateau, &m.given_back, m.requests_to_decide) {
        (Some(p), _, _) => format!("plateau since request {}", p.since_request),
        (None, Some(g), _) => format!(
            "given back by the cooldown ({} still held)",
            signed_bytes(g.kept)
        ),
        (None, None, Some(n)) => format!("~{n} requests would decide"),
        _ => m
            .reasons
            .iter()
            .find(|r| !r.starts_with("growth slowed"))
            .cloned()
            .unwrap_or_default(),
    };
    MetricRow {
        metric: relabel(&m.metric, keys),
        outcome: m.outcome.as_str(),
        baseline: value(m.unit, m.baseline),
        last: value(m.unit, m.last),
        growth: delta(m.unit, m.growth),
        slope: m.slope.as_ref().map(|s| Ranged::of(m.unit, s)),
        limit,
        per_day: m
            .per_day
            .filter(|_| m.unit == Unit::Bytes)
            .map_or(String::new(), signed_bytes),
        requests: m.requests,
        note: relabel(&note, keys),
    }
}

fn metrics(report: &Report, keys: &BTreeMap<u32, String>) -> Option<Metrics> {
    let v = report.verdict.as_ref()?;
    let rows = |judged: bool| -> Vec<MetricRow> {
        v.metrics
            .iter()
            .filter(|m| m.judged == judged)
            .map(|m| metric_row(v, m, keys))
            .collect()
    };
    let kinds = v
        .metrics
        .iter()
        .filter(|m| m.judged)
        .flat_map(|m| {
            m.by_kind.iter().flat_map(|a| &a.kinds).map(|k| KindRow {
                metric: relabel(&m.metric, keys),
                kind: k.kind.clone(),
                requests: k.requests,
                slope: Ranged::of(m.unit, &k.slope),
                p: k.p_value_adjusted
                    .map_or("n/a".to_owned(), |p| format!("{p:.2e}")),
                outcome: k.outcome.as_str(),
            })
        })
        .collect();
    Some(Metrics {
        limits: crate::report::console::limits_line(&v.thresholds),
        judged: rows(true),
        unjudged: rows(false),
        kinds,
    })
}

#[derive(Serialize)]
struct ProcessRow {
    role: String,
    pid: u32,
    name: String,
    rss: String,
    growth: String,
    slope: String,
    outcome: &'static str,
    gpu: String,
    seen: String,
    command: String,
}

fn processes(report: &Report, keys: &BTreeMap<u32, String>) -> Vec<ProcessRow> {
    let metric = |name: String| report.verdict.as_ref().and_then(|v| v.metric(&name));
    report
        .timeline
        .processes
        .iter()
        .map(|(pid, p)| {
            let host = metric(format!("host.rss@pid:{pid}"));
            let gpu = metric(format!("gpu.proc@pid:{pid}"));
            let mut command: String = p.cmdline.chars().take(160).collect();
            if p.cmdline.chars().count() > 160 {
                command.push('…');
            }
            ProcessRow {
                role: keys.get(pid).cloned().unwrap_or_default(),
                pid: *pid,
                name: p.name.clone(),
                rss: host.map_or(String::new(), |m| human_bytes(m.last)),
                growth: host.map_or(String::new(), |m| signed_bytes(m.growth)),
                slope: host.map_or(String::new(), |m| {
                    m.slope
                        .map_or("n/a".into(), |s| format!("{}/req", signed_bytes(s.point)))
                }),
                outcome: host.map_or("", |m| m.outcome.as_str()),
                gpu: gpu.map_or(String::new(), |m| {
                    format!("{} ({})", human_bytes(m.last), signed_bytes(m.growth))
                }),
                seen: format!(
                    "{:.1}–{:.1} s",
                    p.first_seen_ms as f64 / 1000.0,
                    p.last_seen_ms as f64 / 1000.0
                ),
                command,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct Counts {
    cells: Vec<String>,
    first_error: Option<String>,
    by_kind: Option<String>,
}

#[derive(Serialize)]
struct Look {
    requests: u64,
    kind: String,
    alpha: String,
    outcome: &'static str,
    undecided: String,
}

#[derive(Serialize)]
struct Adaptive {
    summary: String,
    looks: Vec<Look>,
}

#[derive(Serialize)]
struct Requests {
    phases: String,
    counts: Option<Counts>,
    adaptive: Option<Adaptive>,
}

fn requests(report: &Report, keys: &BTreeMap<u32, String>) -> Requests {
    let phases: Vec<String> = report
        .timeline
        .phases
        .iter()
        .map(|p| {
            format!(
                "{} {:.1}–{:.1} s ({} requests)",
                p.phase.as_str(),
                p.from_us as f64 / 1e6,
                p.to_us as f64 / 1e6,
                p.requests
            )
        })
        .collect();
    let counts = report.requests.as_ref().map(|r| {
        let ms = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.1} ms"));
        Counts {
            cells: vec![
                r.sent.to_string(),
                r.ok.to_string(),
                r.failed.to_string(),
                r.rejected.to_string(),
                r.aborted.to_string(),
                r.disconnected.to_string(),
                r.measured.to_string(),
                r.images.to_string(),
                format!("{:.2} %", r.error_rate * 100.0),
                ms(r.latency_p50_ms),
                ms(r.latency_p95_ms),
                ms(r.latency_p99_ms),
            ],
            first_error: r.first_error.clone(),
            by_kind: (!r.by_kind.is_empty())
                .then(|| serde_json::to_string_pretty(&r.by_kind).unwrap_or_default()),
        }
    });
    let adaptive = report.adaptive.as_ref().map(|a| Adaptive {
        summary: a.summary(),
        looks: a
            .looks
            .iter()
            .map(|l| Look {
                requests: l.look.requests,
                kind: format!("{:?}", l.look.kind).to_lowercase(),
                alpha: format!("{:.2e}", l.look.alpha),
                outcome: l.outcome.as_str(),
                undecided: l
                    .undecided
                    .iter()
                    .map(|m| relabel(m, keys))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect(),
    });
    Requests {
        phases: phases.join(" · "),
        counts,
        adaptive,
    }
}

#[derive(Serialize)]
struct Check {
    metric: String,
    before: String,
    after: String,
    expected: String,
    excess: String,
    outcome: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct Accounting {
    source: String,
    note: Option<String>,
    checks: Vec<Check>,
}

#[derive(Serialize)]
struct LogMatch {
    line: u64,
    at: String,
    role: String,
    pattern: String,
    text: String,
}

#[derive(Serialize)]
struct LogWatch {
    lines: u64,
    total: u64,
    note: Option<String>,
    matches: Vec<LogMatch>,
}

#[derive(Serialize)]
struct Cache {
    name: String,
    state: String,
    flag: String,
}

#[derive(Serialize)]
struct Target {
    kind: String,
    base_url: String,
    model: Option<String>,
    argv: String,
}

#[derive(Serialize)]
struct SourceRow {
    name: String,
    available: &'static str,
    note: String,
    errors: u64,
}

#[derive(Serialize)]
struct FileLink {
    href: String,
    name: String,
}

/// Every file of the run beside the page; the server log in `logs/`.
fn files(report: &Report) -> Vec<FileLink> {
    let f = &report.files;
    let mut names: Vec<String> = [&f.json, &f.png, &f.svg, &f.requests, &f.server_log]
        .into_iter()
        .flatten()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    if let Some(raw) = &report.timeline.raw {
        names.extend([
            raw.samples.clone(),
            raw.marks.clone(),
            raw.processes.clone(),
        ]);
    }
    let log = f
        .server_log
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|x| x.to_string_lossy().into_owned());
    names
        .into_iter()
        .map(|name| FileLink {
            href: if log.as_deref() == Some(name.as_str()) {
                format!("logs/{name}")
            } else {
                name.clone()
            },
            name,
        })
        .collect()
}

/// What `run.html` shows of one run.
#[derive(Serialize)]
pub(super) struct RunPage {
    title: String,
    nav: Vec<NavLink>,
    scenario: String,
    outcome_word: &'static str,
    test_type: String,
    target: Target,
    started_at: String,
    duration: String,
    tool: String,
    verdict: String,
    reasons: Option<Vec<String>>,
    causes: Vec<String>,
    plot_svg: Option<String>,
    plot_error: Option<String>,
    metrics: Option<Metrics>,
    processes: Vec<ProcessRow>,
    diagnosis: Option<crate::report::diagnosis::DiagnosisView>,
    requests: Requests,
    accounting: Option<Accounting>,
    log_watch: Option<LogWatch>,
    caches: Vec<Cache>,
    settings: Vec<String>,
    sources: Vec<SourceRow>,
    notes: Vec<String>,
    log_tail_lines: usize,
    log_tail: String,
    files: Vec<FileLink>,
    console: String,
}

/// What `run.html` is given for `report`; `suite`: the scenarios to link to.
pub(super) fn run_page(report: &Report, suite: &[SuiteLink]) -> RunPage {
    let keys = process_keys(&report.timeline);
    let title = report.plot_title();
    let (plot_svg, plot_error) = match crate::report::plot::svg(&PlotInput::of(report, &title)) {
        Ok(svg) => (Some(svg.trim_start_matches(|c| c != '<').to_owned()), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let json = |v: serde_json::Result<String>| v.unwrap_or_default();
    let t = &report.target;
    RunPage {
        title: format!("{} — {}", report.scenario, report.outcome.as_str()),
        nav: nav(suite, Some(&report.scenario)),
        scenario: report.scenario.clone(),
        outcome_word: report.outcome.as_str(),
        test_type: report.test_type.clone(),
        target: Target {
            kind: t.kind.clone(),
            base_url: t.base_url.clone(),
            model: t.model.clone(),
            argv: t.argv.join(" "),
        },
        started_at: report.started_at.clone(),
        duration: format!("{:.1}", report.duration_ms as f64 / 1000.0),
        tool: report.tool.clone(),
        verdict: verdict_sentence(report),
        reasons: report.verdict.as_ref().map(|v| {
            v.reasons
                .iter()
                .take(8)
                .map(|r| relabel(r, &keys))
                .collect()
        }),
        causes: report
            .likely_causes
            .iter()
            .map(|c| c.message.clone())
            .collect(),
        plot_svg,
        plot_error,
        metrics: metrics(report, &keys),
        processes: processes(report, &keys),
        diagnosis: crate::report::diagnosis::view(report),
        requests: requests(report, &keys),
        accounting: report.idle_accounting.as_ref().map(|a| Accounting {
            source: a.source.clone().unwrap_or_else(|| "not available".into()),
            note: a.note.clone(),
            checks: a
                .checks
                .iter()
                .map(|c| Check {
                    metric: c.metric.clone(),
                    before: c.before.to_string(),
                    after: c.after.to_string(),
                    expected: c.expected.to_string(),
                    excess: c.excess.to_string(),
                    outcome: c.outcome.as_str(),
                    reason: c.reason.clone(),
                })
                .collect(),
        }),
        log_watch: report.log_watch.as_ref().map(|w| LogWatch {
            lines: w.lines,
            total: w.total_matches,
            note: w.note.clone(),
            matches: w
                .matches
                .iter()
                .map(|m| LogMatch {
                    line: m.line,
                    at: m.at.clone(),
                    role: m.role.clone().unwrap_or_default(),
                    pattern: m.pattern.clone(),
                    text: m.text.clone(),
                })
                .collect(),
        }),
        caches: report
            .caches
            .iter()
            .map(|c| Cache {
                name: c.name.clone(),
                state: c.state.clone(),
                flag: c.flag.clone().unwrap_or_default(),
            })
            .collect(),
        settings: vec![
            json(serde_json::to_string_pretty(&report.workload)),
            json(serde_json::to_string_pretty(&report.driver)),
            json(serde_json::to_string_pretty(&report.tracker)),
            json(serde_json::to_string_pretty(&report.thresholds)),
            json(serde_json::to_string_pretty(&report.shutdown)),
        ],
        sources: report
            .timeline
            .sources
            .iter()
            .map(|s| SourceRow {
                name: s.name.clone(),
                available: if s.available { "yes" } else { "no" },
                note: s.note.clone().unwrap_or_default(),
                errors: s.errors,
            })
            .collect(),
        notes: report.notes.clone(),
        log_tail_lines: report.server_log_tail.len(),
        log_tail: report.server_log_tail.join("\n"),
        files: files(report),
        console: report.summary(),
    }
}
