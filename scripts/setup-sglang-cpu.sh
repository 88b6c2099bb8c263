#!/usr/bin/env bash
# Set up a real SGLang that serves on this machine's CPU, for the real-engine test tier.
#
#   scripts/setup-sglang-cpu.sh            # install (idempotent: a second run takes a second)
#   scripts/setup-sglang-cpu.sh --env      # only print the exports of a finished install:
#                                          #   eval "$(scripts/setup-sglang-cpu.sh --env)"
#
# What it makes, in MEMTEST_SGLANG_CPU_DIR (default ~/.cache/sglang-memtest/sglang-cpu, outside
# any clone so CI and later runs reuse it):
#   venv/     Python 3.11 venv with sglang 0.5.23 and torch 2.14.1 at the exact pins of
#             scripts/sglang-cpu/requirements.lock, from the package registry only, plus our
#             `sgl_kernel` stand-in (scripts/sglang-cpu/memtest_sgl_kernel.py)
#   models/   tiny-llama and tiny-qwen25vl, random weights made here (nothing from a model hub)
#   memtest.env  the MEMTEST_* settings the tests read (also printed at the end)
#
# It refuses, saying why, on a machine it cannot serve on: not Linux x86_64, no Python 3.11,
# glibc older than 2.34 (the sglang wheel is cp311 manylinux_2_34), too little disk (~9 GB).
# Knobs: MEMTEST_SGLANG_CPU_DIR (install folder), MEMTEST_SGLANG_CPU_BASE_PYTHON (the Python 3.11
# to build the venv from; default: python3.11, else python3 if it is 3.11).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/sglang-cpu"
DIR="${MEMTEST_SGLANG_CPU_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sglang-memtest/sglang-cpu}"
VENV="$DIR/venv"
MODELS="$DIR/models"
ENV_FILE="$DIR/memtest.env"
NEED_GB=9

say() { printf 'setup-sglang-cpu: %s\n' "$*" >&2; }
refuse() {
    printf 'setup-sglang-cpu: cannot set up SGLang on CPU here: %s\n' "$*" >&2
    exit 2
}

# The settings as shell exports (quoted) on stdout; what to do next on stderr.
print_env() {
    while IFS='=' read -r key value; do
        printf 'export %s=%q\n' "$key" "$value"
    done <"$ENV_FILE"
    say "ready in $DIR. Run the tier:  cargo test --test sglang_cpu -- --ignored"
    say "or the scenario tests against it:  eval \"\$(scripts/setup-sglang-cpu.sh --env)\" && cargo test --test text_model -- --ignored"
}

if [ "${1:-}" = "--env" ]; then
    [ -f "$ENV_FILE" ] || refuse "no finished install in $DIR (run scripts/setup-sglang-cpu.sh first)"
    print_env
    exit 0
