//! Dose–response: one scenario run at several values of one knob, and the growth per request
//! fitted against it. A leak proportional to pixels is a different bug from one per request:
//! the fit says which (bytes per unit of the knob, bytes per request at zero, R²).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::analysis::Estimate;
use crate::config::ScenarioConfig;
use crate::report::{Report, RunOutcome};
use crate::util::signed_bytes;

/// The knobs a sweep may vary, and the unit of its x axis.
pub const KNOBS: &[(&str, &str)] = &[
    ("image_size", "pixel"),
    ("images_per_request", "image"),
    ("max_new_tokens", "token"),
    ("concurrency", "request in flight"),
];

/// Why a sweep did not run or could not write its result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SweepError {
    /// The plan cannot run: a knob a sweep does not vary, fewer than two values, a value that
    /// is not a number or does not build.
    #[error(transparent)]
    Plan(#[from] crate::util::Invalid),
    /// The sweep's JSON could not be written.
    #[error("failed to write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The x value of a knob's setting: pixels for `WxH`, the number otherwise.
///
/// # Errors
/// A sentence naming the knobs a sweep takes, or the value that is not a number.
pub fn x_of(knob: &str, value: &str) -> Result<f64, crate::util::Invalid> {
    if !KNOBS.iter().any(|(k, _)| *k == knob) {
        return Err(crate::util::Invalid(format!(
            "a sweep varies one of {}, not `{knob}`",
            KNOBS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        )));
    }
    let v = value.trim();
    if knob == "image_size" {
        let (w, h) = v.split_once(['x', 'X']).ok_or_else(|| {
            crate::util::Invalid(format!("image size `{v}` is not WxH (e.g. 448x448)"))
        })?;
        let (w, h): (f64, f64) = (
            w.trim()
                .parse()
                .map_err(|_| crate::util::Invalid(format!("`{v}` is not WxH")))?,
            h.trim()
                .parse()
                .map_err(|_| crate::util::Invalid(format!("`{v}` is not WxH")))?,
        );
        return Ok(w * h);
    }
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
        .ok_or_else(|| crate::util::Invalid(format!("`{v}` is not a number (sweeping {knob})")))
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// The knob's value as given (`448x448`).
    pub value: String,
    /// Its x (pixels, images, tokens, …).
    pub x: f64,
    /// The run's outcome.
    pub outcome: RunOutcome,
    /// Growth per request of the swept metric (`null`: the run gave none).
    pub slope: Option<Estimate>,
    /// Measured requests.
    pub requests: u64,
    /// The run's JSON report.
    pub report: Option<PathBuf>,
}

pub use crate::stats::least_squares::{Fit, fit};

/// How growth depends on the knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dependence {
    /// Growth per request follows the knob through the origin: a leak per unit (per pixel).
    Proportional,
    /// Growth per request follows the knob, plus a part that does not.
    Affine,
    /// Growth per request does not follow the knob: a leak per request.
    Constant,
    /// Too noisy to say (R² low, or no growth).
    Unclear,
}

/// The whole sweep, as written to `sweep_<knob>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// The knob varied.
    pub knob: String,
    /// The unit of x (`pixel`).
    pub unit: String,
    /// The metric whose growth per request is fitted (`host.rss@tree`).
    pub metric: String,
    /// One per value, in the order run.
    pub points: Vec<SweepPoint>,
    /// The line through them, when two runs gave a slope.
    pub fit: Option<Fit>,
    /// What the fit says.
    pub dependence: Dependence,
    /// The finding, one sentence.
    pub finding: String,
    /// The plot (PNG and SVG), when drawn.
    #[serde(default)]
    pub plots: Vec<PathBuf>,
}

/// Classifies a fit: the knob explains the growth when R² ≥ 0.9 and the fitted growth across
/// the range is large against the intercept.
pub fn dependence(fit: Option<&Fit>, xs: &[f64]) -> Dependence {
    let Some(f) = fit else {
        return Dependence::Unclear;
    };
    let (lo, hi) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(*x), h.max(*x)));
    let span = (f.per_unit * (hi - lo)).abs();
    let top = f.intercept.abs() + f.per_unit.abs() * hi.abs();
    if top <= 0.0 {
        return Dependence::Unclear;
    }
    if span < 0.2 * top {
        return Dependence::Constant;
    }
    if f.r2 < 0.9 {
        return Dependence::Unclear;
    }
    if f.intercept.abs() <= 0.1 * top {
        Dependence::Proportional
    } else {
        Dependence::Affine
    }
}

