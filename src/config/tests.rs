//! The configuration model: layering order, bounds named as written, conflicts.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn reference() -> ScenarioConfig {
    ScenarioConfig::text_model().set(
        "reference_bin",
        std::env::current_exe()
            .unwrap_or_default()
            .display()
            .to_string(),
    )
}

#[test]
fn presets_have_the_seed_tool_defaults() {
    let s = ScenarioConfig::vlm_image().build().expect("builds");
    assert_eq!(s.driver.num_requests, 50);
    assert_eq!(s.driver.interval, Duration::from_millis(200));
    assert!(
        s.target
            .engine()
            .is_some_and(|e| e.engine().name() == "sglang")
    );
    assert_eq!(s.tracker.gpu, GpuMode::Required);
    let t = ScenarioConfig::text_model().build().expect("builds");
    assert_eq!(t.driver.num_requests, 100);
    let Some(server) = t.target.engine().filter(|e| e.engine().name() == "sglang") else {
        panic!("not SGLang")
    };
    assert_eq!(server.model_path, DEFAULT_TEXT_MODEL);
}

#[test]
fn the_environment_beats_what_came_before_and_loses_to_what_comes_after() {
    let vars = env(&[
        ("MEMTEST_NUM_REQUESTS", "300"),
        ("MEMTEST_CONCURRENCY", "4"),
    ]);
    let s = ScenarioConfig::text_model()
        .requests(10)
        .env_overrides_from(&vars)
        .expect("valid")
        .concurrency(2)
        .build()
        .expect("builds");
    assert_eq!(s.driver.num_requests, 300);
    assert_eq!(s.driver.concurrency, 2);
}

#[test]
fn bad_values_name_the_setting_as_written_and_the_range() {
    let e = ScenarioConfig::text_model()
        .env_overrides_from(env(&[("MEMTEST_NUM_REQUESTS", "2")]))
        .expect_err("out of range");
    assert_eq!(e.knob(), Some("num_requests"));
    let text = e.to_string();
    assert!(text.contains("MEMTEST_NUM_REQUESTS=\"2\""), "{text}");
    assert!(text.contains("from 3 to"), "{text}");
    let e = ScenarioConfig::text_model()
        .concurrency(0)
        .build()
        .expect_err("zero concurrency");
    assert!(matches!(e, ConfigError::Invalid { ref setting, .. } if setting.knob == "concurrency"));
    assert!(e.to_string().contains("(set in code)"), "{e}");
    let e = ScenarioConfig::vlm_image()
        .set("image_size", "8x8")
        .build()
        .expect_err("image too small");
    assert!(e.to_string().contains("from 16 to 8192"), "{e}");
    let e = ScenarioConfig::text_model()
        .set("max_slope", "gpu.proc@tre=1MiB")
        .build()
        .expect_err("a typo in a metric pattern");
    assert!(e.to_string().contains("tre"), "{e}");
    assert!(matches!(
        ScenarioConfig::text_model().set("num_reqests", "1").build(),
        Err(ConfigError::UnknownKnob(_))
    ));
}

#[test]
fn choosing_two_servers_in_one_layer_is_an_error_a_later_layer_wins() {
    let e = ScenarioConfig::text_model()
        .env_overrides_from(env(&[
            ("MEMTEST_BASE_URL", "http://127.0.0.1:30000"),
            ("MEMTEST_SERVER_CMD", "python3 srv.py"),
        ]))
        .expect("each valid")
        .build()
        .expect_err("two servers");
    assert!(matches!(e, ConfigError::ConflictingTargets { .. }), "{e}");
    // Attaching and naming the attached server's model agree.
    let s = ScenarioConfig::text_model()
        .env_overrides_from(env(&[
            ("MEMTEST_BASE_URL", "http://127.0.0.1:30000/"),
            ("MEMTEST_TEXT_MODEL", "m"),
        ]))
        .expect("valid")
        .build()
        .expect("builds");
    assert!(
        matches!(&s.target, Target::Attach { base_url, pid: None } if base_url == "http://127.0.0.1:30000")
    );
    // A flag beats the environment's choice.
    let k = knob("server_cmd").expect("knob");
    let s = ScenarioConfig::text_model()
        .cli_overrides([
            (
                knob("base_url").expect("knob"),
                "http://127.0.0.1:1",
                Origin::Env,
            ),
            (k, "python3 srv.py --port {port}", Origin::Flag),
        ])
        .expect("valid")
        .build()
        .expect("builds");
    assert!(matches!(s.target, Target::Command(_)));
}

