//! The HTML report: one self-contained file per run (`<scenario>.html`) and one per suite
//! (`index.html`), as criterion's report is — inline CSS, the plot as inline SVG, no script, no
//! network. It reads only the [`Report`]: the verdict, the per-process table, the plot, the
//! requests, the engine's accounting and log checks, the caches and settings, the server log
//! tail, and links between the scenarios of a suite.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::plot::PlotInput;
use super::roles::{process_keys, relabel};
use super::{Report, ReportError, RunOutcome};
use crate::analysis::{MetricAnalysis, Outcome};
use crate::tracker::Unit;
use crate::util::{human_bytes, signed_bytes};

/// A scenario of a suite, as the navigation bar links it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuiteLink {
    /// The scenario (`text_model`).
    pub name: String,
    /// Its HTML file, relative to the suite's folder (`text_model.html`).
    pub href: String,
    /// How it ended.
    pub outcome: RunOutcome,
}

impl SuiteLink {
    /// The link to `report`'s page (`<scenario>.html` beside it).
    pub fn of(report: &Report) -> Self {
        Self {
            name: report.scenario.clone(),
            href: format!("{}.html", report.scenario),
            outcome: report.outcome,
        }
    }
}

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
main{max-width:1400px;margin:0 auto;padding:16px 24px 48px}
nav{background:#23262b;color:#ddd;padding:8px 24px;font-size:14px}
nav a{color:#9cc3ff;margin-right:14px;text-decoration:none}
nav a.current{color:#fff;font-weight:600;text-decoration:underline}
h1{font-size:24px;margin:12px 0 4px}
h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#555;font-size:14px}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:700;color:#fff;font-size:14px;vertical-align:middle}
.pass{background:#1e8232}.leak{background:#c81e1e}.inconclusive{background:#d76e00}.error{background:#6b3fa0}
.t-pass{color:#1e8232}.t-leak{color:#c81e1e;font-weight:600}.t-inconclusive{color:#d76e00;font-weight:600}
.verdict{font-size:18px;margin:12px 0}
table{border-collapse:collapse;font-size:13px;margin:6px 0;background:#fff}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
pre{background:#fff;border:1px solid #ddd;padding:8px;overflow:auto;font-size:12px;max-height:480px}
.plot svg{max-width:100%;height:auto;background:#fff;border:1px solid #ddd}
ul.reasons li{margin:3px 0}
details{margin:8px 0}
summary{cursor:pointer;color:#333}
"#;

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn outcome_word(o: RunOutcome) -> &'static str {
    match o {
        RunOutcome::Pass => "pass",
        RunOutcome::Leak => "leak",
        RunOutcome::Inconclusive => "inconclusive",
        RunOutcome::Error => "error",
    }
}

fn metric_outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Leak => "leak",
        Outcome::Inconclusive => "inconclusive",
    }
}

fn badge(o: RunOutcome) -> String {
    let w = outcome_word(o);
    format!("<span class=\"badge {w}\">{}</span>", w.to_uppercase())
}

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

fn nav(out: &mut String, suite: &[SuiteLink], current: Option<&str>) {
    if suite.is_empty() {
        return;
    }
    out.push_str("<nav><a href=\"index.html\"");
    if current.is_none() {
        out.push_str(" class=\"current\"");
    }
    out.push_str(">suite</a>");
    for link in suite {
        let class = if current == Some(link.name.as_str()) {
            " class=\"current\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<a href=\"{}\"{class}>{} · {}</a>",
            esc(&link.href),
            esc(&link.name),
            outcome_word(link.outcome)
        );
    }
    out.push_str("</nav>");
}

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>{body}</body></html>\n",
        esc(title)
    )
}

/// The one sentence that says how the run ended.
pub fn verdict_sentence(report: &Report) -> String {
    let keys = process_keys(&report.timeline);
    let worst = report.verdict.as_ref().and_then(|v| {
        v.metrics
            .iter()
            .find(|m| m.judged && judged_outcome(report.outcome) == Some(m.outcome))
    });
    match report.outcome {
        RunOutcome::Error => format!(
            "The run could not be judged: {}",
            report
                .error
                .as_ref()
                .map_or("no reason recorded", |e| e.message.as_str())
        ),
        RunOutcome::Leak => match worst.and_then(|m| m.slope.map(|s| (m, s))) {
            Some((m, s)) => format!(
                "Leak: {} grows {}/request ({:.0} % interval {}).",
                relabel(&m.metric, &keys),
                signed_bytes(s.point),
                s.ci.level * 100.0,
                crate::util::byte_interval(s.ci.lo, s.ci.hi)
            ),
            None => "Leak: the server's own accounting or its log says so (below).".into(),
        },
        RunOutcome::Inconclusive => match worst {
            Some(m) => format!(
                "Inconclusive: {} is undecided{}.",
                relabel(&m.metric, &keys),
                m.requests_to_decide
                    .map(|n| format!("; about {n} requests would decide it"))
                    .unwrap_or_default()
            ),
            None => "Inconclusive: nothing was judged.".into(),
        },
        RunOutcome::Pass => {
            let judged = report
                .verdict
                .as_ref()
                .map_or(0, |v| v.metrics.iter().filter(|m| m.judged).count());
            format!("Pass: all {judged} judged metrics stayed within their limits.")
        }
    }
}

fn judged_outcome(o: RunOutcome) -> Option<Outcome> {
    match o {
        RunOutcome::Pass => Some(Outcome::Pass),
        RunOutcome::Leak => Some(Outcome::Leak),
        RunOutcome::Inconclusive => Some(Outcome::Inconclusive),
        RunOutcome::Error => None,
    }
}

/// The page of one run. `suite`: the scenarios to link to (empty for a run on its own).
pub fn render(report: &Report, suite: &[SuiteLink]) -> String {
    let keys = process_keys(&report.timeline);
    let mut b = String::new();
    nav(&mut b, suite, Some(&report.scenario));
    b.push_str("<main>");
    let _ = write!(
        b,
        "<h1>{} {}</h1><div class=\"sub\">{} · {} · started {} · {:.1} s · {}</div>",
        esc(&report.scenario),
        badge(report.outcome),
        esc(&report.test_type),
        esc(&report.target.kind),
        esc(&report.started_at),
        report.duration_ms as f64 / 1000.0,
        esc(&report.tool),
    );
    let _ = write!(
        b,
        "<p class=\"verdict\" id=\"verdict\">{}</p>",
        esc(&verdict_sentence(report))
    );
    if let Some(v) = &report.verdict {
        b.push_str("<ul class=\"reasons\">");
        for r in v.reasons.iter().take(8) {
            let _ = write!(b, "<li>{}</li>", esc(&relabel(r, &keys)));
        }
        b.push_str("</ul>");
    }
    for c in &report.likely_causes {
        let _ = write!(b, "<p><b>Likely cause:</b> {}</p>", esc(&c.message));
    }

    b.push_str("<h2>Plot</h2><div class=\"plot\">");
    let title = report.plot_title();
    match super::plot::svg(&PlotInput::of(report, &title)) {
        Ok(svg) => b.push_str(svg.trim_start_matches(|c| c != '<')),
        Err(e) => {
            let _ = write!(b, "<p>plot not drawn: {}</p>", esc(&e.to_string()));
        }
    }
    b.push_str("</div>");

    metrics_table(&mut b, report, &keys);
    processes_table(&mut b, report, &keys);
    super::diagnosis::html(&mut b, report);
    requests_section(&mut b, report);
    engine_section(&mut b, report);
    caches_and_settings(&mut b, report);

    if !report.notes.is_empty() {
        b.push_str("<h2>Notes</h2><ul>");
        for n in &report.notes {
            let _ = write!(b, "<li>{}</li>", esc(n));
        }
        b.push_str("</ul>");
    }
    let _ = write!(
        b,
        "<h2>Server log (last {} lines)</h2><pre>{}</pre>",
        report.server_log_tail.len(),
        esc(&report.server_log_tail.join("\n"))
    );
    files_section(&mut b, report);
    let _ = write!(
        b,
        "<details><summary>console summary</summary><pre>{}</pre></details>",
        esc(&report.summary())
    );
    b.push_str("</main>");
    page(
        &format!("{} — {}", report.scenario, outcome_word(report.outcome)),
        &b,
    )
}

/// Each judged metric's growth per request of each kind, when the run mixed kinds.
fn kinds_table(
    b: &mut String,
    v: &crate::analysis::Verdict,
    keys: &std::collections::BTreeMap<u32, String>,
) {
    let split: Vec<&MetricAnalysis> = v
        .metrics
        .iter()
        .filter(|m| m.judged && m.by_kind.is_some())
        .collect();
    if split.is_empty() {
        return;
    }
    b.push_str(
        "<h2>Growth by request kind</h2><table><tr><th>metric</th><th>kind</th><th>requests</th>\
         <th>per request of the kind (interval)</th><th>p (corrected)</th><th>outcome</th></tr>",
    );
    for m in split {
        for k in m.by_kind.iter().flat_map(|a| &a.kinds) {
            let o = metric_outcome(k.outcome);
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}/req<br>\
                 <span class=\"sub\">{} .. {}</span></td><td class=\"num\">{}</td><td class=\"t-{o}\">{o}</td></tr>",
                esc(&relabel(&m.metric, keys)),
                esc(&k.kind),
                k.requests,
                delta(m.unit, k.slope.point),
                delta(m.unit, k.slope.ci.lo),
                delta(m.unit, k.slope.ci.hi),
                k.p_value_adjusted
                    .map_or("n/a".to_owned(), |p| format!("{p:.2e}")),
            );
        }
    }
    b.push_str("</table>");
}

fn metrics_table(b: &mut String, report: &Report, keys: &std::collections::BTreeMap<u32, String>) {
    let Some(v) = &report.verdict else {
        return;
    };
    let row = |b: &mut String, m: &MetricAnalysis| {
        let slope = m.slope.map_or("n/a".to_owned(), |s| {
            format!(
                "{}/req<br><span class=\"sub\">{} .. {}</span>",
                delta(m.unit, s.point),
                delta(m.unit, s.ci.lo),
                delta(m.unit, s.ci.hi)
            )
        });
        let limit = v
            .thresholds
            .rule_for(&m.metric)
            .filter(|_| m.judged)
            .map_or(String::new(), |r| {
                format!(
                    "{}/req<br><span class=\"sub\">{}</span>",
                    delta(m.unit, r.max_slope_per_request),
                    crate::analysis::budget(m.unit, r.max_slope_per_request)
                )
            });
        let per_day = m
            .per_day
            .filter(|_| m.unit == Unit::Bytes)
            .map_or(String::new(), signed_bytes);
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
        let o = metric_outcome(m.outcome);
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"t-{o}\">{o}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{slope}</td><td class=\"num\">{limit}</td>\
             <td class=\"num\">{per_day}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&relabel(&m.metric, keys)),
            value(m.unit, m.baseline),
            value(m.unit, m.last),
            delta(m.unit, m.growth),
            m.requests,
            esc(&relabel(&note, keys)),
        );
    };
    let head = "<tr><th>metric</th><th>outcome</th><th>baseline</th><th>final</th><th>growth</th>\
                <th>slope (interval)</th><th>limit</th><th>per day</th><th>requests</th><th>why</th></tr>";
    let _ = write!(
        b,
        "<h2>Judged metrics</h2><p class=\"sub\">limits: {}</p><table>{head}",
        esc(&super::console::limits_line(&v.thresholds))
    );
    for m in v.metrics.iter().filter(|m| m.judged) {
        row(b, m);
    }
    b.push_str("</table>");
    kinds_table(b, v, keys);
    let others: Vec<&MetricAnalysis> = v.metrics.iter().filter(|m| !m.judged).collect();
    if !others.is_empty() {
        let _ = write!(
            b,
            "<details><summary>{} metrics analysed, not judged</summary><table>{head}",
            others.len()
        );
        for m in others {
            row(b, m);
        }
        b.push_str("</table></details>");
    }
}

fn processes_table(
    b: &mut String,
    report: &Report,
    keys: &std::collections::BTreeMap<u32, String>,
) {
    let tl = &report.timeline;
    if tl.processes.is_empty() {
        return;
    }
    let metric = |name: String| {
        report
            .verdict
            .as_ref()
            .and_then(|v| v.metric(&name).cloned())
    };
    b.push_str(
        "<h2>Processes</h2><table><tr><th>role</th><th>pid</th><th>title</th><th>host RSS</th>\
         <th>growth</th><th>slope</th><th>outcome</th><th>GPU</th><th>seen</th><th>command</th></tr>",
    );
    for (pid, p) in &tl.processes {
        let host = metric(format!("host.rss@pid:{pid}"));
        let gpu = metric(format!("gpu.proc@pid:{pid}"));
        let (rss, growth, slope, outcome) = match &host {
            Some(m) => (
                human_bytes(m.last),
                signed_bytes(m.growth),
                m.slope
                    .map_or("n/a".into(), |s| format!("{}/req", signed_bytes(s.point))),
                metric_outcome(m.outcome),
            ),
            None => (String::new(), String::new(), String::new(), ""),
        };
        let gpu = gpu.map_or(String::new(), |m| {
            format!("{} ({})", human_bytes(m.last), signed_bytes(m.growth))
        });
        let mut cmd: String = p.cmdline.chars().take(160).collect();
        if p.cmdline.chars().count() > 160 {
            cmd.push('…');
        }
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"num\">{pid}</td><td>{}</td><td class=\"num\">{rss}</td>\
             <td class=\"num\">{growth}</td><td class=\"num\">{slope}</td><td class=\"t-{outcome}\">{outcome}</td>\
             <td class=\"num\">{gpu}</td><td class=\"num\">{:.1}–{:.1} s</td><td><code>{}</code></td></tr>",
            esc(keys.get(pid).map_or("", String::as_str)),
            esc(&p.name),
            p.first_seen_ms as f64 / 1000.0,
            p.last_seen_ms as f64 / 1000.0,
            esc(&cmd),
        );
    }
    b.push_str("</table>");
}

