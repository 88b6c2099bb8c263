//! The knobs of a vLLM server: which model, which interpreter, its extra arguments, and the two
//! engine caches that grow with unique input (the presets switch both off).

use std::path::PathBuf;

use super::parse::{nonempty, switch};
use super::{Group, Knob, KnobKind, choose_target};
use crate::config::TargetKind;

/// The largest multimodal processor cache the knob takes, GiB.
const MAX_MM_CACHE_GIB: f64 = 1024.0;

pub(super) static VLLM: &[Knob] = &[
    Knob {
        name: "vllm_model",
        env: "MEMTEST_VLLM_MODEL",
        flag: Some("vllm-model"),
        value_name: "MODEL",
        default: "none",
        help: "Launch vLLM (`vllm serve`) with this model path or Hugging Face id, for every scenario (vllm_text_model and vllm_vlm_model win for theirs).",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.vllm.model = Some(nonempty(v, "a model path or id")?);
            choose_target(c, TargetKind::Vllm);
            Ok(())
        },
    },
    Knob {
        name: "vllm_text_model",
        env: "MEMTEST_VLLM_TEXT_MODEL",
        flag: Some("vllm-text-model"),
        value_name: "MODEL",
        default: "none",
        help: "Launch vLLM with this model for text scenarios (text_model).",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.vllm.text_model = Some(nonempty(v, "a model path or id")?);
            if c.workload.is_text() {
                choose_target(c, TargetKind::Vllm);
            }
            Ok(())
        },
    },
    Knob {
        name: "vllm_vlm_model",
        env: "MEMTEST_VLLM_VLM_MODEL",
        flag: Some("vllm-vlm-model"),
        value_name: "MODEL",
        default: "none",
        help: "Launch vLLM with this model for VLM scenarios (vlm_no_mm_processor, vlm_image).",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.vllm.vlm_model = Some(nonempty(v, "a model path or id")?);
            if !c.workload.is_text() {
                choose_target(c, TargetKind::Vllm);
            }
            Ok(())
        },
    },
    Knob {
        name: "vllm_python",
        env: "MEMTEST_VLLM_PYTHON",
        flag: Some("vllm-python"),
        value_name: "PATH",
        default: "python3",
        help: "The Python interpreter that has vLLM (it runs `-m vllm.entrypoints.cli.main serve`).",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.vllm.python = PathBuf::from(nonempty(v, "an interpreter path or name")?);
            Ok(())
        },
    },
    Knob {
        name: "vllm_arg",
        env: "MEMTEST_VLLM_ARGS",
        flag: Some("vllm-arg"),
        value_name: "ARG",
        default: "none",
        help: "An extra vLLM argument, e.g. --vllm-arg=--max-model-len=2048 (repeatable; after the preset's, so the last of a flag wins; in the environment quotes group words).",
        kind: KnobKind::ShellList,
        group: Group::Server,
        apply: |c, v| {
            c.vllm.args.push(v.to_owned());
            c.vllm.args_setting = c.applying.clone();
            Ok(())
        },
    },
    Knob {
        name: "vllm_mm_processor_cache_gb",
        env: "MEMTEST_VLLM_MM_PROCESSOR_CACHE_GB",
        flag: Some("vllm-mm-processor-cache-gb"),
        value_name: "GIB",
        default: "0 (off): it grows with every unique image",
        help: "vLLM's --mm-processor-cache-gb for VLM scenarios: its multimodal processor cache in GiB (vLLM's own default is 4); named in the report.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| match v.trim().parse::<f64>() {
            Ok(g) if (0.0..=MAX_MM_CACHE_GIB).contains(&g) => {
                c.vllm.mm_processor_cache_gb = Some(g);
                Ok(())
            }
            _ => Err(format!(
                "a cache size in GiB from 0 (off) to {MAX_MM_CACHE_GIB}, e.g. 0.05 for 50 MB"
            )),
        },
    },
    Knob {
        name: "vllm_prefix_caching",
        env: "MEMTEST_VLLM_PREFIX_CACHING",
        flag: Some("vllm-prefix-caching"),
        value_name: "",
        default: "off (--no-enable-prefix-caching)",
        help: "Leave vLLM's prefix cache on (it keeps the KV blocks of every unique prompt until the pool is full); named in the report.",
        kind: KnobKind::Switch,
        group: Group::Server,
        apply: |c, v| {
            c.vllm.prefix_caching = switch(v)?;
            Ok(())
        },
    },
];
