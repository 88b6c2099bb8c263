#!/usr/bin/env bash
# One call on a borrowed GPU machine (the `device` tool's `run`): unpack the GPU tier's bundle,
# run PHASEs within the call, pack the results (reports JSON/PNG, logs, nvidia-smi readings) into
# $OUT, which comes back.
#
#   RUN=run9a BUDGET=540 scripts/sglang-gpu/device-run.sh preflight vlm_image+error_paths ...
#
# The bundle: BUNDLE (default carry/gpu/memtest-sglang-gpu.tar.xz, made here with
# scripts/sglang-gpu/make-bundle.sh and carried with the call). RUN names the results
# (/tmp/$RUN, $OUT/$RUN.tgz, split into 15 MiB parts when larger); BUDGET the seconds the phases
# may take (the call's own limit is 600 s); the rest (MEMTEST_SGLANG_GPU_*, MEMTEST_*) reaches
# run-bundle.sh as set.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUNDLE=${BUNDLE:-$ROOT/carry/gpu/memtest-sglang-gpu.tar.xz}
RUN=${RUN:-run}
B=/tmp/memtest-bundle R=/tmp/$RUN
OUT=${OUT:?the device tool sets OUT (the folder that comes back)}
[ -f "$BUNDLE" ] || { echo "device-run: no bundle at $BUNDLE (make it with scripts/sglang-gpu/make-bundle.sh, carry it)" >&2; exit 2; }
mkdir -p "$B" "$R"
echo "== $(date -u +%FT%TZ) $(uname -r)"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,memory.reserved --format=csv
tar -xJf "$BUNDLE" -C "$B" 2>/dev/null ||
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$BUNDLE" "$B"
# The checkout's runner wins over the bundle's (a fix to it needs no new bundle).
install -m 0755 "$ROOT/scripts/sglang-gpu/run-bundle.sh" "$B/memtest-sglang-gpu/run-bundle.sh"
base=python3
[ -x /opt/torch/.venv/bin/python3 ] && base=/opt/torch/.venv/bin/python3
export MEMTEST_SGLANG_GPU_BASE_PYTHON=${MEMTEST_SGLANG_GPU_BASE_PYTHON:-$base} MEMTEST_OUT_DIR=$R PYTHONUNBUFFERED=1
export MEMTEST_SGLANG_GPU_BUDGET=${BUDGET:-540} MEMTEST_MAX_NEW_TOKENS=${MEMTEST_MAX_NEW_TOKENS:-16}
bash "$B/memtest-sglang-gpu/run-bundle.sh" "$@" >"$OUT/$RUN.log" 2>&1
echo "run-bundle exit $?" >>"$OUT/$RUN.log"
cp "$R/summary.txt" "$OUT/$RUN-summary.txt" 2>/dev/null; cp "$R/phases.tsv" "$OUT/$RUN-phases.tsv" 2>/dev/null
cp /tmp/memtest-sglang-gpu/make-models.log "$R/" 2>/dev/null
tar -czf "$OUT/$RUN.tgz" -C /tmp --exclude='*.svg' --exclude='*.html' "$RUN"
size=$(stat -c %s "$OUT/$RUN.tgz")
if [ "$size" -gt $((15 * 1048576)) ]; then
    (cd "$OUT" && split -b 15M "$RUN.tgz" "$RUN.tgz.part-" && rm "$RUN.tgz")
fi
ls -la "$OUT"
tail -c 6000 "$OUT/$RUN.log"
