//! The engines' log patterns as the fixture's watch applies them: every registered engine's,
//! then Python's (moved from `fixture/logwatch.rs` with the patterns).

mod log_watch {
    use crate::fixture::logwatch::*;
    use LogFinding::{KvPoolFull, Leak, OutOfMemory};
    use Needle::{Contains, Word};

    fn match_line(line: &str) -> Option<&'static LogPattern> {
        crate::fixture::logwatch::match_line(line, &crate::engine::log_patterns())
    }

    /// Lines as the engines print them (SGLang 0.5.23 / vLLM 0.32 sources and logs, PyTorch).
    #[test]
    fn real_lines_match_what_they_mean() {
        let cases: &[(&str, LogFinding, &str)] = &[
            (
                "ValueError: pool memory leak detected! [full] total=65536, available=65488, evictable=0, protected=0, session_held=0, uncached=0",
                Leak,
                "sglang: memory leak detected",
            ),
            (
                "[2026-12-01 14:02:11] pool memory leak detected! [full] total=65536, available=65520, evictable=0, protected=0, session_held=0, uncached=0",
                Leak,
                "sglang: memory leak detected",
            ),
            (
                "token_to_kv_pool_allocator memory leak detected! available_size=1000, max_total_num_tokens=1024",
                Leak,
                "sglang: memory leak detected",
            ),
            (
                "req_to_token_pool memory leak detected!available_size=4095, session_held=0, total_size=4096",
                Leak,
                "sglang: memory leak detected",
            ),
            (
                "AssertionError: Full Pool Mem Leak Detected! [full] total=65536, available=0",
                Leak,
                "sglang: mem leak detected",
            ),
            (
                "KV double free: sub-pool 0 has 3 duplicate pages.",
                Leak,
                "sglang: kv double free",
            ),
            (
                "[2026-12-01 14:02:11 TP0] KV cache pool is full. Retract requests. #retracted_reqs: 1, #new_tokens_gained: 412, #new_token_ratio: 0.7000 -> 1.0000",
                KvPoolFull,
                "sglang: kv cache pool is full",
            ),
            (
                "RuntimeError: Prefill out of memory. Try to lower your batch size.",
                OutOfMemory,
                "sglang: out of memory. try to lower your batch size",
            ),
            (
                "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
                OutOfMemory,
                "sglang: not enough memory. please try to increase --mem-fraction-static",
            ),
            (
                "(EngineCore_DP0 pid=27653) ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.",
                OutOfMemory,
                "vllm: no available memory for the cache blocks",
            ),
            (
                "ValueError: To serve at least one request with the model's max seq len (32768), (4.00 GiB KV cache is needed, which is larger than the available KV cache memory (1.00 GiB).",
                OutOfMemory,
                "vllm: larger than the available kv cache memory",
            ),
            (
                "WARNING 05-01 10:00:00 scheduler.py:1057] Sequence group 12 is preempted by PreemptionMode.RECOMPUTE mode because there is not enough KV cache space.",
                KvPoolFull,
                "vllm: not enough kv cache space",
            ),
            (
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total capacity of 79.19 GiB of which 3.06 MiB is free.",
                OutOfMemory,
                "python: cuda out of memory",
            ),
            (
                "RuntimeError: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to allocate 1099511627776 bytes.",
                OutOfMemory,
                "python: defaultcpuallocator: not enough memory",
            ),
            ("MemoryError", OutOfMemory, "python: memoryerror"),
            (
                "(Worker pid=7) MemoryError: Unable to allocate 8.00 GiB",
                OutOfMemory,
                "python: memoryerror",
            ),
        ];
        for (line, finding, pattern) in cases {
            let p = match_line(line).unwrap_or_else(|| panic!("no match: {line}"));
            let needle = match p.needle {
                Contains(n) | Word(n) => n,
            };
            assert_eq!(p.finding, *finding, "{line}");
            assert_eq!(&format!("{}: {needle}", p.engine), pattern, "{line}");
        }
    }

    /// What SGLang and vLLM print on a healthy run must not match (lines from real logs).
    #[test]
    fn healthy_lines_do_not_match() {
        for line in [
            "[2026-12-01 13:53:31] Decode batch, #running-req: 1, #token: 44, token usage: 0.00, cpu graph: False, gen throughput (token/s): 40.57, #queue-req: 0",
            "[2026-12-01 13:51:20] Load weight end. elapsed=0.05 s, type=LlamaForCausalLM, dtype=torch.bfloat16, avail mem=19.94 GB, mem usage=0.00 GB.",
            "[2026-12-01 13:51:21] KV Cache is allocated. #tokens: 65536, K size: 0.02 GB, V size: 0.02 GB",
            "[2026-12-01 13:51:21] Memory pool end. avail mem=19.90 GB",
            "Available memory 12GB is less than required memory 20GB for warmup, reducing max_m to 1024 to avoid out of memory",
            "(EngineCore_DP0 pid=27653) INFO 12-01 13:00:00 [gpu_worker.py:760] Available KV cache memory: 1.00 GiB",
            "(EngineCore_DP0 pid=27653) INFO 12-01 13:00:00 [kv_cache_utils.py:1200] CPU KV cache size: 2,097,152 tokens",
            "server_args=ServerArgs(model_path='tiny-llama', mem_fraction_static=0.7, enable_memory_saver=False)",
            "INFO:     127.0.0.1:35874 - \"POST /generate HTTP/1.1\" 200 OK",
            "class MemoryErrorHandler: pass",
        ] {
            assert!(match_line(line).is_none(), "false match: {line}");
        }
    }

    #[test]
    fn roles_come_from_prefixes_or_the_pattern() {
        assert_eq!(
            role_of("(EngineCore_DP0 pid=27653) ValueError: x").as_deref(),
            Some("EngineCore_DP0")
        );
        assert_eq!(
            role_of("(APIServer pid=1) ERROR x").as_deref(),
            Some("api_server")
        );
        assert_eq!(
            role_of("[2026-12-01 14:02:11 TP0] KV cache pool is full.").as_deref(),
            Some("scheduler_TP0")
        );
        assert_eq!(
            role_of("[2026-12-01 14:02:11 DP1 TP3] x").as_deref(),
            Some("scheduler_DP1_TP3")
        );
        assert_eq!(role_of("[2026-12-01 14:02:11] x"), None);
        assert_eq!(role_of("(not a prefix) x"), None);
        let mut w = LogWatch::new(crate::engine::log_patterns());
        w.observe(7, "[2026-12-01 14:02:11] pool memory leak detected! [full]");
        w.observe(8, "torch.OutOfMemoryError: CUDA out of memory.");
        let r = w.report();
        assert_eq!(r.matches[0].role.as_deref(), Some("scheduler"));
        assert_eq!(r.matches[0].line, 7);
        assert_eq!(r.matches[1].role, None);
    }

    /// README's copy of the table names every pattern, in order, and nothing else.
    #[test]
    fn readme_lists_every_pattern() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split_once("<!-- logwatch:begin -->")
            .and_then(|(_, rest)| rest.split_once("<!-- logwatch:end -->"))
            .map(|(t, _)| t)
            .expect("README has the logwatch table");
        let rows: Vec<(String, String)> = table
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let needle = cells.get(2)?.split('`').nth(1)?;
                Some((cells.get(1)?.to_string(), needle.to_owned()))
            })
            .collect();
        let ours: Vec<(String, String)> = crate::engine::log_patterns()
            .into_iter()
            .map(|p| {
                let (Contains(n) | Word(n)) = p.needle;
                (p.engine.to_owned(), n.to_owned())
            })
            .collect();
        assert_eq!(rows, ours, "update README's logwatch table");
    }

    #[test]
    fn quotes_are_capped_and_cut_but_every_match_is_counted() {
        let mut w = LogWatch::new(crate::engine::log_patterns());
        let long = format!("pool memory leak detected! {}", "é".repeat(5000));
        for i in 0..100 {
            w.observe(i + 2, &long);
            w.observe(i + 3, "an ordinary line");
        }
        let r = w.report();
        assert_eq!(r.lines, 200);
        assert_eq!(r.total_matches, 100);
        assert_eq!(r.matches.len(), MAX_QUOTES);
        assert!(r.matches[0].text.chars().count() <= MAX_QUOTE_CHARS + 1);
        assert!(r.matches[0].text.ends_with('…'));
    }
}

