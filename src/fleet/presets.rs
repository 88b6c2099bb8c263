//! Query presets: the PromQL a common deployment already exports, so `judge` needs only a URL.

use serde::{Deserialize, Serialize};

use super::MemoryKind;

/// One memory query: its PromQL (values in bytes) and which memory it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryQuery {
    /// Host or GPU memory (decides the rule that judges its series).
    pub kind: MemoryKind,
    /// The PromQL.
    pub query: String,
}

impl MemoryQuery {
    /// `kind` memory read by `query`.
    pub fn new(kind: MemoryKind, query: impl Into<String>) -> Self {
        Self {
            kind,
            query: query.into(),
        }
    }
}

/// The queries one judgement reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuerySet {
    /// Memory queries; each series they find is judged on its own.
    pub memory: Vec<MemoryQuery>,
    /// A request counter (`sglang:num_requests_total`): growth per request.
    pub requests: Option<String>,
    /// Host memory limit per series (`container_spec_memory_limit_bytes`): headroom = limit −
    /// usage.
    pub limit: Option<String>,
    /// Free GPU memory per GPU (`DCGM_FI_DEV_FB_FREE`, in bytes): headroom.
    pub gpu_free: Option<String>,
    /// Labels that pair a memory series with its counter and limit (empty: every label both
    /// carry).
    pub on: Vec<String>,
}

/// A named query set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// SGLang on Kubernetes: cAdvisor's `container_memory_working_set_bytes` per container (limit
    /// `container_spec_memory_limit_bytes`), dcgm-exporter's `DCGM_FI_DEV_FB_USED` per GPU (free:
    /// `DCGM_FI_DEV_FB_FREE`; both MiB, scaled to bytes), requests from
    /// `sglang:num_requests_total`; matched on `namespace` and `pod`.
    SglangK8s,
    /// Any server with a Prometheus client library: `process_resident_memory_bytes` per process,
    /// requests from `sglang:num_requests_total`; matched on `instance`.
    Process,
}

impl Preset {
    /// The preset's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::SglangK8s => "sglang-k8s",
            Preset::Process => "process",
        }
    }

    /// The queries, every selector narrowed by `selector` (label matchers as PromQL writes them
    /// inside braces, e.g. `namespace="llm",pod=~"sglang-.*"`; empty: none).
    pub fn queries(self, selector: &str) -> QuerySet {
        let sel = selector
            .trim()
            .trim_matches(|c| c == '{' || c == '}')
            .trim();
        let with = |base: &str| match (base.is_empty(), sel.is_empty()) {
            (_, true) => format!("{{{base}}}"),
            (true, false) => format!("{{{sel}}}"),
            (false, false) => format!("{{{base},{sel}}}"),
        };
        let container = r#"container!="",container!="POD""#;
        match self {
            Preset::SglangK8s => QuerySet {
                memory: vec![
                    MemoryQuery::new(
                        MemoryKind::Host,
                        format!("container_memory_working_set_bytes{}", with(container)),
                    ),
                    MemoryQuery::new(
                        MemoryKind::Gpu,
                        format!("DCGM_FI_DEV_FB_USED{} * 1048576", with("")),
                    ),
                ],
                requests: Some(format!("sglang:num_requests_total{}", with(""))),
                limit: Some(format!(
                    "container_spec_memory_limit_bytes{} > 0",
                    with(container)
                )),
                gpu_free: Some(format!("DCGM_FI_DEV_FB_FREE{} * 1048576", with(""))),
                on: vec!["namespace".into(), "pod".into()],
            },
            Preset::Process => QuerySet {
                memory: vec![MemoryQuery::new(
                    MemoryKind::Host,
                    format!("process_resident_memory_bytes{}", with("")),
                )],
                requests: Some(format!("sglang:num_requests_total{}", with(""))),
                limit: None,
                gpu_free: None,
                on: vec!["instance".into()],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_merged_into_every_query() {
        let q = Preset::SglangK8s.queries(r#"namespace="llm""#);
        assert_eq!(
            q.memory[0].query,
            r#"container_memory_working_set_bytes{container!="",container!="POD",namespace="llm"}"#
        );
        assert_eq!(
            q.memory[1].query,
            r#"DCGM_FI_DEV_FB_USED{namespace="llm"} * 1048576"#
        );
        let q = Preset::Process.queries("");
        assert_eq!(q.memory[0].query, "process_resident_memory_bytes{}");
        assert_eq!(q.requests.as_deref(), Some("sglang:num_requests_total{}"));
    }
}