fn requests_section(b: &mut String, report: &Report) {
    b.push_str("<h2>Requests</h2>");
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
    let _ = write!(
        b,
        "<p class=\"sub\">phases: {}</p>",
        esc(&phases.join(" · "))
    );
    if let Some(r) = &report.requests {
        let ms = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.1} ms"));
        let _ = write!(
            b,
            "<table><tr><th>sent</th><th>ok</th><th>failed</th><th>rejected</th><th>aborted</th>\
             <th>disconnected</th><th>measured</th><th>images</th><th>error rate</th><th>p50</th>\
             <th>p95</th><th>p99</th></tr><tr><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{:.2} %</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr></table>",
            r.sent,
            r.ok,
            r.failed,
            r.rejected,
            r.aborted,
            r.disconnected,
            r.measured,
            r.images,
            r.error_rate * 100.0,
            ms(r.latency_p50_ms),
            ms(r.latency_p95_ms),
            ms(r.latency_p99_ms),
        );
        if let Some(e) = &r.first_error {
            let _ = write!(b, "<p>first failure: <code>{}</code></p>", esc(e));
        }
        if !r.by_kind.is_empty() {
            let _ = write!(
                b,
                "<details><summary>by request kind</summary><pre>{}</pre></details>",
                esc(&serde_json::to_string_pretty(&r.by_kind).unwrap_or_default())
            );
        }
    }
    if let Some(a) = &report.adaptive {
        let _ = write!(
            b,
            "<p>length: {}</p><table><tr><th>look at</th><th>kind</th><th>α</th><th>outcome</th><th>undecided</th></tr>",
            esc(&a.summary())
        );
        let keys = process_keys(&report.timeline);
        for l in &a.looks {
            let undecided: Vec<String> = l.undecided.iter().map(|m| relabel(m, &keys)).collect();
            let _ = write!(
                b,
                "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{:.2e}</td><td class=\"t-{o}\">{o}</td><td>{}</td></tr>",
                l.look.requests,
                esc(&format!("{:?}", l.look.kind).to_lowercase()),
                l.look.alpha,
                esc(&undecided.join(", ")),
                o = metric_outcome(l.outcome),
            );
        }
        b.push_str("</table>");
    }
}

