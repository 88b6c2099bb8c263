//! The reference server's knobs (`serve-reference --...`) and their validation.

use std::path::Path;

use super::ReferenceError;

/// The knobs of `sglang-memtest serve-reference`: where to listen and which leaks to plant.
///
/// Byte counts are plain `u64` bytes. `Default` equals the command-line defaults.
#[derive(Debug, Clone, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ReferenceArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on; 0 picks a free port (the `listening on` line on stdout names it).
    #[arg(long, default_value_t = 30000)]
    pub port: u16,
    /// Bytes every /generate or /v1/chat/completions request allocates, writes and keeps forever.
    #[arg(long, default_value_t = 0)]
    pub leak_bytes_per_request: u64,
    /// Bytes every request adds to a bounded cache (needs --cache-cap-bytes).
    #[arg(long, default_value_t = 0)]
    pub cache_bytes_per_request: u64,
    /// Size at which the bounded cache evicts its oldest entries (memory plateaus there).
    #[arg(long, default_value_t = 0)]
    pub cache_cap_bytes: u64,
    /// Per-request scratch memory: each request replaces the block the previous one held with
    /// a new one of 0..=N bytes (seeded, reproducible): memory that jumps around but does not
    /// grow, noisy enough to leave a short run undecided.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub jitter_bytes: u64,
    /// A collector's sawtooth: every request adds N bytes of garbage that stays until the
    /// garbage is freed all at once, every --sawtooth-period requests (±25 %, seeded); each
    /// trough keeps a fresh block of up to N × period / 4 bytes (allocator jitter). /flush_cache
    /// frees the garbage too (a collection at idle). Not a leak.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub sawtooth_bytes_per_request: u64,
    /// Requests between two collections of the sawtooth's garbage (on average).
    #[arg(long, value_name = "REQUESTS", default_value_t = 20)]
    pub sawtooth_period: u64,
    /// Bytes allocated once, at the first request, and kept (a warm-up step, not a leak).
    #[arg(long, default_value_t = 0)]
    pub warmup_step_bytes: u64,
    /// Child processes mimicking SGLang's tree: `sglang::scheduler` (`sglang::scheduler_TP{i}`
    /// with several), and with two or more the last is `sglang::detokenizer`.
    #[arg(long, default_value_t = 0)]
    pub children: usize,
    /// Make child INDEX (default 0) hold the per-request, per-image and GPU leaks.
    #[arg(long, value_name = "INDEX", num_args = 0..=1, default_missing_value = "0")]
    pub leak_in_child: Option<usize>,
    /// Milliseconds to sleep before binding the port (like loading weights).
    #[arg(long, default_value_t = 0)]
    pub startup_delay_ms: u64,
    /// Bytes allocated, written and kept every second whatever the traffic (a timer or a
    /// metrics collector that leaks: visible in an idle phase, invisible per request).
    #[arg(long, default_value_t = 0)]
    pub leak_bytes_per_second: u64,
    /// Exit with status 1 at generate request N+1 (after N successful ones).
    #[arg(long, value_name = "N")]
    pub crash_after: Option<u64>,
    /// Fraction (0..=1) of generate requests answered with HTTP 500; deterministic (ChaCha8,
    /// seed 0).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Serve Prometheus metrics at /metrics (404 without it, as in SGLang).
    #[arg(long)]
    pub enable_metrics: bool,
    /// Bytes leaked for every image that is processed (decoded); cache hits leak nothing.
    #[arg(long, default_value_t = 0)]
    pub leak_bytes_per_image: u64,
    /// Bytes leaked per decoded pixel (width × height) of every processed image: a leak that
    /// grows with image size (`sweep --knob image_size` fits it); cache hits leak nothing.
    #[arg(long, default_value_t = 0)]
    pub leak_bytes_per_pixel: u64,
    /// Run the children as Python processes of this interpreter (default python3) speaking the
    /// same protocol, so a stack tool (py-spy) can read them; they hold host leaks only.
    #[arg(long, value_name = "PYTHON", num_args = 0..=1, default_missing_value = "python3")]
    pub python_children: Option<String>,
    /// Capacity of the decoded-image cache (LRU, keyed by the encoded bytes); 0 = no cache.
    #[arg(long, default_value_t = 0)]
    pub mm_cache_cap_bytes: u64,
    /// Bytes of a new, never-removed `/dev/shm/sgl_shm_reference_<pid>_<seq>` file per request.
    #[arg(long, default_value_t = 0)]
    pub shm_leak_bytes_per_request: u64,
    /// Apparent size of one sparse `/dev/shm/psm_reference_<pid>` segment made at startup
    /// (4 KiB written; removed on clean shutdown); 0 = none.
    #[arg(long, default_value_t = 0)]
    pub shm_segment_bytes: u64,
    /// GPU bytes allocated, set and kept per request (needs the `cuda` build feature).
    #[arg(long, default_value_t = 0)]
    pub gpu_leak_bytes_per_request: u64,
    /// GPU bytes allocated, set and freed per request: clean (needs the `cuda` build feature).
    #[arg(long, default_value_t = 0)]
    pub gpu_alloc_bytes_per_request: u64,
    /// KV tokens every finished request leaves marked as used (a logical leak: /v1/loads and
    /// /metrics `num_used_tokens` stay above idle, memory stays flat).
    #[arg(long, default_value_t = 0)]
    pub leak_kv_tokens_per_request: u64,
    /// Do not serve `/v1/loads` (as SGLang builds before it had the route).
    #[arg(long)]
    pub no_loads_endpoint: bool,
    /// A line printed once on stderr (into the server's log) after request --log-line-after,
    /// e.g. an engine's memory-check message.
    #[arg(long, value_name = "TEXT")]
    pub log_line: Option<String>,
    /// After how many finished generate requests --log-line is printed (0: at startup; default 1).
    #[arg(long, value_name = "N", requires = "log_line")]
    pub log_line_after: Option<u64>,
    /// The model's context length in tokens (words here): longer prompts, and prompts whose
    /// new tokens would not fit, are refused with HTTP 400 as SGLang refuses them.
    #[arg(long, value_name = "TOKENS", default_value_t = 4096)]
    pub context_length: u64,
    /// Microseconds per generated token (streams send one event per token; an abort or a
    /// disconnect lands between tokens).
    #[arg(long, value_name = "US", default_value_t = 100)]
    pub token_delay_us: u64,
    /// Bytes kept for every request refused with HTTP 400 (state kept by a request that failed
    /// validation before it reached the scheduler).
    #[arg(long, default_value_t = 0)]
    pub leak_bytes_per_rejected: u64,
    /// Bytes kept for every request ended by /abort_request.
    #[arg(long, default_value_t = 0)]
    pub leak_bytes_per_abort: u64,
    /// Bytes kept for every stream whose client went away before its end.
    #[arg(long, default_value_t = 0)]
    pub leak_bytes_per_disconnect: u64,
    /// Bytes kept for every stream read to its end.
    #[arg(long, default_value_t = 0)]
    pub leak_bytes_per_stream: u64,
    /// The HTTP status /health and /health_generate answer (e.g. 503: a server that never gets
    /// ready; 500: a health check that fails forever).
    #[arg(long, value_name = "CODE", default_value_t = 200,
          value_parser = clap::value_parser!(u16).range(100..=599))]
    pub health_status: u16,
    /// What the generate routes answer: their JSON, or a 200 with malformed JSON or an empty
    /// body (a broken server that must not pass as a clean one).
    #[arg(long, value_enum, default_value_t = super::faults::Answer::Normal)]
    pub answer: super::faults::Answer,
    /// Refuse every request but /health and /metrics without `Authorization: Bearer KEY`
    /// (HTTP 401), as SGLang's --api-key does. Never shown by /get_server_info.
    #[arg(long, value_name = "KEY")]
    #[serde(skip_serializing)]
    pub api_key: Option<String>,
    /// Milliseconds every generate request waits before it is answered (request timeouts).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub request_delay_ms: u64,
    /// Start a process that leaves the server's process group and loses its parent (`setsid`
    /// and a double fork, as a daemonizing helper does): teardown must still find and stop it.
    #[arg(long)]
    pub escape_child: bool,
}

