//! Request kinds and the mix: which request of a run is which kind.
//!
//! Real leaks have mostly lived off the happy path (a request rejected before the scheduler, an
//! aborted one, a stream whose client went away), so a workload can mix kinds by weight
//! (`--mix stream=0.3,abort=0.1`; what is left is `plain`). Kinds come in **blocks** of a few
//! consecutive requests laid out by a fixed, evenly spread cycle: memory that grows only with
//! one kind then grows in steps that line up with that kind's blocks, which is what
//! [`by_kind`](crate::analysis::by_kind) reads to say which kind the growth follows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What one request does. The name (`--mix` key, report key) is the kebab-case form.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum RequestKind {
    /// The scenario's ordinary request (non-streaming, read to the end).
    #[default]
    Plain,
    /// `stream: true`, the server-sent events read to the end.
    Stream,
    /// A stream dropped by the client after two events (a user closing the tab).
    Disconnect,
    /// A streaming request aborted through SGLang's `/abort_request` by its `rid` once its first
    /// event came (a running request).
    Abort,
    /// A request aborted by `rid` right after it was sent, before any answer (queued or still in
    /// the tokenizer).
    AbortQueued,
    /// A streaming request ended by `/abort_request {"abort_all": true}` after its first event.
    AbortAll,
    /// A prompt twice as long as the context: the server must reject it (4xx).
    RejectLongPrompt,
    /// A short prompt asking for more new tokens than the context holds: must be rejected.
    RejectMaxTokens,
    /// An image that is not one (valid base64 of bytes no decoder reads): must be rejected.
    RejectBadImage,
    /// A sampling parameter no server knows: must be rejected.
    RejectUnknownParam,
    /// A prompt filling about half the context (succeeds).
    LongPrompt,
    /// Two completions of one prompt (`n: 2`).
    N,
    /// Log-probabilities with the top 5 alternatives of every token.
    Logprobs,
    /// A chat of four turns (system, user, assistant, user).
    MultiTurn,
    /// Three images in one request.
    MultiImage,
    /// One image whose size changes from request to request (64² to 800×600).
    MixedSizes,
}

impl RequestKind {
    /// Every kind, in the order reports list them.
    pub const ALL: [RequestKind; 16] = [
        RequestKind::Plain,
        RequestKind::Stream,
        RequestKind::Disconnect,
        RequestKind::Abort,
        RequestKind::AbortQueued,
        RequestKind::AbortAll,
        RequestKind::RejectLongPrompt,
        RequestKind::RejectMaxTokens,
        RequestKind::RejectBadImage,
        RequestKind::RejectUnknownParam,
        RequestKind::LongPrompt,
        RequestKind::N,
        RequestKind::Logprobs,
        RequestKind::MultiTurn,
        RequestKind::MultiImage,
        RequestKind::MixedSizes,
    ];