mod registry {
    use super::super::*;

    #[test]
    fn every_engine_is_found_by_its_name_and_names_are_unique() {
        for e in ENGINES {
            let found = engine(e.name()).expect("registered");
            assert_eq!(found.display_name(), e.display_name());
            assert_eq!(
                ENGINES.iter().filter(|o| o.name() == e.name()).count(),
                1,
                "{}",
                e.name()
            );
        }
        assert!(engine("no-such-engine").is_none());
    }

    #[test]
    fn each_engine_knows_its_own_processes() {
        let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        let by = |name: &str, s: &str| engine(name).and_then(|e| e.role(&Cmdline::new(&argv(s))));
        assert_eq!(
            by("sglang", "sglang::scheduler_TP1").as_deref(),
            Some("scheduler_TP1")
        );
        assert_eq!(by("vllm", "sglang::scheduler_TP1"), None);
        assert_eq!(
            by("vllm", "/v/bin/vllm serve m").as_deref(),
            Some("api_server")
        );
        assert_eq!(by("sglang", "/v/bin/vllm serve m"), None);
        assert_eq!(
            by("sglang", "/v/bin/sglang serve --model-path m").as_deref(),
            Some("tokenizer_manager")
        );
    }

    #[test]
    fn every_gauge_is_a_server_metric_recorded_once_per_engine() {
        for e in ENGINES {
            let mut seen = std::collections::BTreeSet::new();
            for g in e.gauges() {
                assert!(g.metric.starts_with("server."), "{}", g.metric);
                assert!(!g.prometheus.contains(':'), "{}", g.prometheus);
                assert!(seen.insert(g.prometheus), "{}", g.prometheus);
            }
        }
    }
}