impl Default for ReferenceArgs {
    fn default() -> Self {
        // Must match the clap defaults above; `default_equals_clap_defaults` checks it.
        Self {
            host: "127.0.0.1".to_owned(),
            port: 30000,
            leak_bytes_per_request: 0,
            cache_bytes_per_request: 0,
            cache_cap_bytes: 0,
            jitter_bytes: 0,
            sawtooth_bytes_per_request: 0,
            sawtooth_period: 20,
            warmup_step_bytes: 0,
            children: 0,
            leak_in_child: None,
            startup_delay_ms: 0,
            leak_bytes_per_second: 0,
            crash_after: None,
            error_rate: 0.0,
            enable_metrics: false,
            leak_bytes_per_image: 0,
            leak_bytes_per_pixel: 0,
            python_children: None,
            mm_cache_cap_bytes: 0,
            shm_leak_bytes_per_request: 0,
            shm_segment_bytes: 0,
            gpu_leak_bytes_per_request: 0,
            gpu_alloc_bytes_per_request: 0,
            leak_kv_tokens_per_request: 0,
            no_loads_endpoint: false,
            log_line: None,
            log_line_after: None,
            context_length: 4096,
            token_delay_us: 100,
            leak_bytes_per_rejected: 0,
            leak_bytes_per_abort: 0,
            leak_bytes_per_disconnect: 0,
            leak_bytes_per_stream: 0,
            health_status: 200,
            answer: super::faults::Answer::Normal,
            api_key: None,
            request_delay_ms: 0,
            escape_child: false,
        }
    }
}