    /// The kebab-case name: `plain`, `stream`, `abort-queued`, `reject-long-prompt`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Plain => "plain",
            RequestKind::Stream => "stream",
            RequestKind::Disconnect => "disconnect",
            RequestKind::Abort => "abort",
            RequestKind::AbortQueued => "abort-queued",
            RequestKind::AbortAll => "abort-all",
            RequestKind::RejectLongPrompt => "reject-long-prompt",
            RequestKind::RejectMaxTokens => "reject-max-tokens",
            RequestKind::RejectBadImage => "reject-bad-image",
            RequestKind::RejectUnknownParam => "reject-unknown-param",
            RequestKind::LongPrompt => "long-prompt",
            RequestKind::N => "n",
            RequestKind::Logprobs => "logprobs",
            RequestKind::MultiTurn => "multi-turn",
            RequestKind::MultiImage => "multi-image",
            RequestKind::MixedSizes => "mixed-sizes",
        }
    }

    /// Requests the server must refuse (their 4xx is the expected answer).
    pub fn is_rejection(self) -> bool {
        matches!(
            self,
            RequestKind::RejectLongPrompt
                | RequestKind::RejectMaxTokens
                | RequestKind::RejectBadImage
                | RequestKind::RejectUnknownParam
        )
    }

    /// Requests ended through `/abort_request` (SGLang's; the reference server has it too).
    pub fn is_abort(self) -> bool {
        matches!(
            self,
            RequestKind::Abort | RequestKind::AbortQueued | RequestKind::AbortAll
        )
    }

    /// Kinds whose body depends on the model's context length.
    pub fn needs_context_length(self) -> bool {
        matches!(
            self,
            RequestKind::RejectLongPrompt | RequestKind::RejectMaxTokens | RequestKind::LongPrompt
        )
    }

    /// Kinds that send images, so only an image scenario (`vlm-image`) can carry them.
    pub fn needs_images(self) -> bool {
        matches!(self, RequestKind::MultiImage | RequestKind::MixedSizes)
    }

    /// Kinds that need a VLM (an image reaches the processor), `vlm-text` included.
    pub fn needs_vlm(self) -> bool {
        self.needs_images() || self == RequestKind::RejectBadImage
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestKind {
    type Err = crate::util::Invalid;

    fn from_str(s: &str) -> Result<Self, crate::util::Invalid> {
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        RequestKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                crate::util::Invalid(format!(
                    "unknown request kind {s:?}: use one of {}",
                    RequestKind::ALL.map(RequestKind::as_str).join(", ")
                ))
            })
    }
}

/// Blocks in one cycle of the mix: weights are kept to a hundredth.
const CYCLE_BLOCKS: usize = 100;
/// Requests per block unless the concurrency asks for more.
pub const DEFAULT_BLOCK: u32 = 5;

/// Which kinds a run sends and how often, by weight; `plain` takes what the others leave.
///
/// Requests come in blocks of [`block`](Self::block) consecutive requests of one kind, laid out
/// by a fixed cycle of 100 blocks in which every kind has its weight's share, spread evenly
/// (smooth weighted round robin). The same mix always gives the same sequence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "MixRepr", into = "MixRepr")]
pub struct Mix {
    /// Kinds and their weights (summing to 1), in the order given, `plain` last if it has a
    /// share.
    pub weights: Vec<(RequestKind, f64)>,
    /// Consecutive requests of one kind.
    pub block: u32,
    cycle: Vec<RequestKind>,
}

impl PartialEq for Mix {
    fn eq(&self, other: &Self) -> bool {
        self.weights == other.weights && self.block == other.block
    }
}

/// A mix as reports hold it: `{"weights": [["stream", 0.3], …], "block": 5}`.
#[derive(Serialize, Deserialize)]
struct MixRepr {
    weights: Vec<(RequestKind, f64)>,
    block: u32,
}

impl From<MixRepr> for Mix {
    fn from(r: MixRepr) -> Self {
        Self {
            cycle: cycle(&r.weights),
            weights: r.weights,
            block: r.block.max(1),
        }
    }
}

impl From<Mix> for MixRepr {
    fn from(m: Mix) -> Self {
        Self {
            weights: m.weights,
            block: m.block,
        }
    }
}

impl Default for Mix {
    fn default() -> Self {
        Self::plain()
    }
}

impl Mix {
    /// Every request `plain`: the scenarios' default.
    pub fn plain() -> Self {
        Self::new(vec![(RequestKind::Plain, 1.0)]).unwrap_or_else(|_| unreachable!())
    }

    /// One kind for every request.
    pub fn only(kind: RequestKind) -> Self {
        Self::new(vec![(kind, 1.0)]).unwrap_or_else(|_| unreachable!())
    }

    /// The mix of the `error_paths` scenario: every error path a text request can reach,
    /// beside plain requests.
    pub fn error_paths() -> Self {
        Self::new(vec![
            (RequestKind::Stream, 0.15),
            (RequestKind::Disconnect, 0.1),
            (RequestKind::Abort, 0.1),
            (RequestKind::AbortQueued, 0.1),
            (RequestKind::RejectLongPrompt, 0.1),
            (RequestKind::RejectMaxTokens, 0.1),
            (RequestKind::RejectUnknownParam, 0.1),
        ])
        .unwrap_or_else(|_| unreachable!())
    }

