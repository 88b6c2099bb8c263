#!/usr/bin/env bash
# Scheduler memory over many unique images on the SGLang CPU tier: multimodal cache off/on,
# glibc malloc (default, and with a fixed mmap threshold), tcmalloc, jemalloc.
# Results: target/memtest/study/<case>/vlm_image.{json,png}; docs/validation-sglang-cpu.md.
#
#   scripts/setup-sglang-cpu.sh && scripts/sglang-cpu/vlm-memory-study.sh [REQUESTS] [CASE...]
#
# tcmalloc and jemalloc come from Debian (libtcmalloc-minimal4, libjemalloc2).
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "$(scripts/setup-sglang-cpu.sh --env)"
N="${1:-1000}"; shift || true
CASES=("$@"); [ ${#CASES[@]} -gt 0 ] || CASES=(glibc-cache-off glibc-cache-on glibc-mmap-fixed tcmalloc jemalloc)
LIB=/usr/lib/x86_64-linux-gnu
BIN=target/release/sglang-memtest
[ -x "$BIN" ] || cargo build --release --quiet
for case in "${CASES[@]}"; do
    env_args=()
    case "$case" in
        glibc-cache-off) ;;
        glibc-cache-on) env_args=(--server-env SGLANG_VLM_CACHE_SIZE_MB=100) ;;
        glibc-mmap-fixed) env_args=(--server-env MALLOC_MMAP_THRESHOLD_=131072 --server-env MALLOC_TRIM_THRESHOLD_=131072) ;;
        tcmalloc) env_args=(--server-env LD_PRELOAD=$LIB/libtcmalloc_minimal.so.4) ;;
        jemalloc) env_args=(--server-env LD_PRELOAD=$LIB/libjemalloc.so.2) ;;
        *) echo "unknown case $case" >&2; exit 2 ;;
    esac
    echo "== $case: $N unique 448x448 images" >&2
    "$BIN" monitor --test-type vlm-image --device cpu --model "$MEMTEST_VLM_MODEL" --python "$MEMTEST_PYTHON" \
        --num-requests "$N" --request-interval 0 --max-new-tokens 8 "${env_args[@]}" \
        --out-dir "target/memtest/study/$case" > "target/memtest/study-$case.txt" 2>&1 || true
    grep -E "^(PASS|LEAK|INCONCLUSIVE|ERROR)|host.rss@pid" "target/memtest/study-$case.txt" >&2 || tail -5 "target/memtest/study-$case.txt" >&2
done