/// Most children a reference server may start: far above SGLang's tree, low enough that a typo
/// cannot fork-bomb the machine.
pub(crate) const MAX_CHILDREN: usize = 64;

impl ReferenceArgs {
    /// True when any GPU knob is set.
    pub(crate) fn wants_gpu(&self) -> bool {
        self.gpu_leak_bytes_per_request > 0 || self.gpu_alloc_bytes_per_request > 0
    }

    /// Checks every knob before anything is bound or spawned.
    pub(crate) fn validate(&self) -> Result<(), ReferenceError> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(ReferenceError::ErrorRateOutOfRange {
                rate: self.error_rate,
            });
        }
        if self.children > MAX_CHILDREN {
            return Err(ReferenceError::TooManyChildren {
                children: self.children,
                max: MAX_CHILDREN,
            });
        }
        if self.python_children.is_some() && self.children == 0 {
            return Err(ReferenceError::PythonChildrenWithoutChildren);
        }
        if self.python_children.is_some() && self.wants_gpu() {
            return Err(ReferenceError::PythonChildGpu);
        }
        if let Some(index) = self.leak_in_child {
            if self.children == 0 {
                return Err(ReferenceError::LeakInChildWithoutChildren);
            }
            if index >= self.children {
                return Err(ReferenceError::LeakChildOutOfRange {
                    index,
                    children: self.children,
                });
            }
        }
        if self.sawtooth_bytes_per_request > 0 && self.sawtooth_period < 2 {
            return Err(ReferenceError::SawtoothPeriodTooShort {
                period: self.sawtooth_period,
            });
        }
        match (self.cache_bytes_per_request, self.cache_cap_bytes) {
            (0, 0) => {}
            (0, _) => return Err(ReferenceError::CacheCapWithoutBytes),
            (_, 0) => return Err(ReferenceError::CacheBytesWithoutCap),
            (per_request, cap) if per_request > cap => {
                return Err(ReferenceError::CacheEntryOverCap { per_request, cap });
            }
            _ => {}
        }
        if self.shm_leak_bytes_per_request > 0 || self.shm_segment_bytes > 0 {
            let shm = Path::new(super::shm::SHM_DIR);
            if !shm.is_dir() {
                return Err(ReferenceError::NoShm {
                    path: shm.to_path_buf(),
                });
            }
        }
        if let Some(line) = &self.log_line {
            if line.trim().is_empty() || line.contains('\n') {
                return Err(ReferenceError::BadLogLine);
            }
        } else if self.log_line_after.is_some() {
            return Err(ReferenceError::LogLineAfterWithoutLine);
        }
        if self.context_length == 0 {
            return Err(ReferenceError::ZeroContextLength);
        }
        if let Some(key) = &self.api_key
            && (key.is_empty() || key.chars().any(char::is_whitespace))
        {
            return Err(ReferenceError::BadApiKey);
        }
        if self.wants_gpu() {
            super::gpu::check_driver()?;
        }
        Ok(())
    }
}