fn engine_section(b: &mut String, report: &Report) {
    if let Some(a) = &report.idle_accounting {
        let _ = write!(
            b,
            "<h2>The server's accounting at idle</h2><p class=\"sub\">{}{}</p>",
            esc(a.source.as_deref().unwrap_or("not available")),
            a.note
                .as_ref()
                .map(|n| format!(" — {}", esc(n)))
                .unwrap_or_default()
        );
        if !a.checks.is_empty() {
            b.push_str("<table><tr><th>check</th><th>before</th><th>after</th><th>expected</th><th>excess</th><th>outcome</th><th>why</th></tr>");
            for c in &a.checks {
                let o = metric_outcome(c.outcome);
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"t-{o}\">{o}</td><td>{}</td></tr>",
                    esc(&c.metric),
                    c.before,
                    c.after,
                    c.expected,
                    c.excess,
                    esc(&c.reason)
                );
            }
            b.push_str("</table>");
        }
    }
    if let Some(w) = &report.log_watch {
        let _ = write!(
            b,
            "<h2>The engine's memory checks in its log</h2><p class=\"sub\">{} lines read, {} matching{}</p>",
            w.lines,
            w.total_matches,
            w.note
                .as_ref()
                .map(|n| format!(" — {}", esc(n)))
                .unwrap_or_default()
        );
        if !w.matches.is_empty() {
            b.push_str("<table><tr><th>line</th><th>at</th><th>process</th><th>pattern</th><th>text</th></tr>");
            for m in &w.matches {
                let _ = write!(
                    b,
                    "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                    m.line,
                    esc(&m.at),
                    esc(m.role.as_deref().unwrap_or("")),
                    esc(&m.pattern),
                    esc(&m.text)
                );
            }
            b.push_str("</table>");
        }
    }
}

