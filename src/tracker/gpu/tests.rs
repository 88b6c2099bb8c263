//! Tests of the parent module: opening NVML, and attributing GPU memory to the tree.

use super::*;
use crate::tracker::Unit;

fn p(device: u32, pid: u32, used: Option<u64>) -> ProcSample {
    ProcSample { device, pid, used }
}

fn value(out: &TreeOutcome, metric: &str) -> Option<f64> {
    out.readings
        .iter()
        .find(|r| r.metric == metric)
        .map(|r| r.v)
}

#[test]
fn open_without_a_driver_says_why_in_one_line() {
    // This machine has no NVIDIA driver; on a GPU machine the source must open instead.
    match GpuSource::open(None) {
        Err(why) => {
            assert!(why.contains("NVML") || why.contains("GPU"), "{why}");
            assert!(!why.contains('\n'), "{why}");
            assert!(why.starts_with("GPU metrics unavailable"), "{why}");
        }
        Ok(src) => assert!(!src.describe().is_empty()),
    }
}

#[test]
fn open_failure_names_the_nvml_library() {
    let e = NvmlError::LibraryNotFound;
    let line = explain_init_error(&e);
    assert!(
        line.contains("NVML library (libnvidia-ml.so.1) not found"),
        "{line}"
    );
}

#[test]
fn tree_sums_over_devices_and_processes() {
    let procs = [
        p(0, 10, Some(100)),
        p(1, 10, Some(50)),
        p(0, 11, Some(7)),
        p(0, 99, Some(1 << 30)),
    ];
    let out = tree_readings(&procs, &[10, 11, 12]);
    assert_eq!(value(&out, &gpu_pid(10)), Some(150.0));
    assert_eq!(value(&out, &gpu_pid(11)), Some(7.0));
    assert_eq!(
        value(&out, &gpu_pid(99)),
        None,
        "foreign process attributed"
    );
    assert_eq!(value(&out, GPU_PROC_TREE), Some(157.0));
    assert_eq!(out.on_gpu, 2);
    assert!(!out.unavailable);
    assert!(out.readings.iter().all(|r| r.unit == Unit::Bytes));
}

#[test]
fn no_tree_process_on_the_gpu_is_a_real_zero() {
    let out = tree_readings(&[p(0, 99, Some(5))], &[10]);
    assert_eq!(value(&out, GPU_PROC_TREE), Some(0.0));
    assert!(!out.unavailable);
}

#[test]
fn unavailable_and_sentinel_are_missing_data_not_zero() {
    assert_eq!(used_bytes(&UsedGpuMemory::Unavailable), None);
    assert_eq!(used_bytes(&UsedGpuMemory::Used(u64::MAX)), None);
    assert_eq!(used_bytes(&UsedGpuMemory::Used(0)), Some(0));
    // Every tree process without data: no per-process reading and no tree reading.
    let out = tree_readings(&[p(0, 10, None), p(1, 11, None)], &[10, 11]);
    assert!(out.readings.is_empty(), "{:?}", out.readings);
    assert!(out.unavailable);
    assert_eq!(out.without_data, 2);
    // One with data: the sum is emitted from what is known; the other gets no reading.
    let out = tree_readings(&[p(0, 10, None), p(0, 11, Some(3))], &[10, 11]);
    assert_eq!(value(&out, &gpu_pid(10)), None);
    assert_eq!(value(&out, GPU_PROC_TREE), Some(3.0));
    assert!(!out.unavailable);
    // Data on one device and none on another: the known bytes count.
    let out = tree_readings(&[p(0, 10, None), p(1, 10, Some(9))], &[10]);
    assert_eq!(value(&out, &gpu_pid(10)), Some(9.0));
}
