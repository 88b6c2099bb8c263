//! vLLM as the presets launch it, and the caches its report names.
//!
//! Two vLLM caches grow with unique input and would read as a leak in a short run: the
//! multimodal processor cache (`--mm-processor-cache-gb`, 4 GiB by default; a copy in the API
//! server and one in EngineCore) fills with every unique image, and the prefix cache keeps the KV
//! blocks of every unique prompt. The presets switch both off and name them in the report; a user
//! who turns one back on gets it named as the likely cause when memory grows.

use super::{ScenarioConfig, TestType};
use crate::fixture::{Device, VllmServer, last_switch, last_value};
use crate::report::{CacheGrowth, CacheInfo};

/// vLLM's flag for the multimodal processor cache (GiB).
const MM_CACHE_FLAG: &str = "--mm-processor-cache-gb";
/// vLLM's default multimodal processor cache, GiB (`MultiModalConfig.mm_processor_cache_gb`).
const VLLM_DEFAULT_MM_CACHE_GIB: f64 = 4.0;
const PREFIX_ON: &str = "--enable-prefix-caching";
const PREFIX_OFF: &str = "--no-enable-prefix-caching";
const GIB: f64 = (1u64 << 30) as f64;

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
    pub(super) fn vllm_server(&self) -> VllmServer {
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
        let mut server = VllmServer::new(self.vllm_model())
            .with_python(&self.vllm.python)
            .with_device(self.sglang.device)
            .with_args(args);
        if self.vllm.mem_fraction_set {
            server = server.with_gpu_memory_utilization(self.sglang.mem_fraction);
        }
        for (k, v) in &self.server_env {
            server = server.with_env(k, v);
        }
        server
    }
}

/// The caches of a vLLM server launched with `args` for a `workload`, as its argv sets them
/// (the last of a repeated flag wins, as in vLLM), and on the CPU the allocator setting of
/// [`CPU_MALLOC_ENV`](crate::fixture::CPU_MALLOC_ENV). A cache that is on and that this workload
/// fills carries a [`CacheGrowth`].
pub fn vllm_caches(args: &[String], workload: TestType, device: Device) -> Vec<CacheInfo> {
    let mut caches = Vec::new();
    let prefix_on = last_switch(args, PREFIX_ON, PREFIX_OFF).unwrap_or(true);
    caches.push(CacheInfo {
        name: "prefix cache".into(),
        state: if prefix_on { "on" } else { "off" }.into(),
        flag: Some(if prefix_on { PREFIX_ON } else { PREFIX_OFF }.into()),
        growth: prefix_on.then(|| CacheGrowth {
            grows_with: "every unique prompt (its KV blocks stay cached until the KV pool is full)"
                .into(),
            cap_bytes: None,
            held_by: vec!["EngineCore".into(), "Worker".into()],
            off: "leave --vllm-prefix-caching off (vLLM's --no-enable-prefix-caching)".into(),
        }),
    });
    if workload != TestType::Text {
        let given = last_value(args, MM_CACHE_FLAG);
        let gib = given
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(VLLM_DEFAULT_MM_CACHE_GIB);
        let on = gib > 0.0;
        let shm = last_value(args, "--mm-processor-cache-type") == Some("shm");
        let cap = (gib * GIB).round() as u64;
        caches.push(CacheInfo {
            name: "multimodal processor cache".into(),
            state: if on {
                format!("on, {} per process", crate::util::human_bytes(cap as f64))
            } else {
                "off".into()
            },
            flag: Some(format!(
                "{MM_CACHE_FLAG} {}",
                given.unwrap_or("4 (vLLM's default)")
            )),
            growth: (on && workload == TestType::VlmImage).then(|| CacheGrowth {
                grows_with: "every unique image".into(),
                cap_bytes: Some(cap),
                held_by: if shm {
                    vec!["/dev/shm".into()]
                } else {
                    vec!["EngineCore".into(), "api_server".into()]
                },
                off: format!("--vllm-mm-processor-cache-gb 0 (vLLM's {MM_CACHE_FLAG} 0)"),
            }),
        });
    }
    if device == Device::Cpu {
        caches.push(CacheInfo {
            name: "glibc heap (freed memory malloc keeps)".into(),
            state: "mmap threshold fixed at 128 KiB: freed tensors go back to the OS".into(),
            flag: Some("MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072".into()),
            growth: None,
        });
    }
    caches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Target;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_presets_switch_both_caches_off() {
        let s = ScenarioConfig::vlm_image()
            .set("vllm_vlm_model", "/m/vl")
            .set("device", "cpu")
            .build()
            .expect("builds");
        let Target::Vllm(server) = s.target() else {
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
        assert_eq!(g.cap_bytes, Some((0.05 * GIB).round() as u64));
        assert_eq!(g.held_by, ["EngineCore", "api_server"]);
        // vLLM's own flag, given as an argument, wins over the knob (it comes last).
        let caches = vllm_caches(
            &args(&[
                PREFIX_OFF,
                MM_CACHE_FLAG,
                "0",
                "--mm-processor-cache-gb=4",
                PREFIX_ON,
            ]),
            TestType::VlmImage,
            Device::Gpu,
        );
        assert_eq!(caches[0].state, "on");
        assert!(caches[0].growth.is_some());
        assert_eq!(
            caches[1].growth.as_ref().and_then(|g| g.cap_bytes),
            Some(4 << 30)
        );
        // No flag at all: vLLM's defaults, both on.
        let caches = vllm_caches(&[], TestType::VlmImage, Device::Gpu);
        assert_eq!(
            caches[1].flag.as_deref(),
            Some("--mm-processor-cache-gb 4 (vLLM's default)")
        );
        assert_eq!(caches.len(), 2);
        // Text requests never reach the multimodal cache: on, but it does not grow.
        let caches = vllm_caches(&[], TestType::VlmText, Device::Cpu);
        assert!(caches[1].growth.is_none());
        assert!(caches[2].name.starts_with("glibc"));
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
        let Target::Vllm(server) = s.target() else {
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
        assert!(matches!(s.target(), Target::Sglang(_)));
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
