//! vLLM as the presets launch it: both caches that grow with unique input off (the engine's
//! file, `engine/vllm.rs`, says which and names them in the report), then the user's arguments.

use super::{ScenarioConfig, TestType};
use crate::engine::Server;
use crate::engine::vllm::{MM_CACHE_FLAG, PREFIX_OFF};

impl ScenarioConfig {
    fn vllm_model(&self) -> String {
        self.pick_model(
            &self.vllm.text_model,
            &self.vllm.vlm_model,
            &self.vllm.model,
        )
    }

    /// vLLM as the presets launch it: the prefix cache off, for VLMs the multimodal processor
    /// cache off (or the size asked for), then the user's arguments (the last of a flag wins).
    pub(super) fn vllm_server(&self) -> Server {
        let mut args: Vec<String> = Vec::new();
        if !self.vllm.prefix_caching {
            args.push(PREFIX_OFF.into());
        }
        if !self.workload.is_text() {
            let gb = self.vllm.mm_processor_cache_gb.unwrap_or(0.0);
            args.extend([MM_CACHE_FLAG.to_owned(), gb.to_string()]);
        }
        if self.workload == TestType::VlmText && self.sglang.language_model_only {
            args.push("--language-model-only".into());
        }
        args.extend(self.vllm.args.iter().cloned());
        let mut server = Server::vllm(self.vllm_model())
            .with_python(&self.vllm.python)
            .with_device(self.sglang.device)
            .with_args(args);
        if self.vllm.mem_fraction_set {
            server = server.with_mem_fraction(self.sglang.mem_fraction);
        }
        for (k, v) in &self.server_env {
            server = server.with_env(k, v);
        }
        server
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
