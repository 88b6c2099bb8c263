//! The knobs of measurement, the verdict and the outputs.

use std::path::PathBuf;

use super::parse::{nonempty, parse_bytes, seconds, switch, whole};
use super::{Group, Knob, KnobKind};
use crate::tracker::GpuMode;
use crate::tracker::metric::MetricPattern;

pub(super) static VERDICT: &[Knob] = &[
    Knob {
        name: "gpu",
        env: "MEMTEST_GPU",
        flag: Some("gpu"),
        value_name: "required|auto|off",
        default: "required for SGLang on a GPU, off on the CPU, auto otherwise",
        help: "GPU metrics: required (fail without NVML), auto (when present) or off.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.gpu = Some(match v.trim() {
                "required" => GpuMode::Required,
                "auto" => GpuMode::Auto,
                "off" => GpuMode::Off,
                _ => return Err("required, auto or off".into()),
            });
            Ok(())
        },
    },
    Knob {
        name: "sample_interval",
        env: "MEMTEST_SAMPLE_INTERVAL",
        flag: Some("sample-interval"),
        value_name: "SECONDS",
        default: "0.1 (and one reading after every request)",
        help: "Interval between regular memory samples.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.tracker.interval = seconds(v, 0.001, 60.0)?;
            Ok(())
        },
    },
    Knob {
        name: "max_slope",
        env: "MEMTEST_MAX_SLOPE",
        flag: Some("max-slope"),
        value_name: "PATTERN=SIZE",
        default: "the budget per request (1.0 KiB: 1 GiB per million requests)",
        help: "Leak limit for metrics matching a pattern, e.g. host.rss@tree=64KiB or gpu.*=1MiB (repeatable; comma-separated in the environment).",
        kind: KnobKind::CommaList,
        group: Group::Verdict,
        apply: |c, v| {
            let expected =
                || "PATTERN=SIZE, e.g. host.rss@tree=64KiB or gpu.proc@pid:*=1MiB".to_owned();
            let (pattern, size) = v.split_once('=').ok_or_else(expected)?;
            let pattern: MetricPattern = pattern
                .parse()
                .map_err(|e| format!("{} ({e})", expected()))?;
            let bytes = parse_bytes(size)
                .ok_or_else(|| format!("{}: sizes look like 64KiB or 1MiB", expected()))?;
            c.thresholds.set_max_slope(&pattern, bytes);
            Ok(())
        },
    },
    Knob {
        name: "budget",
        env: "MEMTEST_BUDGET",
        flag: Some("budget"),
        value_name: "SIZE",
        default: "1GiB (per million requests: 1.0 KiB/request)",
        help: "How much any judged memory metric may grow per million requests (host, GPU, /dev/shm); --max-slope overrides it for the metrics it names.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            let per_million = parse_bytes(v)
                .filter(|b| *b > 0.0)
                .ok_or_else(|| "a size per million requests such as 1GiB or 512MiB".to_owned())?;
            c.thresholds.set_budget(per_million);
            Ok(())
        },
    },
    Knob {
        name: "traffic",
        env: "MEMTEST_TRAFFIC",
        flag: Some("traffic"),
        value_name: "REQUESTS_PER_DAY",
        default: "1000000",
        help: "The traffic growth is projected at in the report (\"at 1.0 M requests/day this process grows X/day\"); never judged.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.thresholds.traffic_per_day =
                whole(v, 1, 1_000_000_000_000, "requests per day")? as f64;
            Ok(())
        },
    },
    Knob {
        name: "max_growth_per_hour",
        env: "MEMTEST_MAX_GROWTH_PER_HOUR",
        flag: Some("max-growth-per-hour"),
        value_name: "SIZE",
        default: "256MiB",
        help: "The soak limit: a judged metric growing faster than this per hour leaks, under traffic or while idle, whatever its per-request slope.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.thresholds.max_growth_per_hour = parse_bytes(v)
                .filter(|b| *b > 0.0)
                .ok_or_else(|| "a size per hour such as 256MiB or 1GiB".to_owned())?;
            Ok(())
        },
    },
    Knob {
        name: "soak_min_duration",
        env: "MEMTEST_SOAK_MIN_DURATION",
        flag: Some("soak-min-duration"),
        value_name: "DURATION",
        default: "2m",
        help: "Growth per hour is judged only over stretches (traffic, idle) at least this long.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.thresholds.soak_min_hours = seconds(v, 1.0, 86_400.0 * 30.0)?.as_secs_f64() / 3600.0;
            Ok(())
        },
    },
    Knob {
        name: "seed",
        env: "MEMTEST_SEED",
        flag: Some("seed"),
        value_name: "N",
        default: "fixed",
        help: "Seed of every random draw (images, schedule), recorded in the report.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.thresholds.seed = whole(v, 0, u64::MAX, "a seed")?;
            Ok(())
        },
    },
    Knob {
        name: "out_dir",
        env: "MEMTEST_OUT_DIR",
        flag: Some("out-dir"),
        value_name: "DIR",
        default: "target/memtest",
        help: "Where reports, plots and server logs go.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.out_dir = PathBuf::from(nonempty(v, "a folder")?);
            Ok(())
        },
    },
    Knob {
        name: "no_plot",
        env: "MEMTEST_NO_PLOT",
        flag: Some("no-plot"),
        value_name: "",
        default: "off: plots are written",
        help: "Skip the PNG/SVG plots.",
        kind: KnobKind::Switch,
        group: Group::Verdict,
        apply: |c, v| {
            c.plots = !switch(v)?;
            Ok(())
        },
    },
    Knob {
        name: "seed_names",
        env: "MEMTEST_SEED_NAMES",
        flag: Some("seed-names"),
        value_name: "",
        default: "off (on for `run --test …`)",
        help: "Also write the report and the plot under the seed tool's names, {test}_{model}_{unix}_memory_data.json and _memory_plot.png, beside ours.",
        kind: KnobKind::Switch,
        group: Group::Verdict,
        apply: |c, v| {
            c.seed_names = switch(v)?;
            Ok(())
        },
    },
    Knob {
        name: "py_spy",
        env: "MEMTEST_PY_SPY",
        flag: Some("py-spy"),
        value_name: "auto|off|PATH",
        default: "auto: py-spy on PATH, else ~/.cache/sglang-memtest/tools/bin/py-spy",
        help: "On a leak, `py-spy dump` of the guilty process (its Python stacks) into the run folder; off: none.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.py_spy = v.parse()?;
            Ok(())
        },
    },
    Knob {
        name: "cuda_visible_devices",
        env: "CUDA_VISIBLE_DEVICES",
        flag: None,
        value_name: "LIST",
        default: "all devices",
        help: "The GPUs the server sees (CUDA's own variable): GPU metrics cover these devices.",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.tracker.visible_devices = Some(v.to_owned());
            Ok(())
        },
    },
];