fn caches_and_settings(b: &mut String, report: &Report) {
    b.push_str("<h2>Caches and settings</h2>");
    if report.caches.is_empty() {
        b.push_str("<p class=\"sub\">no engine cache that grows with unique input is known for this target</p>");
    } else {
        b.push_str("<table><tr><th>cache</th><th>state</th><th>set by</th></tr>");
        for c in &report.caches {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&c.name),
                esc(&c.state),
                esc(c.flag.as_deref().unwrap_or(""))
            );
        }
        b.push_str("</table>");
    }
    let t = &report.target;
    let _ = write!(
        b,
        "<p>target: <b>{}</b> at <code>{}</code>{}</p><pre>{}</pre>",
        esc(&t.kind),
        esc(&t.base_url),
        t.model
            .as_ref()
            .map(|m| format!(", model <code>{}</code>", esc(m)))
            .unwrap_or_default(),
        esc(&t.argv.join(" "))
    );
    let json = |v: serde_json::Result<String>| esc(&v.unwrap_or_default());
    let _ = write!(
        b,
        "<details><summary>workload, driver, tracker, thresholds, shutdown</summary>\
         <pre>{}</pre><pre>{}</pre><pre>{}</pre><pre>{}</pre><pre>{}</pre></details>",
        json(serde_json::to_string_pretty(&report.workload)),
        json(serde_json::to_string_pretty(&report.driver)),
        json(serde_json::to_string_pretty(&report.tracker)),
        json(serde_json::to_string_pretty(&report.thresholds)),
        json(serde_json::to_string_pretty(&report.shutdown)),
    );
    if !report.timeline.sources.is_empty() {
        b.push_str("<table><tr><th>source</th><th>available</th><th>note</th><th>errors</th></tr>");
        for s in &report.timeline.sources {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(&s.name),
                if s.available { "yes" } else { "no" },
                esc(s.note.as_deref().unwrap_or("")),
                s.errors
            );
        }
        b.push_str("</table>");
    }
}