    /// A mix of `weights`; `plain` gets what they leave (if anything).
    ///
    /// # Errors
    /// A weight outside (0, 1], below a hundredth, a kind given twice, or weights summing past 1.
    pub fn new(mut weights: Vec<(RequestKind, f64)>) -> Result<Self, crate::util::Invalid> {
        let mut seen = std::collections::BTreeSet::new();
        for &(kind, w) in &weights {
            if !seen.insert(kind) {
                return Err(crate::util::Invalid(format!("{kind} is given twice")));
            }
            if !(w.is_finite() && w > 0.0 && w <= 1.0) {
                return Err(crate::util::Invalid(format!(
                    "the weight of {kind} must be in (0, 1], got {w}"
                )));
            }
            if w < 0.01 - 1e-9 {
                return Err(crate::util::Invalid(format!(
                    "the weight of {kind} is {w}: weights are kept to a hundredth, use 0.01 at least"
                )));
            }
        }
        let sum: f64 = weights.iter().map(|(_, w)| w).sum();
        if sum > 1.0 + 1e-6 {
            return Err(crate::util::Invalid(format!(
                "the weights sum to {sum:.3}, past 1 (plain takes what the others leave)"
            )));
        }
        let rest = 1.0 - sum;
        if rest > 0.005 && !seen.contains(&RequestKind::Plain) {
            weights.push((RequestKind::Plain, rest));
        }
        let cycle = cycle(&weights);
        Ok(Self {
            weights,
            block: DEFAULT_BLOCK,
            cycle,
        })
    }

    /// The same mix with blocks of `block` requests (at least 1).
    #[must_use]
    pub fn with_block(mut self, block: u32) -> Self {
        self.block = block.max(1);
        self
    }

    /// Whether more than one kind is sent.
    pub fn is_mixed(&self) -> bool {
        self.weights.len() > 1
    }

    /// The kinds sent, in the order of [`weights`](Self::weights).
    pub fn kinds(&self) -> impl Iterator<Item = RequestKind> + '_ {
        self.weights.iter().map(|(k, _)| *k)
    }

    /// The kind of request `index` (counted over the whole run).
    pub fn kind_of(&self, index: u64) -> RequestKind {
        let block = index / u64::from(self.block.max(1));
        self.cycle[(block % self.cycle.len() as u64) as usize]
    }

    /// The kind of warm-up request `index`: every kind in turn, so a warm-up of at least
    /// [`weights`](Self::weights)`.len()` requests sends each once before the measurement.
    pub fn warmup_kind(&self, index: u64) -> RequestKind {
        let n = self.weights.len().max(1) as u64;
        self.weights
            .get((index % n) as usize)
            .map_or(RequestKind::Plain, |(k, _)| *k)
    }

    /// The mix as `--mix` takes it: `stream=0.3,abort=0.1,plain=0.6`.
    pub fn spec(&self) -> String {
        self.weights
            .iter()
            .map(|(k, w)| format!("{k}={}", (w * 100.0).round() / 100.0))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl FromStr for Mix {
    type Err = crate::util::Invalid;

    /// `kind=weight,...`, a single kind (`stream`: every request), or `error-paths`.
    fn from_str(s: &str) -> Result<Self, crate::util::Invalid> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("error-paths") || s.eq_ignore_ascii_case("error_paths") {
            return Ok(Self::error_paths());
        }
        if s.is_empty() {
            return Err(crate::util::Invalid::from(
                "kind=weight pairs separated by commas, e.g. stream=0.3,abort=0.1",
            ));
        }
        let mut weights = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, w) = match part.split_once('=') {
                Some((k, w)) => {
                    let w: f64 = w.trim().parse().map_err(|_| {
                        crate::util::Invalid(format!(
                            "the weight of {} must be a number, got {w:?}",
                            k.trim()
                        ))
                    })?;
                    (k.parse::<RequestKind>()?, w)
                }
                None => (part.parse::<RequestKind>()?, 1.0),
            };
            weights.push((kind, w));
        }
        Self::new(weights)
    }
}

