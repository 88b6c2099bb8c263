//! The figure's headline: the verdict in one line and its first reasons.

use super::*;

/// `LEAK: host.rss@scheduler +1.0 MiB/request [+0.98 MiB .. +1.02 MiB]` / `PASS: …` /
/// `INCONCLUSIVE: …`, and up to two reasons, processes named by role.
pub(in crate::report::plot) fn headline(
    verdict: &crate::analysis::Verdict,
    keys: &BTreeMap<u32, String>,
) -> ((String, RGBColor), Vec<String>) {
    let judged: Vec<&MetricAnalysis> = verdict.metrics.iter().filter(|m| m.judged).collect();
    let describe = |m: &MetricAnalysis| {
        let slope = m
            .slope
            .map(|s| {
                format!(
                    " {}/request [{}]",
                    signed_bytes(s.point),
                    interval(s.ci.lo, s.ci.hi)
                )
            })
            .unwrap_or_else(|| format!(" {} over the run", signed_bytes(m.growth)));
        format!("{}{slope}", relabel(&m.metric, keys))
    };
    let worst: Vec<&&MetricAnalysis> = judged
        .iter()
        .filter(|m| m.outcome == verdict.outcome)
        .collect();
    let more = match worst.len() {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    let head = match verdict.outcome {
        Outcome::Leak => match worst.first() {
            Some(m) => format!("LEAK: {}{more}", describe(m)),
            None => "LEAK".to_owned(),
        },
        Outcome::Inconclusive => match worst.first() {
            Some(m) => format!("INCONCLUSIVE: {}{more}", describe(m)),
            None => "INCONCLUSIVE: nothing was judged".to_owned(),
        },
        Outcome::Pass => {
            let plateaus: Vec<String> = judged
                .iter()
                .filter(|m| m.plateau.is_some())
                .map(|m| relabel(&m.metric, keys))
                .collect();
            if plateaus.is_empty() {
                format!("PASS: {} judged metrics within their limits", judged.len())
            } else {
                format!(
                    "PASS: {} judged metrics within their limits; bounded growth in {}",
                    judged.len(),
                    plateaus.join(", ")
                )
            }
        }
    };
    let details = verdict
        .reasons
        .iter()
        .take(2)
        .map(|r| relabel(r, keys))
        .collect();
    ((head, outcome_color(verdict.outcome)), details)
}
