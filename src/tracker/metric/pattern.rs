//! [`MetricPattern`]: patterns over metric names, for thresholds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Metric, MetricParseError, Scope, Source, check_quantity, parse_scope, split_name};

/// Which scopes a [`MetricPattern`] matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ScopePattern {
    /// `@*`, or a pattern with no `@` after a `*` quantity: every scope.
    Any,
    /// Exactly this scope.
    Exact(Scope),
    /// `@pid:*`.
    AnyPid,
    /// `@dev:*`.
    AnyDev,
    /// `@rank:*`.
    AnyRank,
}

/// A pattern over metric names, for thresholds: `host.rss@tree`, `host.rss@pid:*`,
/// `gpu.*`, `gpu.proc@*`, `host.*@tree`. Parsing checks the source, the quantity and the
/// scope, so a typo (`gpu.proc@tre`) is an error instead of a rule that matches nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MetricPattern {
    text: String,
    source: Source,
    /// `None`: any quantity.
    quantity: Option<String>,
    scope: ScopePattern,
}

impl MetricPattern {
    /// Whether `metric` matches.
    pub fn matches(&self, metric: &Metric) -> bool {
        metric.source == self.source
            && self.quantity.as_ref().is_none_or(|q| *q == metric.quantity)
            && match &self.scope {
                ScopePattern::Any => true,
                ScopePattern::Exact(s) => *s == metric.scope,
                ScopePattern::AnyPid => matches!(metric.scope, Scope::Pid(_)),
                ScopePattern::AnyDev => matches!(metric.scope, Scope::Dev(_)),
                ScopePattern::AnyRank => matches!(metric.scope, Scope::Rank(_)),
            }
    }

    /// Whether the metric named `name` matches (a name that does not parse never does).
    pub fn matches_name(&self, name: &str) -> bool {
        name.parse().is_ok_and(|m| self.matches(&m))
    }

    /// The source the pattern is about.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for MetricPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for MetricPattern {
    type Err = MetricParseError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (source, quantity, scope) = split_name(text)?;
        let quantity = if quantity == "*" {
            None
        } else {
            check_quantity(source, quantity)?;
            Some(quantity.to_owned())
        };
        let scope = match scope {
            None if quantity.is_none() => ScopePattern::Any,
            Some("*") => ScopePattern::Any,
            Some("pid:*") => ScopePattern::AnyPid,
            Some("dev:*") => ScopePattern::AnyDev,
            Some("rank:*") => ScopePattern::AnyRank,
            other => ScopePattern::Exact(parse_scope(source, other)?),
        };
        Ok(Self {
            text: text.to_owned(),
            source,
            quantity,
            scope,
        })
    }
}

impl TryFrom<String> for MetricPattern {
    type Error = MetricParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MetricPattern> for String {
    fn from(p: MetricPattern) -> Self {
        p.text
    }
}
