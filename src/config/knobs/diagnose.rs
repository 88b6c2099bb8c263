//! The knobs of the diagnosis that changes how the server runs: the Python heap tracer.

use super::parse::{switch, whole};
use super::{Group, Knob, KnobKind};
use crate::diagnose::py_heap::MAX_FRAMES;

pub(super) static DIAGNOSE: &[Knob] = &[
    Knob {
        name: "py_heap",
        env: "MEMTEST_PY_HEAP",
        flag: Some("py-heap"),
        value_name: "",
        default: "off",
        help: "Python heap attribution: tracemalloc in every Python process of the server (a sitecustomize first on its PYTHONPATH, chained to any other) from the end of the warm-up to the last measured request; the report lists the top allocation sites (file:line, bytes, blocks) of what was allocated and kept, the guilty process first, else the one that grew most. Slows the server's Python down while it traces (docs/diagnosis.md).",
        kind: KnobKind::Switch,
        group: Group::Verdict,
        apply: |c, v| {
            c.py_heap = switch(v)?;
            Ok(())
        },
    },
    Knob {
        name: "py_heap_frames",
        env: "MEMTEST_PY_HEAP_FRAMES",
        flag: Some("py-heap-frames"),
        value_name: "N",
        default: "1",
        help: "With --py-heap: frames of the call stack kept per allocation: 1, the allocating line only, is cheapest; more show which caller grew, at a cost (SGLang's CPU engine served 0.74× the requests per second of an untraced server with 1 frame, 0.21× with 8).",
        kind: KnobKind::Value,
        group: Group::Verdict,
        apply: |c, v| {
            c.py_heap_frames = whole(v, 1, u64::from(MAX_FRAMES), "a number of frames")? as u16;
            Ok(())
        },
    },
];
