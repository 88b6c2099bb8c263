//! The fleet report as one self-contained HTML page: the verdict, the plot inline, and the
//! table of rows (worst first) with each row's reasons.

use std::fmt::Write;

use super::report::{FleetReport, FleetRow};
use crate::analysis::{Outcome, human_hours};
use crate::report::html::{esc, page};
use crate::util::{human_bytes, signed_bytes};

fn word(o: Outcome) -> &'static str {
    match o {
        Outcome::Leak => "leak",
        Outcome::Inconclusive => "inconclusive",
        Outcome::Pass => "pass",
    }
}

fn cells(r: &FleetRow) -> [String; 6] {
    [
        r.growth_per_hour
            .map_or("–".into(), |e| format!("{}/h", signed_bytes(e.point))),
        r.growth_per_request().map_or("–".into(), |e| {
            format!("{}/request", signed_bytes(e.point))
        }),
        human_bytes(r.last()),
        r.headroom.map_or("–".into(), human_bytes),
        r.hours_to_exhaust.map_or("–".into(), human_hours),
        r.requests.map_or("–".into(), |n| n.to_string()),
    ]
}

/// The page; `svg` is the plot to inline, when there is one.
pub(crate) fn render(report: &FleetReport, svg: Option<&str>) -> String {
    let mut b = String::from("<main>");
    let _ = write!(
        b,
        "<h1>Fleet: {:?}</h1><p>{} series from <code>{}</code>, {} .. {} (step {} s); each row judged at α = {:.2e}.</p>",
        report.outcome,
        report.rows.len(),
        esc(&report.prometheus),
        esc(&report.window.from),
        esc(&report.window.to),
        report.window.step_s,
        report.alpha
    );
    if let Some(e) = &report.error {
        let _ = write!(b, "<p><strong>Error:</strong> {}</p>", esc(e));
    }
    if let Some(svg) = svg {
        let _ = write!(b, "<div class=\"plot\">{svg}</div>");
    }
    b.push_str(
        "<table><tr><th>outcome</th><th>series</th><th>memory</th><th>growth/hour</th>\
         <th>growth/request</th><th>last</th><th>headroom</th><th>full in</th><th>requests</th></tr>",
    );
    for r in &report.rows {
        let c = cells(r);
        let _ = write!(
            b,
            "<tr><td>{}</td><td><details><summary>{}</summary><ul class=\"reasons\">{}</ul><code>{}</code></details></td><td>{:?}</td>",
            word(r.outcome),
            esc(&r.name),
            r.analysis
                .reasons
                .iter()
                .map(|x| format!("<li>{}</li>", esc(x)))
                .collect::<String>(),
            esc(&r.query),
            r.memory
        );
        for v in c {
            let _ = write!(b, "<td class=\"num\">{}</td>", esc(&v));
        }
        b.push_str("</tr>");
    }
    b.push_str("</table>");
    for n in &report.notes {
        let _ = write!(b, "<p>note: {}</p>", esc(n));
    }
    b.push_str("</main>");
    page(&format!("fleet: {:?}", report.outcome), &b)
}