fn files_section(b: &mut String, report: &Report) {
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
    if names.is_empty() {
        return;
    }
    b.push_str("<h2>Files</h2><p>");
    for n in names {
        let href = if f
            .server_log
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|x| x.to_string_lossy())
            == Some(n.as_str().into())
        {
            format!("logs/{n}")
        } else {
            n.clone()
        };
        let _ = write!(b, "<a href=\"{}\">{}</a> ", esc(&href), esc(&n));
    }
    b.push_str("</p>");
}

/// The suite's page: every scenario's outcome and verdict, linked to its page.
pub fn render_suite(title: &str, reports: &[Report]) -> String {
    let links: Vec<SuiteLink> = reports.iter().map(SuiteLink::of).collect();
    let mut b = String::new();
    nav(&mut b, &links, None);
    let worst = reports
        .iter()
        .map(|r| r.outcome)
        .max_by_key(|o| match o {
            RunOutcome::Pass => 0,
            RunOutcome::Inconclusive => 1,
            RunOutcome::Error => 2,
            RunOutcome::Leak => 3,
        })
        .unwrap_or(RunOutcome::Error);
    let _ = write!(
        b,
        "<main><h1>{} {}</h1><p class=\"verdict\" id=\"verdict\">{} scenarios: {}</p>\
         <table><tr><th>scenario</th><th>outcome</th><th>verdict</th><th>measured requests</th><th>duration</th></tr>",
        esc(title),
        badge(worst),
        reports.len(),
        esc(&reports
            .iter()
            .map(|r| format!("{} {}", r.scenario, outcome_word(r.outcome)))
            .collect::<Vec<_>>()
            .join(", ")),
    );
    for (r, l) in reports.iter().zip(&links) {
        let _ = write!(
            b,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1} s</td></tr>",
            esc(&l.href),
            esc(&r.scenario),
            badge(r.outcome),
            esc(&verdict_sentence(r)),
            r.requests.as_ref().map_or(0, |q| q.measured),
            r.duration_ms as f64 / 1000.0
        );
    }
    b.push_str("</table></main>");
    page(title, &b)
}

/// Write `report`'s page to `path` atomically.
///
/// # Errors
/// [`ReportError::Write`] naming the path.
pub fn write_html(report: &Report, path: &Path, suite: &[SuiteLink]) -> Result<(), ReportError> {
    super::write_atomic(path, render(report, suite).as_bytes())
}

/// Rewrite each report's page with links to the others, and write the suite's `index.html`
/// into `dir`; returns the index's path.
///
/// # Errors
/// [`ReportError::Write`] naming the file that could not be written.
pub fn write_suite(dir: &Path, title: &str, reports: &[Report]) -> Result<PathBuf, ReportError> {
    let links: Vec<SuiteLink> = reports.iter().map(SuiteLink::of).collect();
    for r in reports {
        write_html(r, &dir.join(format!("{}.html", r.scenario)), &links)?;
    }
    let index = dir.join("index.html");
    super::write_atomic(&index, render_suite(title, reports).as_bytes())?;
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
