//! The fleet report as one self-contained HTML page: the verdict, the plot inline, and the
//! table of rows (worst first) with each row's reasons.

use serde::Serialize;

use super::report::{FleetReport, FleetRow};
use crate::analysis::human_hours;
use crate::report::html::render_template;
use crate::util::{human_bytes, signed_bytes};

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

/// A row of the fleet page's table.
#[derive(Serialize)]
struct Row {
    outcome: &'static str,
    name: String,
    reasons: Vec<String>,
    query: String,
    memory: String,
    cells: [String; 6],
}

/// The page; `svg` is the plot to inline, when there is one.
pub(crate) fn render(report: &FleetReport, svg: Option<&str>) -> String {
    let rows: Vec<Row> = report
        .rows
        .iter()
        .map(|r| Row {
            outcome: r.outcome.as_str(),
            name: r.name.clone(),
            reasons: r.analysis.reasons.clone(),
            query: r.query.clone(),
            memory: format!("{:?}", r.memory),
            cells: cells(r),
        })
        .collect();
    render_template(
        "fleet.html",
        serde_json::json!({
            "title": format!("fleet: {:?}", report.outcome),
            "nav": [],
            "outcome": format!("{:?}", report.outcome),
            "prometheus": report.prometheus,
            "from": report.window.from,
            "to": report.window.to,
            "step_s": report.window.step_s,
            "alpha": format!("{:.2e}", report.alpha),
            "error": report.error,
            "svg": svg,
            "rows": rows,
            "notes": report.notes,
        }),
    )
}
