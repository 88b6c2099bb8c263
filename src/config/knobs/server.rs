//! The knobs of which server is run, and how it is launched (each engine's own are in its file
//! under `engine/`).

use std::path::PathBuf;

use super::parse::{SECS_DAY, fraction, nonempty, seconds, switch, whole};
use super::{Group, Knob, KnobKind, choose_target};
use crate::config::TargetKind;
use crate::engine::Device;

/// Which reference server; the engines' knobs come after these (their files under `engine/`).
pub(super) static REFERENCE: &[Knob] = &[
    Knob {
        name: "reference",
        env: "MEMTEST_REFERENCE",
        flag: Some("reference"),
        value_name: "",
        default: "the CLI's target when no other is chosen",
        help: "Run against a freshly launched reference server (planted leaks on demand, no GPU, no Python).",
        kind: KnobKind::Switch,
        group: Group::Server,
        apply: |c, v| {
            if switch(v)? {
                choose_target(c, TargetKind::Reference);
            }
            Ok(())
        },
    },
    Knob {
        name: "reference_arg",
        env: "MEMTEST_REFERENCE_ARGS",
        flag: Some("reference-arg"),
        value_name: "ARG",
        default: "none",
        help: "A reference-server knob, e.g. --reference-arg=--leak-bytes-per-request=1048576 (repeatable; implies --reference).",
        kind: KnobKind::ShellList,
        group: Group::Server,
        apply: |c, v| {
            c.reference_args.push(v.to_owned());
            choose_target(c, TargetKind::Reference);
            Ok(())
        },
    },
    Knob {
        name: "reference_bin",
        env: "MEMTEST_REFERENCE_BIN",
        flag: Some("reference-bin"),
        value_name: "PATH",
        default: "found next to the running executable (cargo puts it there)",
        help: "The sglang-memtest executable that serves the reference server.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            let p = PathBuf::from(nonempty(v, "a path to the sglang-memtest executable")?);
            if !p.is_file() {
                return Err("the path of an existing sglang-memtest executable".into());
            }
            c.reference_bin = Some(p);
            Ok(())
        },
    },
];

