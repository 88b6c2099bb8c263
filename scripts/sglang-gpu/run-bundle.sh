#!/usr/bin/env bash
# Install the GPU tier from this bundle and run it: real SGLang 0.5.23 serving tiny random-weight
# models on an NVIDIA GPU, with no network, no cargo and no SGLang kernels on the machine.
#
#   memtest-sglang-gpu/run-bundle.sh                 # install (once), then every phase below
#   memtest-sglang-gpu/run-bundle.sh PHASE ...       # those phases, in that order; A+B runs A and B at once
#   memtest-sglang-gpu/run-bundle.sh --install       # install only, then print the exports
#   eval "$(memtest-sglang-gpu/run-bundle.sh --env)" # the MEMTEST_* exports of a finished install
#
# Phases (each a test binary of the bundle, run unchanged with the MEMTEST_* settings):
#   preflight            versions; the sgl_kernel stand-in against float64 formulas on CUDA;
#                        SGLang's CUDA-path imports; one Triton kernel
#   text_model vlm_no_mm_processor vlm_image error_paths      the scenario tests (clean SGLang)
#   planted_scheduler    tests/sglang_gpu.rs: a GPU tensor kept per request in the scheduler
#   planted_image        ... kept per image in the tokenizer manager (the launcher process)
#   planted_kv           ... KV slots never freed: SGLang's accounting, GPU memory flat
#   gpu                  tests/gpu.rs against the reference server (no SGLang)
#   seed_images          the seed's vlm-image at 50 requests with one repeated image
#   seed_unique          the same with a unique image per request (the #9365 before/after pair)
#   cuda_graph           text_model with the Triton attention backend and CUDA graphs captured
#
# Phases run at once (A+B) share the card: both get MEMTEST_MEM_FRACTION=0.3 and
# MEMTEST_MAX_TOTAL_TOKENS=65536 unless set (SGLang sizes its pool from the free memory it sees),
# and each report's device-wide gpu.used@dev:* sees both servers; per-process GPU metrics do not.
#
# Install (idempotent: a second run takes a second) into MEMTEST_SGLANG_GPU_DIR (default
# /tmp/memtest-sglang-gpu): a venv made from MEMTEST_SGLANG_GPU_BASE_PYTHON (default python3; it must
# have torch with CUDA and be the Python version the bundle was made for) that sees the base's
# packages, plus the bundle's wheels, the stand-in (a .pth line), the stubs the base lacks, and the
# tiny models. Results: MEMTEST_OUT_DIR (default ./memtest-gpu-out): one folder and one log per
# phase, phases.tsv, nvidia-smi.csv / nvidia-smi-apps.csv (whole-GPU and per-process readings each
# second), summary.txt. MEMTEST_SGLANG_GPU_BUDGET=S skips phases whose estimate no longer fits in S
# seconds from the start (0: no budget); MEMTEST_SGLANG_GPU_MAX_FACTOR=F caps a scenario test's
# adaptive extension at F times its planned requests (the preset's 4 unless set). A failed
# preflight stops the run (MEMTEST_SGLANG_GPU_KEEP_GOING=1 goes on). A phase may run twice its
# estimate, or MEMTEST_SGLANG_GPU_PHASE_LIMIT=S seconds (within the budget); then SIGTERM, and
# the watchdog writes what was measured. MEMTEST_* knobs set by the caller win over the tier's.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${MEMTEST_SGLANG_GPU_DIR:-/tmp/memtest-sglang-gpu}"
BASE_PY="${MEMTEST_SGLANG_GPU_BASE_PYTHON:-python3}"
BUDGET="${MEMTEST_SGLANG_GPU_BUDGET:-0}"
VENV="$DIR/venv"
PY="$VENV/bin/python"
ENV_FILE="$DIR/memtest.env"
BIN="$HERE/bin"
T0=$SECONDS

say() { printf 'run-bundle: %s\n' "$*" >&2; }
refuse() {
    printf 'run-bundle: cannot run the GPU tier here: %s\n' "$*" >&2
    exit 2
}