fi
[ $# -eq 0 ] || refuse "unknown argument '$1' (usage: setup-sglang-cpu.sh [--env])"

# --- can this machine serve? -------------------------------------------------------------------
[ "$(uname -s)" = Linux ] || refuse "SGLang's CPU engine runs on Linux only (this is $(uname -s))"
[ "$(uname -m)" = x86_64 ] || refuse "the pinned wheels are x86_64 builds (this is $(uname -m))"

glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
[ -n "$glibc" ] || refuse "no glibc found (musl?): the sglang wheel needs glibc >= 2.34"
if [ "$(printf '%s\n2.34\n' "$glibc" | sort -V | head -1)" != 2.34 ]; then
    refuse "glibc $glibc is older than 2.34, which the sglang 0.5.23 wheel (manylinux_2_34) needs; use a newer distribution (Debian 12, Ubuntu 22.04 or later)"
fi

is_py311() { "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }
BASE_PY="${MEMTEST_SGLANG_CPU_BASE_PYTHON:-}"
if [ -n "$BASE_PY" ]; then
    is_py311 "$BASE_PY" || refuse "MEMTEST_SGLANG_CPU_BASE_PYTHON=$BASE_PY is not a Python 3.11 with the venv module"
else
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null && is_py311 "$candidate"; then
            BASE_PY="$(command -v "$candidate")"
            break
        fi
    done
    [ -n "$BASE_PY" ] || refuse "no Python 3.11 with the venv module on PATH (the sglang 0.5.23 wheel is cp311 only); install python3.11 and python3.11-venv, or set MEMTEST_SGLANG_CPU_BASE_PYTHON"
fi

mkdir -p "$DIR"
exec 9>"$DIR/.setup.lock"
flock 9 # two setups at once would install into one venv

# --- already done? -----------------------------------------------------------------------------
stamp="$(cat "$SRC/requirements.lock" "$SRC/memtest_sgl_kernel.py" "$SRC/make_tiny_models.py" \
    <("$BASE_PY" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)"
if [ "$(cat "$DIR/.stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$VENV/bin/python" ] &&
    [ -f "$MODELS/tiny-llama/config.json" ] && [ -f "$MODELS/tiny-qwen25vl/config.json" ]; then
    say "already set up (stamp $stamp)"
    print_env
    exit 0
fi

# --- install -----------------------------------------------------------------------------------
started=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
    avail_kb="$(df -Pk "$DIR" | awk 'NR == 2 {print $4}')"
    if [ "$avail_kb" -lt $((NEED_GB * 1024 * 1024)) ]; then
        refuse "only $((avail_kb / 1024 / 1024)) GB free in $DIR; the venv needs about $NEED_GB GB (set MEMTEST_SGLANG_CPU_DIR to a bigger disk)"
    fi
    say "creating the venv with $BASE_PY"
    "$BASE_PY" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check --no-input --progress-bar off -q "$@"; }

say "installing the pinned packages (a few minutes the first time; pip's cache makes later runs fast)"
pip_install pip==26.3
# --no-deps: exactly the lock, nothing resolved, the CUDA-only kernels left out
pip_install --no-deps --prefer-binary -r "$SRC/requirements.lock"

site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
install -m 0644 "$SRC/memtest_sgl_kernel.py" "$site/memtest_sgl_kernel.py"
printf 'import memtest_sgl_kernel\n' >"$site/memtest_sgl_kernel.pth"

say "checking that SGLang's CPU engine imports"
SGLANG_USE_CPU_ENGINE=1 "$PY" - <<'EOF'
import sgl_kernel, torch, sglang
assert getattr(sgl_kernel, "__memtest_shim__", False), "sgl_kernel is not the memtest shim: %r" % sgl_kernel
assert not hasattr(torch.ops.sgl_kernel, "convert_weight_packed"), "AMX kernels must stay off"
import sglang.srt.mem_cache.allocation  # imports sgl_kernel.assign_req_to_token_pool_cpu
print("setup-sglang-cpu: sglang", sglang.__version__, "torch", torch.__version__)
EOF

if [ ! -f "$MODELS/tiny-llama/config.json" ] || [ ! -f "$MODELS/tiny-qwen25vl/config.json" ] ||
    [ "$(cat "$MODELS/.stamp" 2>/dev/null)" != "$(sha256sum <"$SRC/make_tiny_models.py" | cut -c1-16)" ]; then
    say "making the tiny models"
    mkdir -p "$MODELS"
    if ! HF_HUB_OFFLINE=1 "$PY" "$SRC/make_tiny_models.py" "$MODELS" >"$DIR/make-models.log" 2>&1; then
        tail -20 "$DIR/make-models.log" >&2
        refuse "making the tiny models failed (log: $DIR/make-models.log)"
    fi
    sha256sum <"$SRC/make_tiny_models.py" | cut -c1-16 >"$MODELS/.stamp"
fi

cat >"$ENV_FILE.tmp" <<EOF
MEMTEST_DEVICE=cpu
MEMTEST_PYTHON=$PY
MEMTEST_TEXT_MODEL=$MODELS/tiny-llama
MEMTEST_VLM_MODEL=$MODELS/tiny-qwen25vl
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"
echo "$stamp" >"$DIR/.stamp"
say "done in $((SECONDS - started)) s"
print_env