/// The sentence for a sweep.
pub fn finding(knob: &str, unit: &str, fit: Option<&Fit>, dep: Dependence) -> String {
    let Some(f) = fit else {
        return format!("no fit: fewer than two runs of {knob} gave a growth per request");
    };
    let per = signed_bytes(f.per_unit);
    let at0 = signed_bytes(f.intercept);
    match dep {
        Dependence::Proportional => format!(
            "growth is proportional to {knob}: {per} per {unit} per request (R² {:.3}; {at0}/request at zero) — a leak per {unit}, not per request",
            f.r2
        ),
        Dependence::Affine => format!(
            "growth = {at0}/request + {per} per {unit} per request (R² {:.3}): a part per request and a part per {unit}",
            f.r2
        ),
        Dependence::Constant => format!(
            "growth does not follow {knob}: about {at0}/request whatever its value ({per} per {unit}, R² {:.3}) — a leak per request",
            f.r2
        ),
        Dependence::Unclear => format!(
            "no clear dependence on {knob}: {per} per {unit} per request, {at0}/request at zero, R² {:.3} (run longer or use more values)",
            f.r2
        ),
    }
}

/// The slope of `metric` in a report: its exact name, else the first metric whose
/// role-labelled name matches (`host.rss@scheduler`).
pub fn slope_of(report: &Report, metric: &str) -> Option<Estimate> {
    let v = report.verdict.as_ref()?;
    let keys = crate::report::roles::process_keys(&report.timeline);
    v.metrics
        .iter()
        .find(|m| m.metric == metric)
        .or_else(|| {
            v.metrics
                .iter()
                .find(|m| crate::report::roles::stable_metric(&m.metric, &keys) == metric)
        })
        .and_then(|m| m.slope)
}

/// What a sweep varies and what it fits.
#[derive(Debug, Clone, Copy)]
pub struct SweepPlan<'a> {
    /// The knob's name (`image_size`).
    pub knob: &'a str,
    /// Its values, at least two.
    pub values: &'a [String],
    /// The metric whose growth per request is fitted (`host.rss@tree`).
    pub metric: &'a str,
}