#[test]
fn server_pid_needs_an_attached_server() {
    let e = ScenarioConfig::text_model()
        .set("server_pid", "42")
        .build()
        .expect_err("pid without url");
    assert!(matches!(e, ConfigError::Requires { .. }), "{e}");
}

#[test]
fn lists_split_like_a_shell_in_the_environment() {
    let s = ScenarioConfig::text_model()
        .env_overrides_from(env(&[
            ("MEMTEST_SERVER_ARGS", "--tp-size 2 --name 'two words'"),
            ("MEMTEST_MAX_SLOPE", "host.rss@tree=64KiB, gpu.*=1MiB"),
        ]))
        .expect("valid")
        .build()
        .expect("builds");
    let Some(server) = s.target.engine().filter(|e| e.engine().name() == "sglang") else {
        panic!("not SGLang")
    };
    let argv = server.clone().into_spec().argv().join(" ");
    assert!(argv.ends_with("--tp-size 2 --name two words"), "{argv}");
    assert_eq!(
        s.thresholds
            .rule_for("host.rss@tree")
            .map(|r| r.max_slope_per_request),
        Some(65536.0)
    );
    // A new pattern keeps its source's calibrated growth floor.
    assert_eq!(
        s.thresholds
            .rule_for("gpu.used@dev:0")
            .map(|r| r.min_growth),
        Some(16.0 * 1024.0 * 1024.0)
    );
    assert!(
        ScenarioConfig::text_model()
            .env_overrides_from(env(&[("MEMTEST_SERVER_ARGS", "--a 'open")]))
            .is_err()
    );
}

#[test]
fn cpu_device_turns_gpu_metrics_off_and_names_the_allocator() {
    let s = ScenarioConfig::vlm_image()
        .env_overrides_from(env(&[("MEMTEST_DEVICE", "cpu")]))
        .expect("valid")
        .build()
        .expect("builds");
    assert_eq!(s.tracker.gpu, GpuMode::Off);
    assert!(
        s.caches.iter().any(|c| c.name.starts_with("glibc")),
        "{:?}",
        s.caches
    );
    assert!(
        s.caches
            .iter()
            .any(|c| c.name.starts_with("multimodal") && c.state == "off")
    );
    let on = ScenarioConfig::vlm_image()
        .server_env("SGLANG_VLM_CACHE_SIZE_MB", "100")
        .build()
        .expect("builds");
    assert!(
        on.caches.iter().any(|c| c.state == "on, 100 MB"),
        "{:?}",
        on.caches
    );
}

#[test]
fn the_api_key_never_shows() {
    let s = ScenarioConfig::text_model()
        .env_overrides_from(env(&[("MEMTEST_API_KEY", "sk-secret")]))
        .expect("valid")
        .build()
        .expect("builds");
    assert!(!format!("{s:?}").contains("sk-secret"));
    let json = serde_json::to_string(&s.driver).unwrap_or_default();
    assert!(!json.contains("sk-secret"), "{json}");
    assert_eq!(
        s.driver.api_key.as_ref().map(|k| k.expose()),
        Some("sk-secret")
    );
}

#[test]
fn the_reference_server_is_found_or_named() {
    let s = reference().set("reference", "1").build().expect("builds");
    assert!(matches!(s.target, Target::Reference { .. }));
    let e = ScenarioConfig::text_model()
        .set("reference_bin", "/nonexistent/sglang-memtest")
        .build()
        .expect_err("missing binary");
    assert!(e.to_string().contains("sglang-memtest executable"), "{e}");
}

