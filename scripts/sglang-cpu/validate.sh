#!/usr/bin/env bash
# The three scenarios against SGLang on the CPU, 300 measured requests each, with the CLI (release):
# reports and plots in target/memtest/validation/, per-process RSS tables on stdout.
# Numbers in docs/validation-sglang-cpu.md come from this script.
#
#   scripts/setup-sglang-cpu.sh && scripts/sglang-cpu/validate.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/../.."
eval "$(scripts/setup-sglang-cpu.sh --env)"
N="${1:-300}"
OUT=target/memtest/validation
cargo build --release --quiet
for test in text vlm-text vlm-image; do
    model="$MEMTEST_VLM_MODEL"; [ "$test" = text ] && model="$MEMTEST_TEXT_MODEL"
    target/release/sglang-memtest monitor --test-type "$test" --device cpu --model "$model" \
        --python "$MEMTEST_PYTHON" --num-requests "$N" --out-dir "$OUT" >"$OUT-$test.txt" 2>&1 || true
    head -1 "$OUT-$test.txt"
done
for report in "$OUT"/*.json; do
    echo "== $report"
    python3 scripts/sglang-cpu/rss-by-request.py "$report" 50
done