ALL_PHASES=(preflight text_model vlm_no_mm_processor vlm_image error_paths planted_scheduler
    planted_image planted_kv gpu seed_images seed_unique cuda_graph)
# Seconds a phase takes on an H100 (SGLang starts in ~50 s), for the budget.
declare -A ESTIMATE=([preflight]=30 [text_model]=80 [vlm_no_mm_processor]=80 [vlm_image]=80
    [error_paths]=90 [planted_scheduler]=90 [planted_image]=90 [planted_kv]=90 [gpu]=20
    [seed_images]=80 [seed_unique]=80 [cuda_graph]=110)
# The scenario tests' planned measured requests (the presets'), for MEMTEST_SGLANG_GPU_MAX_FACTOR.
declare -A PLANNED=([text_model]=100 [vlm_no_mm_processor]=100 [vlm_image]=50 [error_paths]=200)

mode=run
phases=()
for arg in "$@"; do
    case "$arg" in
    --env) mode=env ;;
    --install) mode=install ;;
    -h | --help)
        sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    -*) refuse "unknown option '$arg' (usage: run-bundle.sh [--env|--install] [PHASE|A+B ...])" ;;
    *)
        for p in ${arg//+/ }; do
            [ -n "${ESTIMATE[$p]:-}" ] || refuse "unknown phase '$p' (phases: ${ALL_PHASES[*]})"
        done
        phases+=("$arg")
        ;;
    esac
done
[[ "$BUDGET" =~ ^[0-9]+$ ]] || refuse "MEMTEST_SGLANG_GPU_BUDGET=$BUDGET is not a whole number of seconds"
FACTOR="${MEMTEST_SGLANG_GPU_MAX_FACTOR:-}"
[[ -z "$FACTOR" || "$FACTOR" =~ ^[1-9]$ ]] || refuse "MEMTEST_SGLANG_GPU_MAX_FACTOR=$FACTOR is not a whole number from 1 to 9"
PHASE_LIMIT="${MEMTEST_SGLANG_GPU_PHASE_LIMIT:-}"
[[ -z "$PHASE_LIMIT" || "$PHASE_LIMIT" =~ ^[1-9][0-9]*$ ]] || refuse "MEMTEST_SGLANG_GPU_PHASE_LIMIT=$PHASE_LIMIT is not a whole number of seconds"
[ ${#phases[@]} -gt 0 ] || phases=("${ALL_PHASES[@]}")

print_env() {
    while IFS='=' read -r key value; do
        printf 'export %s=%q\n' "$key" "$value"
    done <"$ENV_FILE"
}

if [ "$mode" = env ]; then
    [ -f "$ENV_FILE" ] || refuse "no finished install in $DIR (run run-bundle.sh --install first)"
    print_env
    exit 0
fi

# --- install -----------------------------------------------------------------------------------
install_tier() {
    [ "$(uname -s)/$(uname -m)" = Linux/x86_64 ] || refuse "the bundle is built for Linux x86_64 (this is $(uname -s)/$(uname -m))"
    [ -f "$HERE/BUNDLE.txt" ] && [ -d "$HERE/wheels" ] && [ -x "$BIN/sglang-memtest" ] ||
        refuse "$HERE is not an unpacked bundle (no BUNDLE.txt, wheels/ or bin/): make it with scripts/sglang-gpu/make-bundle.sh"
    command -v "$BASE_PY" >/dev/null || refuse "no Python '$BASE_PY' (set MEMTEST_SGLANG_GPU_BASE_PYTHON to the Python that has torch)"
    local want have
    want="$(sed -n 's/^python: cp\([0-9]\)\([0-9]*\) .*/\1.\2/p' "$HERE/BUNDLE.txt")"
    have="$("$BASE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" || refuse "'$BASE_PY' does not run"
    [ "$want" = "$have" ] || refuse "the bundle's wheels are for Python $want, '$BASE_PY' is $have (make the bundle with MEMTEST_SGLANG_GPU_PYTHON_VERSION=$have)"
    "$BASE_PY" -c 'import torch, transformers' 2>/dev/null ||
        refuse "'$BASE_PY' cannot import torch and transformers: the tier uses the machine's own (set MEMTEST_SGLANG_GPU_BASE_PYTHON)"

    local stamp
    stamp="$(cat "$HERE/BUNDLE.txt" <(command -v "$BASE_PY") <("$BASE_PY" -c 'import sys, torch; print(sys.version, torch.__version__)') | sha256sum | cut -c1-16)"
    if [ "$(cat "$DIR/.stamp" 2>/dev/null)" = "$stamp" ] && [ -f "$ENV_FILE" ]; then
        say "already installed in $DIR (stamp $stamp)"
        return
    fi
    local started=$SECONDS
    rm -rf "$DIR" && mkdir -p "$DIR" || refuse "cannot create $DIR"
    say "making the venv $VENV from $BASE_PY (it sees the base's packages)"
    "$BASE_PY" -m venv --without-pip "$VENV" || refuse "'$BASE_PY -m venv --without-pip' failed (no venv module?)"
    local site
    site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # The base's site dirs, with their own .pth files, after the venv's own.
    "$BASE_PY" - "$site/_memtest_base_site.pth" <<'EOF' || refuse "cannot list the base Python's site dirs"
import sys
dirs = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
with open(sys.argv[1], "w") as f:
    for d in dirs:
        f.write("import site; site.addsitedir(%r)\n" % d)
EOF
    say "unpacking $(ls "$HERE"/wheels/*.whl | wc -l) wheels into $site"
    "$PY" - "$site" "$HERE"/wheels/*.whl <<'EOF' || refuse "unpacking the wheels failed"
import os, shutil, sys, zipfile
site, wheels = sys.argv[1], sys.argv[2:]
for w in wheels:
    with zipfile.ZipFile(w) as z:
        z.extractall(site)
for d in os.listdir(site):  # NAME.data/{purelib,platlib} go to the site dir, as pip does
    if d.endswith(".data"):
        for sub in ("purelib", "platlib"):
            src = os.path.join(site, d, sub)
            for e in os.listdir(src) if os.path.isdir(src) else ():
                shutil.move(os.path.join(src, e), os.path.join(site, e))
        shutil.rmtree(os.path.join(site, d))
EOF
    install -m 0644 "$HERE/python/memtest_gpu_sgl_kernel.py" "$site/"
    printf 'import memtest_gpu_sgl_kernel\n' >"$site/memtest_gpu_sgl_kernel.pth"
    local stub name
    for stub in "$HERE"/python/stubs/*; do
        name="$(basename "$stub" .py)"
        [ "$name" = README.md ] && continue
        if "$BASE_PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$name') is None)" 2>/dev/null; then
            say "stub $name: not installed (the machine has the real $name)"
        else
            cp -r "$stub" "$site/" && say "stub $name: installed (the machine lacks $name)"
        fi
    done
    "$PY" -c 'import sglang, sgl_kernel, torch; assert sgl_kernel.__memtest_shim__; print("run-bundle: sglang", sglang.__version__, "torch", torch.__version__, file=__import__("sys").stderr)' ||
        refuse "SGLang does not import in $VENV (see the error above)"
    say "making the tiny models"
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MEMTEST_SGL_SHIM_QUIET=1 "$PY" "$HERE/python/make_tiny_models.py" "$DIR/models" >"$DIR/make-models.log" 2>&1 ||
        { tail -20 "$DIR/make-models.log" >&2; refuse "making the tiny models failed (log: $DIR/make-models.log)"; }
    cat >"$ENV_FILE" <<EOF
MEMTEST_PYTHON=$PY
MEMTEST_TEXT_MODEL=$DIR/models/tiny-llama
MEMTEST_VLM_MODEL=$DIR/models/tiny-qwen25vl
MEMTEST_MM_ATTENTION_BACKEND=sdpa
MEMTEST_SERVER_ARGS=--attention-backend torch_native --sampling-backend pytorch --disable-cuda-graph --grammar-backend none
MEMTEST_SERVER_ENV=SGLANG_SKIP_SGL_KERNEL_VERSION_CHECK=1 SGLANG_FORCE_FUSED_OP_BACKEND=torch TORCHDYNAMO_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRITON_CACHE_DIR=$DIR/triton-cache
MEMTEST_REFERENCE_BIN=$BIN/sglang-memtest
MEMTEST_PLANTED_LEAKS_DIR=$HERE/fixtures/sglang/planted_leaks
EOF
    echo "$stamp" >"$DIR/.stamp"
    say "installed in $((SECONDS - started)) s"
}

install_tier
if [ "$mode" = install ]; then
    print_env
    say "ready: eval \"\$($HERE/run-bundle.sh --env)\"; then e.g. $BIN/text_model --ignored"
    exit 0
fi

# --- run ---------------------------------------------------------------------------------------
# The tier's settings, under anything the caller set.
while IFS='=' read -r key value; do
    [ -n "${!key:-}" ] || export "$key=$value"
done <"$ENV_FILE"
export MEMTEST_WATCHDOG="${MEMTEST_WATCHDOG:-1}" # a SIGTERM (a phase's timeout) stops the servers and writes the reports
export MEMTEST_STARTUP_TIMEOUT="${MEMTEST_STARTUP_TIMEOUT:-240}"
OUT="${MEMTEST_OUT_DIR:-$PWD/memtest-gpu-out}"
mkdir -p "$OUT" || refuse "cannot create $OUT"
OUT="$(cd "$OUT" && pwd)"
printf 'phase\tstart_unix\tend_unix\tseconds\texit\n' >"$OUT/phases.tsv"

SAMPLER=""
stop_sampler() { [ -z "$SAMPLER" ] || kill "$SAMPLER" 2>/dev/null; SAMPLER=""; }
trap stop_sampler EXIT
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv >"$OUT/nvidia-smi-start.txt" 2>&1
    (
        echo "unix_s,gpu_used_mib,gpu_total_mib" >"$OUT/nvidia-smi.csv"
        echo "unix_s,pid,used_mib" >"$OUT/nvidia-smi-apps.csv"
        while :; do
            t="$(date +%s.%N)"
            nvidia-smi --query-gpu=memory.used,memory.total --format=csv,noheader,nounits 2>/dev/null | sed "s/^/$t,/; s/ //g" >>"$OUT/nvidia-smi.csv"
            nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null | sed "s/^/$t,/; s/ //g" >>"$OUT/nvidia-smi-apps.csv"
            sleep 1
        done
    ) &
    SAMPLER=$!
fi

left() {
    if [ "$BUDGET" -gt 0 ]; then echo $((BUDGET - (SECONDS - T0))); else echo 100000; fi
}

# The command of one phase (run in a subshell with its own MEMTEST_OUT_DIR), at most $2 seconds:
# then SIGTERM (the watchdog stops the phase's servers and writes the reports), SIGKILL 30 s later
# (the reaper stops what is left).
phase_cmd() {
    local t=(timeout -s TERM -k 30 "$2")
    case "$1" in
    preflight)
        MEMTEST_SGL_SHIM_QUIET=1 "${t[@]}" "$PY" "$HERE/python/test_memtest_gpu_sgl_kernel.py" cuda | grep -v '^ok ' &&
            "${t[@]}" "$PY" "$HERE/python/preflight.py"
        ;;
    text_model | vlm_no_mm_processor | vlm_image | error_paths)
        if [ -n "$FACTOR" ] && [ -z "${MEMTEST_MAX_REQUESTS:-}" ]; then
            export MEMTEST_MAX_REQUESTS=$((FACTOR * ${MEMTEST_NUM_REQUESTS:-${PLANNED[$1]}}))
        fi
        "${t[@]}" "$BIN/$1" --ignored --exact "$1" --nocapture
        ;;
    planted_scheduler) "${t[@]}" "$BIN/sglang_gpu" --ignored --exact a_gpu_tensor_kept_per_request_in_the_scheduler_is_caught_there --nocapture ;;
    planted_image) "${t[@]}" "$BIN/sglang_gpu" --ignored --exact a_gpu_tensor_kept_per_image_in_the_tokenizer_manager_is_caught_there --nocapture ;;
    planted_kv) "${t[@]}" "$BIN/sglang_gpu" --ignored --exact a_kv_slot_leak_is_caught_by_the_idle_accounting_with_gpu_memory_flat --nocapture ;;
    gpu) "${t[@]}" "$BIN/gpu" --ignored --test-threads=1 --nocapture ;;
    seed_images | seed_unique)
        local mode=repeated
        [ "$1" = seed_unique ] && mode=unique
        # The seed's own settings: its warm-up and 50 requests, whatever the tier's tests were given.
        MEMTEST_IMAGE_MODE=$mode "${t[@]}" env -u MEMTEST_WARMUP_REQUESTS -u MEMTEST_NUM_REQUESTS \
            -u MEMTEST_MAX_REQUESTS "$BIN/sglang-memtest" run --test vlm-with-images \
            --num-requests 50 --max-requests 50 --out-dir "$MEMTEST_OUT_DIR"
        ;;
    cuda_graph)
        MEMTEST_SERVER_ARGS="--attention-backend triton --sampling-backend pytorch --grammar-backend none --cuda-graph-max-bs-decode 4 --disable-prefill-cuda-graph" \
            "${t[@]}" "$BIN/text_model" --ignored --exact text_model --nocapture
        ;;
    esac
}

run_one() { # phase, limit in seconds
    local p=$1 limit=$2 start end rc
    start=$(date +%s)
    say "phase $p: started ($(left) s of the budget left, at most $limit s)"
    (
        export MEMTEST_OUT_DIR="$OUT/$p"
        mkdir -p "$MEMTEST_OUT_DIR"
        phase_cmd "$p" "$limit"
    ) >"$OUT/$p.log" 2>&1
    rc=$?
    end=$(date +%s)
    printf '%s\t%s\t%s\t%s\t%s\n' "$p" "$start" "$end" $((end - start)) "$rc" >>"$OUT/phases.tsv"
    say "phase $p: exit $rc after $((end - start)) s (log: $OUT/$p.log)"
    tail -n 25 "$OUT/$p.log" | sed "s/^/  [$p] /" >&2
    if [ -d "$DIR/triton-cache" ]; then
        say "Triton cache: $(find "$DIR/triton-cache" -name '*.json' 2>/dev/null | wc -l) file(s) so far"
    fi
    return "$rc"
}

status=0
for item in "${phases[@]}"; do
    members=(${item//+/ })
    need=0
    for p in "${members[@]}"; do [ "${ESTIMATE[$p]}" -gt "$need" ] && need=${ESTIMATE[$p]}; done
    if [ "$(left)" -lt "$need" ]; then
        say "phase $item: SKIPPED (it needs ~$need s, $(left) s of the ${BUDGET} s budget are left)"
        printf '%s\t-\t-\t0\tskipped\n' "$item" >>"$OUT/phases.tsv"
        continue
    fi
    limit=${PHASE_LIMIT:-$((2 * need))}
    [ "$BUDGET" -gt 0 ] && [ "$limit" -gt "$(left)" ] && limit=$(left)
    if [ ${#members[@]} -eq 1 ]; then
        run_one "$item" "$limit" || status=1
        if [ "$item" = preflight ] && [ "$status" -ne 0 ] && [ "${MEMTEST_SGLANG_GPU_KEEP_GOING:-0}" != 1 ]; then
            say "preflight failed: no phase can serve (MEMTEST_SGLANG_GPU_KEEP_GOING=1 goes on anyway)"
            break
        fi
    else
        pids=()
        for p in "${members[@]}"; do
            (
                export MEMTEST_MEM_FRACTION="${MEMTEST_MEM_FRACTION:-0.3}"
                export MEMTEST_MAX_TOTAL_TOKENS="${MEMTEST_MAX_TOTAL_TOKENS:-65536}"
                run_one "$p" "$limit"
            ) &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    fi
done
stop_sampler

"$BASE_PY" "$HERE/python/summarize.py" "$OUT" >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
column -t -s $'\t' "$OUT/phases.tsv" 2>/dev/null || cat "$OUT/phases.tsv"
say "done in $((SECONDS - T0)) s; results in $OUT"
exit "$status"