/// How the chosen server is launched, whichever it is.
pub(super) static SERVER: &[Knob] = &[
    Knob {
        name: "device",
        env: "MEMTEST_DEVICE",
        flag: Some("device"),
        value_name: "gpu|cpu",
        default: "gpu",
        help: "Where the engine runs the model: gpu, or cpu (SGLang's CPU engine: torch-native attention, a bounded KV pool; vLLM's CPU build: a 1 GiB KV cache; GPU metrics off).",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.device = v
                .trim()
                .parse::<Device>()
                .map_err(|_| "gpu or cpu".to_owned())?;
            Ok(())
        },
    },
    Knob {
        name: "mem_fraction",
        env: "MEMTEST_MEM_FRACTION",
        flag: Some("mem-fraction"),
        value_name: "F",
        default: "0.7",
        help: "SGLang's --mem-fraction-static; vLLM's --gpu-memory-utilization on a GPU (vLLM's own 0.9 when not set).",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.mem_fraction = Some(fraction(v, 0.05, 0.99)?);
            Ok(())
        },
    },
    Knob {
        name: "server_env",
        env: "MEMTEST_SERVER_ENV",
        flag: Some("server-env"),
        value_name: "KEY=VALUE",
        default: "none",
        help: "An environment variable for the launched server, e.g. SGLANG_VLM_CACHE_SIZE_MB=100 (repeatable).",
        kind: KnobKind::ShellList,
        group: Group::Server,
        apply: |c, v| match v.split_once('=') {
            Some((k, val)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
                c.server_env.push((k.to_owned(), val.to_owned()));
                Ok(())
            }
            _ => Err("KEY=VALUE, e.g. SGLANG_VLM_CACHE_SIZE_MB=100".into()),
        },
    },
    Knob {
        name: "language_model_only",
        env: "MEMTEST_LANGUAGE_MODEL_ONLY",
        flag: Some("language-model-only"),
        value_name: "",
        default: "off",
        help: "vlm_no_mm_processor adds --language-model-only (SGLang: few architectures accept it; vLLM: the vision tower and the image processor are not built).",
        kind: KnobKind::Switch,
        group: Group::Server,
        apply: |c, v| {
            c.language_model_only = switch(v)?;
            Ok(())
        },
    },
    Knob {
        name: "server_cmd",
        env: "MEMTEST_SERVER_CMD",
        flag: Some("server-cmd"),
        value_name: "COMMAND",
        default: "none",
        help: "Launch any command instead; {port} is replaced by a free port. Quotes group words; no shell.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            let argv = shlex::split(v).filter(|a| !a.is_empty()).ok_or_else(|| {
                "a command line with balanced quotes, e.g. 'python3 server.py --port {port}'"
                    .to_owned()
            })?;
            c.command = Some(argv);
            choose_target(c, TargetKind::Command);
            Ok(())
        },
    },
    Knob {
        name: "health_path",
        env: "MEMTEST_HEALTH_PATH",
        flag: Some("health-path"),
        value_name: "PATH",
        default: "/health",
        help: "The path polled until a --server-cmd server answers 200.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            if !v.starts_with('/') {
                return Err("a URL path starting with /, e.g. /health".into());
            }
            c.health_path = v.to_owned();
            Ok(())
        },
    },
    Knob {
        name: "base_url",
        env: "MEMTEST_BASE_URL",
        flag: Some("base-url"),
        value_name: "URL",
        default: "none",
        help: "Attach to a running server instead of launching one.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            let url = v.trim().trim_end_matches('/');
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
                return Err("an http:// or https:// URL, e.g. http://127.0.0.1:30000".into());
            }
            c.attach_url = Some(url.to_owned());
            choose_target(c, TargetKind::Attach);
            Ok(())
        },
    },
    Knob {
        name: "server_pid",
        env: "MEMTEST_SERVER_PID",
        flag: Some("server-pid"),
        value_name: "PID",
        default: "none",
        help: "With --base-url: the server's root PID, so its process tree is measured too.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            let pid = whole(v, 1, u64::from(u32::MAX), "a process id")?;
            c.attach_pid = u32::try_from(pid).ok();
            Ok(())
        },
    },
    Knob {
        name: "port",
        env: "MEMTEST_PORT",
        flag: Some("port"),
        value_name: "PORT",
        default: "a free port",
        help: "Launch the server on this port (SGLang, vLLM, the reference server, {port} of --server-cmd), as the seed tool's --port.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.port = Some(whole(v, 1, 65535, "a TCP port")? as u16);
            c.port_setting = c.applying.clone();
            Ok(())
        },
    },
    Knob {
        name: "startup_timeout",
        env: "MEMTEST_STARTUP_TIMEOUT",
        flag: Some("startup-timeout"),
        value_name: "SECONDS",
        default: "600",
        help: "How long to wait for the server to become ready.",
        kind: KnobKind::Value,
        group: Group::Server,
        apply: |c, v| {
            c.startup_timeout = seconds(v, 1.0, SECS_DAY)?;
            Ok(())
        },
    },
    Knob {
        name: "keep_server",
        env: "MEMTEST_KEEP_SERVER",
        flag: Some("keep-server"),
        value_name: "",
        default: "off",
        help: "Leave the server running after the run (its PID and URL are printed), for debugging.",
        kind: KnobKind::Switch,
        group: Group::Server,
        apply: |c, v| {
            c.keep_server = switch(v)?;
            Ok(())
        },
    },
    Knob {
        name: "reaper",
        env: "MEMTEST_REAPER",
        flag: None,
        value_name: "",
        default: "on",
        help: "A reaper process that cleans up the moment the harness dies, SIGKILL included; 0: the next fixture start cleans up instead.",
        kind: KnobKind::Switch,
        group: Group::Server,
        apply: |c, v| {
            c.reaper = switch(v)?;
            Ok(())
        },
    },
    Knob {
        name: "watchdog",
        env: "MEMTEST_WATCHDOG",
        flag: None,
        value_name: "",
        default: "off",
        help: "In a test process: Ctrl-C or SIGTERM stops every server and writes the reports before the process exits (the CLI has its own handler).",
        kind: KnobKind::Switch,
        group: Group::Server,
        apply: |c, v| {
            c.watchdog = switch(v)?;
            Ok(())
        },
    },
];
