//! The server's own accounting at idle (KV in use, requests running), as the engines report it:
//! the types every engine's reader returns. Each engine's file says where its accounting is
//! ([`Engine::idle_route`](super::Engine::idle_route), [`Engine::idle_from_metrics`](super::Engine::idle_from_metrics));
//! the tracker's `idle` probe asks them in [`ENGINES`](super::ENGINES)' order, and
//! `analysis::logical` judges what they read.

use serde::{Deserialize, Serialize};

use crate::util::{Invalid, Unit};

/// What an idle value must return to once the load is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Its value before the load (KV in use: a radix cache's evictable tokens are not counted).
    Baseline,
    /// Zero (requests running with none in flight).
    Zero,
}

/// One quantity of the server's accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleValue {
    /// `server.kv_tokens@idle`, `server.running_reqs@idle`, `server.kv_cache_usage@idle`,
    /// `server.requests_running@idle`.
    pub metric: String,
    /// `count` (tokens, requests) or `ratio` (vLLM's KV usage).
    pub unit: Unit,
    /// The value read.
    pub value: f64,
    /// What it is out of: the KV pool's tokens (SGLang) or blocks (vLLM), when the server says.
    #[serde(default)]
    pub capacity: Option<f64>,
    /// What it must return to.
    pub expect: Expect,
}

/// One reading of the server's accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleReading {
    /// `/v1/loads`, `/metrics (sglang)` or `/metrics (vllm)`.
    pub source: String,
    /// The quantities read.
    pub values: Vec<IdleValue>,
}

impl IdleReading {
    /// The value of `metric`.
    pub fn get(&self, metric: &str) -> Option<&IdleValue> {
        self.values.iter().find(|v| v.metric == metric)
    }
}

/// One quantity, as the engines' readers build them.
pub(crate) fn value(
    metric: &str,
    unit: Unit,
    value: f64,
    capacity: Option<f64>,
    expect: Expect,
) -> IdleValue {
    IdleValue {
        metric: metric.to_owned(),
        unit,
        value,
        capacity,
        expect,
    }
}

/// A JSON route that gives an engine's accounting (SGLang's `/v1/loads`), tried before
/// `/metrics`, and its reader.
#[derive(Debug, Clone, Copy)]
pub struct IdleRoute {
    /// The route, e.g. `/v1/loads`; also the readings' `source`.
    pub path: &'static str,
    /// Reads the body; `Err` says what is missing.
    pub parse: fn(&serde_json::Value) -> Result<IdleReading, Invalid>,
}

/// A `/metrics` page as an engine's accounting reader gets it.
pub struct MetricsPage<'a> {
    /// A gauge as the tracker records it (`server.num_used_tokens`: the engines' gauges, folded
    /// over label sets).
    pub gauge: &'a dyn Fn(&str) -> Option<f64>,
    /// The page, parsed (names with `:` written `_`); empty when it does not parse.
    pub scrape: &'a prometheus_parse::Scrape,
}