#[test]
fn the_readme_lists_every_knob() {
    let readme = include_str!("../../README.md");
    let table = readme
        .split_once("<!-- knobs:begin -->\n")
        .and_then(|(_, rest)| rest.split_once("<!-- knobs:end -->"))
        .map(|(table, _)| table);
    assert_eq!(
        table,
        Some(markdown_table().as_str()),
        "README's knob table is stale: paste `cargo run -- knobs` between the knobs markers"
    );
}

#[test]
fn the_mix_is_checked_against_the_scenario() {
    let err = |c: ScenarioConfig| c.build().map(|_| ()).unwrap_err().to_string();
    let e = err(ScenarioConfig::text_model().set("mix", "multi-image=0.2"));
    assert!(e.contains("only a vlm-image scenario"), "{e}");
    assert!(e.contains("MEMTEST_MIX") || e.contains("mix"), "{e}");
    let e = err(ScenarioConfig::text_model().set("mix", "reject-bad-image=0.2"));
    assert!(e.contains("needs a VLM"), "{e}");
    let e = err(ScenarioConfig::text_model()
        .set("mix", "abort-all=0.1")
        .concurrency(4));
    assert!(e.contains("concurrency 1 only"), "{e}");
    let e = err(ScenarioConfig::text_model()
        .set("vllm_model", "m")
        .set("mix", "abort=0.1"));
    assert!(e.contains("vLLM does not have"), "{e}");
    let e = err(ScenarioConfig::text_model().set("mix", "stream=0.9,abort=0.2"));
    assert!(e.contains("past 1"), "{e}");
    // Fine: image kinds on vlm_image, every error path on text, from the environment too.
    ScenarioConfig::vlm_image()
        .set(
            "mix",
            "multi-image=0.2,mixed-sizes=0.2,reject-bad-image=0.1",
        )
        .build()
        .expect("image kinds on an image scenario");
    let s = ScenarioConfig::text_model()
        .env_overrides_from(env(&[("MEMTEST_MIX", "error-paths")]))
        .expect("the environment")
        .concurrency(8)
        .build()
        .expect("builds");
    assert_eq!(
        s.driver.mix.weights,
        crate::load::Mix::error_paths().weights
    );
    // Blocks are at least as long as the concurrency.
    assert_eq!(s.driver.mix.block, 8);
}

#[test]
fn the_error_paths_preset_sends_every_error_path() {
    let s = ScenarioConfig::error_paths().build().expect("builds");
    assert_eq!(s.name(), "error_paths");
    assert_eq!(s.driver.num_requests, 200);
    let kinds: Vec<_> = s.driver.mix.kinds().collect();
    assert!(kinds.iter().any(|k| k.is_rejection()));
    assert!(kinds.iter().any(|k| k.is_abort()));
    assert!(kinds.contains(&crate::load::RequestKind::Disconnect));
}

#[test]
fn the_seed_tools_flags_reach_sglangs_command_line() {
    let argv = |c: ScenarioConfig| match c.build().expect("builds").target() {
        Target::Engine(s) if s.engine().name() == "sglang" => {
            s.clone().into_spec().argv().join(" ")
        }
        other => panic!("not SGLang: {other:?}"),
    };
    let vlm = ScenarioConfig::vlm_image()
        .env_overrides_from(env(&[
            ("SGLANG_LOG_LEVEL", "DEBUG"),
            ("MEMTEST_PORT", "31234"),
        ]))
        .expect("valid")
        .set("model", "m")
        .set("mm_attention_backend", "sdpa");
    let line = argv(vlm.clone());
    assert!(line.contains("--mm-attention-backend sdpa"), "{line}");
    assert!(line.contains("--log-level debug"), "{line}");
    let built = vlm.build().expect("builds");
    assert_eq!(built.port, Some(31234));
    // A text model gets the log level, not the vision tower's backend.
    let text = ScenarioConfig::text_model()
        .set("model", "m")
        .set("mm_attention_backend", "sdpa")
        .set("sglang_log_level", "warning");
    let line = argv(text);
    assert!(
        !line.contains("--mm-attention-backend") && line.contains("--log-level warning"),
        "{line}"
    );
}

// ---- vLLM as the presets launch it (was config/vllm.rs) ----

