//! The HTML report: one self-contained file per run (`<scenario>.html`) and one per suite
//! (`index.html`), as criterion's report is — inline CSS, the plot as inline SVG, no script, no
//! network. It reads only the [`Report`]: the verdict, the per-process table, the plot, the
//! requests, the engine's accounting and log checks, the caches and settings, the server log
//! tail, and links between the scenarios of a suite.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use minijinja::Environment;
use serde::Serialize;

use super::roles::{process_keys, relabel};
use super::{Report, ReportError, RunOutcome};
use crate::analysis::Outcome;
use crate::util::signed_bytes;

mod view;

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

/// The templates, embedded: `base.html` (the page, its CSS and the suite's navigation),
/// `run.html` (one run), `suite.html` (the suite's index), `fleet.html` (a fleet's verdict),
/// `macros.html` (badges, outcome cells, intervals). Rendered by minijinja with HTML
/// auto-escaping (the names end in `.html`): text from the report is escaped by the template;
/// only the inline plot (SVG from plotters) goes in unescaped (`|safe`).
const TEMPLATES: [(&str, &str); 5] = [
    ("base.html", include_str!("templates/base.html")),
    ("fleet.html", include_str!("templates/fleet.html")),
    ("macros.html", include_str!("templates/macros.html")),
    ("run.html", include_str!("templates/run.html")),
    ("suite.html", include_str!("templates/suite.html")),
];

fn templates() -> &'static Result<Environment<'static>, minijinja::Error> {
    static ENV: OnceLock<Result<Environment<'static>, minijinja::Error>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(env)
    })
}

/// `name` rendered with `ctx`; a template error (a bug of this crate: a unit test renders every
/// template) becomes a page that says so rather than a panic or a missing report.
pub(crate) fn render_template(name: &str, ctx: impl Serialize) -> String {
    let rendered = match templates() {
        Ok(env) => env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|e| format!("{e:#}")),
        Err(e) => Err(format!("{e:#}")),
    };
    rendered.unwrap_or_else(|e| {
        format!(
            "<!DOCTYPE html><html><body><p>sglang-memtest could not render its HTML template {}: {}; the JSON report beside this file holds everything</p></body></html>\n",
            esc(name),
            esc(&e)
        )
    })
}

/// Escapes text for HTML content and attribute values (for the fragments built outside the
/// templates).
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

/// A link of the navigation bar.
#[derive(Serialize)]
struct NavLink {
    href: String,
    label: String,
    current: bool,
}

/// The suite's navigation: the index, then every scenario with its outcome.
fn nav(suite: &[SuiteLink], current: Option<&str>) -> Vec<NavLink> {
    if suite.is_empty() {
        return Vec::new();
    }
    let index = NavLink {
        href: "index.html".into(),
        label: "suite".into(),
        current: current.is_none(),
    };
    std::iter::once(index)
        .chain(suite.iter().map(|l| NavLink {
            href: l.href.clone(),
            label: format!("{} · {}", l.name, l.outcome.as_str()),
            current: current == Some(l.name.as_str()),
        }))
        .collect()
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
    render_template("run.html", view::run_page(report, suite))
}

/// A scenario's row on the suite's page.
#[derive(Serialize)]
struct SuiteRun {
    href: String,
    scenario: String,
    outcome: &'static str,
    verdict: String,
    measured: u64,
    duration: String,
}

/// The suite's page: every scenario's outcome and verdict, linked to its page.
pub fn render_suite(title: &str, reports: &[Report]) -> String {
    let links: Vec<SuiteLink> = reports.iter().map(SuiteLink::of).collect();
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
    let runs: Vec<SuiteRun> = reports
        .iter()
        .zip(&links)
        .map(|(r, l)| SuiteRun {
            href: l.href.clone(),
            scenario: r.scenario.clone(),
            outcome: r.outcome.as_str(),
            verdict: verdict_sentence(r),
            measured: r.requests.as_ref().map_or(0, |q| q.measured),
            duration: format!("{:.1}", r.duration_ms as f64 / 1000.0),
        })
        .collect();
    let summary = reports
        .iter()
        .map(|r| format!("{} {}", r.scenario, r.outcome.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    render_template(
        "suite.html",
        serde_json::json!({
            "title": title,
            "nav": nav(&links, None),
            "worst": worst.as_str(),
            "summary": summary,
            "runs": runs,
        }),
    )
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
    fn every_template_parses() {
        if let Err(e) = templates() {
            panic!("{e:#}");
        }
    }

    #[test]
    fn a_page_escapes_what_it_is_given() {
        let p = render_template(
            "base.html",
            serde_json::json!({ "title": "a <b> & 'c'", "nav": [] }),
        );
        assert!(
            p.contains("<title>a &lt;b&gt; &amp; &#x27;c&#x27;</title>"),
            "{p}"
        );
        assert!(!p.contains("<nav>"), "{p}");
    }

    #[test]
    fn a_broken_template_is_a_page_that_says_so() {
        let p = render_template("no-such.html", serde_json::json!({}));
        assert!(
            p.contains("could not render its HTML template no-such.html"),
            "{p}"
        );
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