/// Arguments of the hidden `reference-child` subcommand (set by the parent, not by people).
#[derive(Debug, Clone, clap::Args)]
pub struct ChildArgs {
    /// Position of this child in the parent's list.
    #[arg(long)]
    pub index: usize,
    /// Process title (`comm`, truncated to 15 bytes), e.g. `sglang::scheduler_TP0`.
    #[arg(long)]
    pub title: String,
    /// Pid of the reference server that spawned this child; the child exits if it is gone.
    #[arg(long)]
    pub parent_pid: i32,
    /// Create the CUDA context at startup (this child holds the GPU leaks).
    #[arg(long)]
    pub init_gpu: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReferenceArgs,
    }

    fn parse(argv: &[&str]) -> ReferenceArgs {
        let full = std::iter::once("x").chain(argv.iter().copied());
        match Cli::try_parse_from(full) {
            Ok(cli) => cli.args,
            Err(e) => panic!("parse {argv:?}: {e}"),
        }
    }

    #[test]
    fn default_equals_clap_defaults() {
        let parsed = serde_json::to_value(parse(&[])).expect("serialize");
        let default = serde_json::to_value(ReferenceArgs::default()).expect("serialize");
        assert_eq!(parsed, default);
    }

    #[test]
    fn leak_in_child_takes_an_optional_index() {
        assert_eq!(parse(&["--leak-in-child"]).leak_in_child, Some(0));
        assert_eq!(parse(&["--leak-in-child=1"]).leak_in_child, Some(1));
        assert_eq!(
            parse(&["--leak-in-child", "--children", "2"]).leak_in_child,
            Some(0)
        );
        assert_eq!(parse(&[]).leak_in_child, None);
    }

    #[test]
    fn validation_refuses_bad_combinations() {
        let ok = |a: &ReferenceArgs| a.validate().is_ok();
        let base = ReferenceArgs::default();
        assert!(ok(&base));
        let bad_rate = ReferenceArgs {
            error_rate: 1.5,
            ..base.clone()
        };
        assert!(matches!(
            bad_rate.validate(),
            Err(ReferenceError::ErrorRateOutOfRange { .. })
        ));
        let lonely = ReferenceArgs {
            leak_in_child: Some(0),
            ..base.clone()
        };
        assert!(matches!(
            lonely.validate(),
            Err(ReferenceError::LeakInChildWithoutChildren)
        ));
        let python_alone = ReferenceArgs {
            python_children: Some("python3".into()),
            ..base.clone()
        };
        assert!(matches!(
            python_alone.validate(),
            Err(ReferenceError::PythonChildrenWithoutChildren)
        ));
        let python_gpu = ReferenceArgs {
            python_children: Some("python3".into()),
            children: 1,
            gpu_leak_bytes_per_request: 1,
            ..base.clone()
        };
        assert!(matches!(
            python_gpu.validate(),
            Err(ReferenceError::PythonChildGpu)
        ));
        let far = ReferenceArgs {
            leak_in_child: Some(2),
            children: 2,
            ..base.clone()
        };
        assert!(matches!(
            far.validate(),
            Err(ReferenceError::LeakChildOutOfRange { .. })
        ));
        let uncapped = ReferenceArgs {
            cache_bytes_per_request: 10,
            ..base.clone()
        };
        assert!(matches!(
            uncapped.validate(),
            Err(ReferenceError::CacheBytesWithoutCap)
        ));
        let over = ReferenceArgs {
            cache_bytes_per_request: 10,
            cache_cap_bytes: 5,
            ..base.clone()
        };
        assert!(matches!(
            over.validate(),
            Err(ReferenceError::CacheEntryOverCap { .. })
        ));
        let capped = ReferenceArgs {
            cache_bytes_per_request: 5,
            cache_cap_bytes: 10,
            ..base
        };
        assert!(ok(&capped));
    }

    #[test]
    fn log_line_knobs_are_checked() {
        let p = parse(&[
            "--log-line",
            "pool memory leak detected!",
            "--log-line-after",
            "3",
        ]);
        assert_eq!(p.log_line.as_deref(), Some("pool memory leak detected!"));
        assert_eq!(p.log_line_after, Some(3));
        assert!(p.validate().is_ok());
        let full = std::iter::once("x").chain(["--log-line-after", "3"]);
        assert!(
            Cli::try_parse_from(full).is_err(),
            "--log-line-after needs --log-line"
        );
        let lonely = ReferenceArgs {
            log_line_after: Some(1),
            ..ReferenceArgs::default()
        };
        assert!(matches!(
            lonely.validate(),
            Err(ReferenceError::LogLineAfterWithoutLine)
        ));
        for bad in ["", "  ", "two\nlines"] {
            let a = ReferenceArgs {
                log_line: Some(bad.into()),
                ..ReferenceArgs::default()
            };
            assert!(
                matches!(a.validate(), Err(ReferenceError::BadLogLine)),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(&["--leak-kv-tokens-per-request", "8"]).leak_kv_tokens_per_request,
            8
        );
    }

    #[test]
    fn fault_knobs_parse_and_are_checked() {
        let p = parse(&[
            "--health-status",
            "503",
            "--answer",
            "malformed-json",
            "--api-key",
            "s3cret",
            "--request-delay-ms",
            "50",
            "--escape-child",
        ]);
        assert_eq!(p.health_status, 503);
        assert_eq!(p.answer, super::super::faults::Answer::MalformedJson);
        assert_eq!(p.api_key.as_deref(), Some("s3cret"));
        assert!(p.escape_child && p.request_delay_ms == 50);
        assert!(p.validate().is_ok());
        // The key never leaves the process through /get_server_info.
        let shown = serde_json::to_string(&p).expect("serialize");
        assert!(!shown.contains("s3cret"), "{shown}");
        for bad in ["99", "600", "abc"] {
            let full = std::iter::once("x").chain(["--health-status", bad]);
            assert!(Cli::try_parse_from(full).is_err(), "{bad}");
        }
        for bad in ["", "two words"] {
            let a = ReferenceArgs {
                api_key: Some(bad.into()),
                ..ReferenceArgs::default()
            };
            assert!(
                matches!(a.validate(), Err(ReferenceError::BadApiKey)),
                "{bad:?}"
            );
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn gpu_knobs_need_the_cuda_feature() {
        let gpu = ReferenceArgs {
            gpu_leak_bytes_per_request: 1,
            ..ReferenceArgs::default()
        };
        let err = gpu.validate().expect_err("refused");
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }
}