/// A cycle of [`CYCLE_BLOCKS`] blocks, each kind in proportion to its weight and spread evenly
/// (smooth weighted round robin, as nginx balances upstreams).
fn cycle(weights: &[(RequestKind, f64)]) -> Vec<RequestKind> {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    if weights.is_empty() || total <= 0.0 {
        return vec![RequestKind::Plain];
    }
    let mut current = vec![0.0; weights.len()];
    (0..CYCLE_BLOCKS)
        .map(|_| {
            for (c, (_, w)) in current.iter_mut().zip(weights) {
                *c += w;
            }
            let (best, _) = current
                .iter()
                .enumerate()
                .fold(
                    (0, f64::MIN),
                    |(bi, bv), (i, &v)| {
                        if v > bv { (i, v) } else { (bi, bv) }
                    },
                );
            current[best] -= total;
            weights[best].0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in RequestKind::ALL {
            assert_eq!(k.as_str().parse::<RequestKind>(), Ok(k));
            let json = serde_json::to_string(&k).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!("abort_queued".parse(), Ok(RequestKind::AbortQueued));
        let err = "abortt".parse::<RequestKind>().unwrap_err();
        assert!(err.0.contains("abort-queued"), "{err}");
    }

    #[test]
    fn plain_takes_the_rest_and_shares_are_exact() {
        let mix: Mix = "stream=0.3,abort=0.1".parse().unwrap_or_default();
        assert_eq!(mix.spec(), "stream=0.3,abort=0.1,plain=0.6");
        let n = 100 * u64::from(mix.block);
        let count = |kind| (0..n).filter(|&i| mix.kind_of(i) == kind).count() as u64;
        assert_eq!(count(RequestKind::Stream), n * 3 / 10);
        assert_eq!(count(RequestKind::Abort), n / 10);
        assert_eq!(count(RequestKind::Plain), n * 6 / 10);
        // Blocks: the first `block` requests share a kind.
        let first = mix.kind_of(0);
        assert!((0..u64::from(mix.block)).all(|i| mix.kind_of(i) == first));
    }

    #[test]
    fn kinds_are_spread_through_the_cycle() {
        let mix: Mix = "abort=0.1".parse().unwrap_or_default();
        let blocks: Vec<u64> = (0..100)
            .filter(|&b| mix.kind_of(b * u64::from(mix.block)) == RequestKind::Abort)
            .collect();
        assert_eq!(blocks.len(), 10);
        // Evenly: one abort block in every ten.
        assert!(blocks.windows(2).all(|w| w[1] - w[0] == 10), "{blocks:?}");
    }

    #[test]
    fn bad_mixes_say_what_is_wrong() {
        for (spec, want) in [
            ("stream=0.7,abort=0.5", "past 1"),
            ("stream=0", "(0, 1]"),
            ("stream=x", "must be a number"),
            ("stream=0.3,stream=0.1", "twice"),
            ("streamm=0.3", "unknown request kind"),
            ("stream=0.001", "hundredth"),
            ("", "kind=weight"),
        ] {
            let err = spec.parse::<Mix>().unwrap_err();
            assert!(err.0.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn single_kinds_and_presets() {
        let only: Mix = "stream".parse().unwrap_or_default();
        assert!(!only.is_mixed());
        assert_eq!(only.kind_of(17), RequestKind::Stream);
        assert!(Mix::error_paths().is_mixed());
        assert_eq!("error-paths".parse::<Mix>(), Ok(Mix::error_paths()));
        assert!(!Mix::plain().is_mixed());
    }

    #[test]
    fn deserialized_mixes_restore_their_cycle() {
        let mix: Mix = "stream=0.5".parse().unwrap_or_default();
        let json = serde_json::to_string(&mix).unwrap_or_default();
        let back: Mix = serde_json::from_str(&json).unwrap_or_default();
        assert_eq!(back, mix);
        assert!((0..1000).all(|i| back.kind_of(i) == mix.kind_of(i)));
    }
}
