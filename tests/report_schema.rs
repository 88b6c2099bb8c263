//! The JSON report's shape is a contract (schema version 2, see docs/report-schema.md): this snapshot lists every field
//! path a run writes, so a change to the schema is a reviewed diff, never an accident.

mod common;

use common::{quick, run};
use serde_json::Value;
use sglang_memtest::load::Workload;

/// Field paths, unioned over every array item and map entry (collapsed to `[]` / `<key>`).
/// Only paths are listed, not types: a field that is `null` in one run and a number in the next
/// is the same schema.
fn paths(v: &Value, at: &str, out: &mut Vec<String>) {
    out.push(at.to_owned());
    // Maps keyed by data (metric names, PIDs) rather than by field names.
    let keyed_by_data = [
        ".series",
        ".processes",
        ".per_request",
        ".by_time",
        ".idle",
        ".cooldown",
    ]
    .iter()
    .any(|suffix| at.ends_with(suffix));
    match v {
        Value::Object(map) if keyed_by_data => map
            .values()
            .for_each(|v| paths(v, &format!("{at}.<key>"), out)),
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| paths(v, &format!("{at}.{k}"), out)),
        Value::Array(items) => items.iter().for_each(|v| paths(v, &format!("{at}[]"), out)),
        _ => {}
    }
}

#[test]
fn report_schema_v2() {
    let r = run(&quick("schema", &["--children=1"], Workload::Text));
    r.assert_pass();
    let json: Value = serde_json::to_value(&r).expect("serializable");
    let mut out = Vec::new();
    paths(&json, "", &mut out);
    out.sort();
    out.dedup();
    // Fields whose presence depends on what was measured, not the schema, are left out of the
    // listing (each is in docs/report-schema.md): whether a clean reference server's warm-up
    // slowed down or its cooldown gave growth back varies from run to run.
    let measured = [
        ".verdict.metrics[].deceleration",
        ".verdict.metrics[].given_back",
    ];
    let out: Vec<String> = out
        .into_iter()
        .filter(|p| !p.is_empty() && !measured.iter().any(|m| p.starts_with(m)))
        .collect();
    insta::assert_snapshot!(out.join("\n"));
}

/// The engine's own findings (a KV leak at idle, a memory check quoted from the log): fields a
/// clean run leaves empty.
#[test]
fn report_schema_v2_engine_findings() {
    let r = run(&quick(
        "schema_engine",
        &[
            "--leak-kv-tokens-per-request=4",
            "--log-line=pool memory leak detected! [full] total=4096, available=4092",
        ],
        Workload::Text,
    )
    .requests(10));
    assert_eq!(
        r.outcome,
        sglang_memtest::report::RunOutcome::Leak,
        "{}",
        r.summary()
    );
    let json: Value = serde_json::to_value(&r).expect("serializable");
    let mut out = Vec::new();
    for key in ["idle_accounting", "log_watch"] {
        paths(&json[key], &format!(".{key}"), &mut out);
    }
    out.sort();
    out.dedup();
    insta::assert_snapshot!(out.join("\n"));
}

/// The diagnosis of a leak: the guilty process, its stack snapshot (a stand-in py-spy, so the
/// fields do not depend on what the machine has installed) and the mappings that grew.
#[test]
fn report_schema_v2_diagnosis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = dir.path().join("py-spy");
    std::fs::write(&fake, "#!/bin/sh\necho 'Thread 1 (idle): \"MainThread\"'\n").expect("write");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let r = run(&quick(
        "schema_diagnosis",
        &[
            "--children=1",
            "--leak-in-child",
            "--leak-bytes-per-request=1048576",
        ],
        Workload::Text,
    )
    .set("py_spy", fake.display().to_string())
    .requests(20));
    assert_eq!(
        r.outcome,
        sglang_memtest::report::RunOutcome::Leak,
        "{}",
        r.summary()
    );
    let json: Value = serde_json::to_value(&r).expect("serializable");
    let mut out = Vec::new();
    paths(&json["diagnosis"], ".diagnosis", &mut out);
    out.sort();
    out.dedup();
    insta::assert_snapshot!(out.join("\n"));
}

/// The Python heap section (`--py-heap`) of a run whose Python child leaks: every field of a
/// traced process, its sites and their stacks.
#[test]
fn report_schema_v2_py_heap() {
    let python = std::process::Command::new("python3")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !python {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
            "CI=true but python3 is missing"
        );
        eprintln!("skipped: no python3 on PATH (the Python children need it)");
        return;
    }
    let r = run(&quick(
        "schema_py_heap",
        &[
            "--children=1",
            "--leak-in-child",
            "--python-children=python3",
            "--leak-bytes-per-request=1048576",
        ],
        Workload::Text,
    )
    .set("py_heap", "1")
    .set("py_spy", "off")
    .requests(20));
    assert_eq!(
        r.outcome,
        sglang_memtest::report::RunOutcome::Leak,
        "{}",
        r.summary()
    );
    let json: Value = serde_json::to_value(&r).expect("serializable");
    let mut out = Vec::new();
    paths(
        &json["diagnosis"]["py_heap"],
        ".diagnosis.py_heap",
        &mut out,
    );
    out.sort();
    out.dedup();
    insta::assert_snapshot!(out.join("\n"));
}