#[test]
fn the_presets_switch_both_caches_off() {
    let s = ScenarioConfig::vlm_image()
        .set("vllm_vlm_model", "/m/vl")
        .set("device", "cpu")
        .build()
        .expect("builds");
    let Some(server) = s.target().engine().filter(|e| e.engine().name() == "vllm") else {
        panic!("not vLLM: {:?}", s.target())
    };
    assert_eq!(server.model_path, "/m/vl");
    assert_eq!(
        server.args(),
        ["--no-enable-prefix-caching", "--mm-processor-cache-gb", "0"]
    );
    let names: Vec<(&str, &str)> = s
        .caches()
        .iter()
        .map(|c| (c.name.as_str(), c.state.as_str()))
        .collect();
    assert_eq!(names[0], ("prefix cache", "off"));
    assert_eq!(names[1], ("multimodal processor cache", "off"));
    assert!(s.caches().iter().all(|c| c.growth.is_none()));
    assert_eq!(s.tracker().gpu, crate::tracker::GpuMode::Off);
}

#[test]
fn a_cache_turned_back_on_is_named_with_its_size_and_growth() {
    let s = ScenarioConfig::vlm_image()
        .set("vllm_model", "/m/vl")
        .set("vllm_mm_processor_cache_gb", "0.05")
        .build()
        .expect("builds");
    let mm = &s.caches()[1];
    assert_eq!(mm.state, "on, 51.2 MiB per process");
    let g = mm.growth.as_ref().expect("grows with images");
    assert_eq!(
        g.cap_bytes,
        Some((0.05 * (1u64 << 30) as f64).round() as u64)
    );
    assert_eq!(g.held_by, ["EngineCore", "api_server"]);
}

#[test]
fn vllm_knobs_choose_vllm_and_check_their_values() {
    let s = ScenarioConfig::text_model()
        .set("vllm_text_model", "/m/t")
        .set("vllm_vlm_model", "/m/vl")
        .set("vllm_arg", "--max-model-len=2048")
        .set("mem_fraction", "0.5")
        .build()
        .expect("builds");
    let Some(server) = s.target().engine().filter(|e| e.engine().name() == "vllm") else {
        panic!("not vLLM")
    };
    assert_eq!(server.model_path, "/m/t");
    let argv = server.clone().into_spec().argv().join(" ");
    assert!(
        argv.ends_with(
            "--gpu-memory-utilization 0.5 --no-enable-prefix-caching --max-model-len=2048"
        ),
        "{argv}"
    );
    assert_eq!(s.caches().len(), 1, "a text model has no multimodal cache");
    assert_eq!(s.tracker().gpu, crate::tracker::GpuMode::Required);
    // Only a VLM model is named: a text scenario stays on the default target.
    let s = ScenarioConfig::text_model()
        .set("vllm_vlm_model", "/m/vl")
        .build()
        .expect("builds");
    assert!(
        s.target()
            .engine()
            .is_some_and(|e| e.engine().name() == "sglang")
    );
    for (knob, bad) in [
        ("vllm_mm_processor_cache_gb", "-1"),
        ("vllm_mm_processor_cache_gb", "lots"),
        ("vllm_model", " "),
        ("vllm_prefix_caching", "maybe"),
    ] {
        let e = ScenarioConfig::vlm_image()
            .set(knob, bad)
            .build()
            .expect_err(bad);
        assert_eq!(e.knob(), Some(knob), "{e}");
    }
    let e = ScenarioConfig::text_model()
        .set("vllm_model", "m")
        .set("api", "native")
        .build()
        .expect_err("vLLM has no /generate");
    assert_eq!(e.knob(), Some("api"), "{e}");
    let e = ScenarioConfig::text_model()
        .set("vllm_model", "m")
        .set("server_arg", "--tp-size=2")
        .build()
        .expect_err("an SGLang argument");
    assert!(e.to_string().contains("--vllm-arg"), "{e}");
    let e = ScenarioConfig::text_model()
        .set("model", "m")
        .set("vllm_model", "m")
        .build()
        .expect_err("two engines");
    assert!(e.to_string().contains("choose different servers"), "{e}");
}