/// Runs `base` once per value of the plan's knob (each run named `sweep_<knob>_<i>`), fits the
/// growth per request of its metric against the knob, and writes `sweep_<knob>.json` (and,
/// unless plots are off, `.png`/`.svg`) into the scenario's output folder. `each` sees every report as it comes; a cancelled
/// `cancel` stops the sweep after the run in progress.
///
/// # Errors
/// A sentence when the knob or a value is not one a sweep takes, or a run's settings are
/// invalid (every value is checked before the first run).
pub async fn run(
    base: &ScenarioConfig,
    plan: &SweepPlan<'_>,
    cancel: &tokio_util::sync::CancellationToken,
    mut each: impl FnMut(&Report),
) -> Result<Sweep, SweepError> {
    let SweepPlan {
        knob,
        values,
        metric,
    } = *plan;
    if values.len() < 2 {
        return Err(crate::util::Invalid::from(
            "a sweep needs at least two values (e.g. --values 224x224,448x448,896x896)",
        )
        .into());
    }
    let unit = KNOBS
        .iter()
        .find(|(k, _)| *k == knob)
        .map(|(_, u)| (*u).to_owned())
        .ok_or_else(|| x_of(knob, "").unwrap_err())?;
    let mut built = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let x = x_of(knob, v)?;
        let name = format!("sweep_{knob}_{i}");
        let scenario = base
            .clone()
            .named(name)
            // A sweep measures dose, not causes: no stack snapshots of every leaking run.
            .set("py_spy", "off")
            .set(knob, v)
            .build()
            .map_err(|e| crate::util::Invalid(format!("{knob}={v}: {e}")))?;
        built.push((v.clone(), x, scenario));
    }
    let (out_dir, plots) = match built.first() {
        Some((_, _, s)) => (s.out_dir().to_owned(), s.plots()),
        None => {
            return Err(crate::util::Invalid::from("a sweep needs at least two values").into());
        }
    };
    let out_dir = out_dir.as_path();
    let mut points = Vec::new();
    for (value, x, scenario) in built {
        if cancel.is_cancelled() {
            break;
        }
        let report = scenario.run_until(cancel).await;
        each(&report);
        points.push(SweepPoint {
            value,
            x,
            outcome: report.outcome,
            slope: slope_of(&report, metric),
            requests: report.timeline.requests_in(crate::tracker::Phase::Measure),
            report: report.files.json.clone(),
        });
    }
    let xy: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| p.slope.map(|s| (p.x, s.point)))
        .collect();
    let f = fit(&xy);
    let xs: Vec<f64> = xy.iter().map(|p| p.0).collect();
    let dep = dependence(f.as_ref(), &xs);
    let mut sweep = Sweep {
        knob: knob.to_owned(),
        unit: unit.clone(),
        metric: metric.to_owned(),
        finding: finding(knob, &unit, f.as_ref(), dep),
        points,
        fit: f,
        dependence: dep,
        plots: Vec::new(),
    };
    let stem = format!("sweep_{knob}");
    if plots {
        match super::sweep_plot::write(&sweep, out_dir, &stem) {
            Ok(files) => sweep.plots = files,
            Err(e) => tracing::warn!("sweep plot not written: {e}"),
        }
    }
    let path = out_dir.join(format!("{stem}.json"));
    let json = serde_json::to_vec_pretty(&sweep).map_err(|e| SweepError::Write {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    crate::util::write_atomic(&path, &json).map_err(|source| SweepError::Write { path, source })?;
    Ok(sweep)
}

/// The sweep as a Markdown table, then the finding.
pub fn table(s: &Sweep) -> String {
    use crate::util::human_bytes;
    let mut out = format!(
        "| {} | {}s | outcome | {} per request | 95% interval |\n|---|---:|---|---:|---|\n",
        s.knob, s.unit, s.metric
    );
    for p in &s.points {
        let (point, ci) = match p.slope {
            Some(e) => (
                signed_bytes(e.point),
                format!("[{} .. {}]", human_bytes(e.ci.lo), human_bytes(e.ci.hi)),
            ),
            None => ("n/a".into(), String::new()),
        };
        out.push_str(&format!(
            "| {} | {} | {:?} | {point} | {ci} |\n",
            p.value, p.x, p.outcome
        ));
    }
    out.push_str(&format!("\n{}\n", s.finding));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_sizes_become_pixels_and_bad_values_say_why() {
        assert_eq!(x_of("image_size", "448x448"), Ok(448.0 * 448.0));
        assert!(x_of("image_size", "448").unwrap_err().0.contains("WxH"));
        assert_eq!(x_of("concurrency", "4"), Ok(4.0));
        assert!(x_of("seed", "4").unwrap_err().0.contains("image_size"));
    }

    #[test]
    fn a_leak_per_pixel_is_proportional_and_one_per_request_is_constant() {
        let px = [4096.0, 16384.0, 65536.0];
        let per_pixel: Vec<(f64, f64)> = px.iter().map(|x| (*x, 16.0 * x + 300.0)).collect();
        let f = fit(&per_pixel).expect("a fit");
        assert!((f.per_unit - 16.0).abs() < 1e-9 && f.r2 > 0.999);
        assert_eq!(dependence(Some(&f), &px), Dependence::Proportional);
        let flat: Vec<(f64, f64)> = px
            .iter()
            .zip([1.0e6, 1.01e6, 0.99e6])
            .map(|(x, y)| (*x, y))
            .collect();
        let f = fit(&flat).expect("a fit");
        assert_eq!(dependence(Some(&f), &px), Dependence::Constant);
        let mixed: Vec<(f64, f64)> = px.iter().map(|x| (*x, 16.0 * x + 1.0e6)).collect();
        let f = fit(&mixed).expect("a fit");
        assert_eq!(dependence(Some(&f), &px), Dependence::Affine);
        assert!(fit(&[(1.0, 2.0)]).is_none());
        assert!(fit(&[(1.0, 2.0), (1.0, 3.0)]).is_none());
    }
}
