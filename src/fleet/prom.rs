//! A small client of Prometheus' HTTP API: `/api/v1/query_range` (and `/-/ready`), with every
//! way it can go wrong turned into a [`FleetError`] that says what to do.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::FleetError;

/// Prometheus refuses a range query of more than 11,000 points per series: stay below.
pub const MAX_POINTS_PER_SERIES: f64 = 10_000.0;

/// One series of a range query: its labels (`__name__` included when the query keeps it) and
/// its samples, `(unix seconds, value)`, in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSeries {
    /// Label names and values.
    pub labels: BTreeMap<String, String>,
    /// `(unix seconds, value)`; NaN and infinities kept as Prometheus sent them.
    pub points: Vec<(f64, f64)>,
}

/// A time window and the resolution it is read at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Unix seconds.
    pub start: f64,
    /// Unix seconds.
    pub end: f64,
    /// Seconds between points.
    pub step: f64,
}

impl Window {
    /// `start..end` at `step`, the step raised where needed so that no series has more than
    /// [`MAX_POINTS_PER_SERIES`] points (Prometheus' own limit is 11,000).
    pub fn new(start: f64, end: f64, step: Duration) -> Self {
        let step = step
            .as_secs_f64()
            .max((end - start) / MAX_POINTS_PER_SERIES)
            .max(0.001);
        Self { start, end, step }
    }
}

/// A Prometheus server's HTTP API.
#[derive(Debug, Clone)]
pub struct PromClient {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct MatrixSeries {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

impl PromClient {
    /// A client of the Prometheus at `base` (`http://prometheus:9090`, a trailing `/` or a path
    /// prefix such as `/prometheus` kept). Requests time out after `timeout`.
    ///
    /// # Errors
    /// [`FleetError::BadUrl`] when `base` is not an http(s) URL.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, FleetError> {
        let base = base.trim().trim_end_matches('/').to_owned();
        let ok = reqwest::Url::parse(&base)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        if !ok {
            return Err(FleetError::BadUrl { url: base });
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .build()
            .map_err(|e| FleetError::Unreachable {
                url: base.clone(),
                message: e.to_string(),
            })?;
        Ok(Self { base, http })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Whether Prometheus answers `/-/ready` with 200 (it is up and has loaded its storage).
    pub async fn ready(&self) -> bool {
        self.http
            .get(format!("{}/-/ready", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Evaluate `query` over `window`: one [`PromSeries`] per result series.
    ///
    /// # Errors
    /// [`FleetError::Unreachable`] (no answer, or a timeout), [`FleetError::Query`] (Prometheus
    /// rejected the query: its own error text), [`FleetError::NotPrometheus`] (an answer that is
    /// not Prometheus' JSON), [`FleetError::NotMatrix`].
    pub async fn query_range(
        &self,
        query: &str,
        window: &Window,
    ) -> Result<Vec<PromSeries>, FleetError> {
        let endpoint = format!("{}/api/v1/query_range", self.base);
        let url = reqwest::Url::parse_with_params(
            &endpoint,
            [
                ("query", query.to_owned()),
                ("start", format!("{:.3}", window.start)),
                ("end", format!("{:.3}", window.end)),
                ("step", format!("{:.3}", window.step)),
            ],
        )
        .map_err(|_| FleetError::BadUrl {
            url: self.base.clone(),
        })?;
        let answer = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| FleetError::Unreachable {
                url: self.base.clone(),
                // The URL (query included) is in the sentence already.
                message: crate::load::describe_reqwest(&e.without_url()),
            })?;
        let status = answer.status();
        let body = answer.text().await.map_err(|e| FleetError::Unreachable {
            url: self.base.clone(),
            message: crate::load::describe_reqwest(&e.without_url()),
        })?;
        parse_range(query, &endpoint, status.as_u16(), &body)
    }
}

/// Parse the answer of `/api/v1/query_range` (`status` is the HTTP status).
pub(crate) fn parse_range(
    query: &str,
    endpoint: &str,
    status: u16,
    body: &str,
) -> Result<Vec<PromSeries>, FleetError> {
    let not_prometheus = || FleetError::NotPrometheus {
        url: endpoint.to_owned(),
        status,
        body: body.chars().take(200).collect(),
    };
    let envelope: Envelope = serde_json::from_str(body).map_err(|_| not_prometheus())?;
    if envelope.status != "success" {
        return Err(FleetError::Query {
            query: query.to_owned(),
            kind: envelope.error_type.unwrap_or_else(|| "error".into()),
            message: envelope
                .error
                .unwrap_or_else(|| format!("HTTP {status}, no error text")),
        });
    }
    let data = envelope.data.ok_or_else(not_prometheus)?;
    if data.result_type != "matrix" {
        return Err(FleetError::NotMatrix {
            query: query.to_owned(),
            found: data.result_type,
        });
    }
    let series: Vec<MatrixSeries> =
        serde_json::from_value(data.result).map_err(|_| not_prometheus())?;
    Ok(series
        .into_iter()
        .map(|s| PromSeries {
            labels: s.metric,
            points: s
                .values
                .into_iter()
                .map(|(t, v)| (t, parse_value(&v)))
                .collect(),
        })
        .collect())
}

/// Prometheus writes sample values as strings: `"123"`, `"1.5e+09"`, `"NaN"`, `"+Inf"`.
fn parse_value(v: &str) -> f64 {
    match v {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => v.parse().unwrap_or(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from Prometheus 2.42 (Debian's package) scraping the reference server.
    const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"process_resident_memory_bytes","instance":"127.0.0.1:40123","job":"sglang","pid":"4242","role":"tokenizer_manager"},"values":[[1764990000,"52432896"],[1764990000.25,"52436992"],[1764990000.5,"NaN"]]}]}}"#;
    const BAD_QUERY: &str = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:15: parse error: unexpected right parenthesis ')'"}"#;
    const VECTOR: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    const EMPTY: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;

    #[test]
    fn a_matrix_parses_with_its_labels_and_values() {
        let s = parse_range("q", "u", 200, MATRIX).expect("parses");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels["role"], "tokenizer_manager");
        assert_eq!(s[0].points[1], (1764990000.25, 52436992.0));
        assert!(s[0].points[2].1.is_nan());
        assert!(
            parse_range("q", "u", 200, EMPTY)
                .expect("parses")
                .is_empty()
        );
    }

    #[test]
    fn prometheus_errors_are_quoted_and_other_answers_named() {
        let e = parse_range("rate(x))", "u", 400, BAD_QUERY).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("unexpected right parenthesis") && text.contains("rate(x))"),
            "{text}"
        );
        let e = parse_range(
            "q",
            "http://h/api/v1/query_range",
            404,
            "404 page not found",
        )
        .unwrap_err();
        assert!(
            matches!(e, FleetError::NotPrometheus { status: 404, .. }),
            "{e}"
        );
        let e = parse_range("q", "u", 200, VECTOR).unwrap_err();
        assert!(e.to_string().contains("vector"), "{e}");
    }

    #[test]
    fn values_and_urls_are_checked() {
        assert_eq!(parse_value("+Inf"), f64::INFINITY);
        assert_eq!(parse_value("1.5e+09"), 1.5e9);
        assert!(PromClient::new("prometheus:9090", Duration::from_secs(1)).is_err());
        assert!(PromClient::new("http://127.0.0.1:9090/", Duration::from_secs(1)).is_ok());
        let w = Window::new(0.0, 7.0 * 86400.0, Duration::from_secs(1));
        assert!((w.end - w.start) / w.step <= MAX_POINTS_PER_SERIES + 1e-9);
    }
}
