#!/usr/bin/env bash
# The verdict study behind docs/calibration.md: long clean runs of a real SGLang on this CPU (the
# shapes a clean server's memory takes past 300 requests) and real-size leaks planted inside it
# (fixtures/sglang/planted_leaks), each judged by the CLI at its defaults.
#
#   scripts/sglang-cpu/verdict-study.sh [BIN] [OUT] [RUN...]
#
# BIN: the sglang-memtest executable (default target/release/sglang-memtest); OUT: where the
# reports go (default target/memtest/study); RUN: which runs (default all): clean-text,
# clean-vlm-image, clean-vlm-text, clean-error-paths, detokenizer, reject, gc-cycle.
# Needs scripts/setup-sglang-cpu.sh first. Re-judge a report later with `sglang-memtest analyze`.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/release/sglang-memtest}
OUT=${2:-target/memtest/study}
shift 2 2>/dev/null || shift $#
RUNS=${*:-clean-text clean-vlm-image clean-vlm-text clean-error-paths detokenizer reject gc-cycle}
eval "$(scripts/setup-sglang-cpu.sh --env)"
PLANTED="$(pwd)/fixtures/sglang/planted_leaks"
common=(--request-interval 0.02 --max-new-tokens 16)
fixed() { echo --num-requests "$1" --max-requests "$1"; }
plant() { echo --server-env "PYTHONPATH=$PLANTED" --server-env "MEMTEST_SGLANG_LEAK=$1" --server-env "MEMTEST_SGLANG_LEAK_BYTES=$2"; }
for run in $RUNS; do
    echo "== $run ($(date +%T))"
    case $run in
        clean-text) args=(--test-type text $(fixed 1200)) ;;
        clean-vlm-image) args=(--test-type vlm-image $(fixed 600)) ;;
        clean-vlm-text) args=(--test-type vlm-text $(fixed 600)) ;;
        clean-error-paths) args=(--test-type text --mix error-paths $(fixed 600)) ;;
        detokenizer) args=(--test-type text --num-requests 300 $(plant detokenizer 2048)) ;;
        reject) args=(--test-type text --mix error-paths --num-requests 300 $(plant reject 65536)) ;;
        gc-cycle) args=(--test-type text --num-requests 300 $(plant gc_cycle 262144)) ;;
        *) echo "unknown run $run" >&2; exit 2 ;;
    esac
    "$BIN" monitor "${args[@]}" "${common[@]}" --out-dir "$OUT/$run" || true
done
