#!/usr/bin/env bash
# Make the GPU tier's offline bundle: everything a GPU machine without network (and without cargo)
# needs to run the scenario tests against a real SGLang 0.5.23, in one compressed file.
#
#   scripts/sglang-gpu/make-bundle.sh [OUT_FILE]     # default target/sglang-gpu/memtest-sglang-gpu.tar.xz
#
# Run it where cargo and a package registry are (a developer machine, a CI job); carry the file to
# the GPU machine and run it there:  tar -xJf memtest-sglang-gpu.tar.xz && memtest-sglang-gpu/run-bundle.sh
#
# In the bundle (memtest-sglang-gpu/):
#   bin/        stripped release builds (--features cuda) of the CLI `sglang-memtest` (also the
#               reference server) and of the test binaries text_model, vlm_no_mm_processor,
#               vlm_image, error_paths, gpu, sglang_gpu
#   wheels/     scripts/sglang-gpu/wheels.lock for the GPU machine's Python (default cp312,
#               manylinux x86_64), the sglang wheel slimmed of what no server process loads
#   python/     the sgl_kernel stand-in and its test, preflight.py, make_tiny_models.py, stubs/
#   fixtures/sglang/planted_leaks/   the planted leaks (sitecustomize.py)
#   run-bundle.sh, BUNDLE.txt        the installer/runner; what was built, from which commit
#
# Knobs: MEMTEST_SGLANG_GPU_PYTHON_VERSION (the GPU machine's Python, default 3.12),
# MEMTEST_SGLANG_GPU_WHEEL_CACHE (downloaded wheels, default ~/.cache/sglang-memtest/sglang-gpu/wheels-cpXY),
# MEMTEST_SGLANG_GPU_MAX_MIB (refuse a bundle larger than this, default 64: the device tool's carry limit),
# CARGO_TARGET_DIR (as cargo reads it).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYVER="${MEMTEST_SGLANG_GPU_PYTHON_VERSION:-3.12}"
MAX_MIB="${MEMTEST_SGLANG_GPU_MAX_MIB:-64}"
TARGETS=(text_model vlm_no_mm_processor vlm_image error_paths gpu sglang_gpu)

say() { printf 'make-bundle: %s\n' "$*" >&2; }
refuse() {
    printf 'make-bundle: cannot make the bundle: %s\n' "$*" >&2
    exit 2
}

OUT_FILE=""
for arg in "$@"; do
    case "$arg" in
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
        exit 0
        ;;
    -*) refuse "unknown option '$arg' (usage: make-bundle.sh [OUT_FILE])" ;;
    *)
        [ -z "$OUT_FILE" ] || refuse "one output file only (got '$OUT_FILE' and '$arg')"
        OUT_FILE="$arg"
        ;;
    esac
done
[[ "$PYVER" =~ ^3\.[0-9]+$ ]] || refuse "MEMTEST_SGLANG_GPU_PYTHON_VERSION=$PYVER is not a Python version such as 3.12"
[[ "$MAX_MIB" =~ ^[1-9][0-9]*$ ]] || refuse "MEMTEST_SGLANG_GPU_MAX_MIB=$MAX_MIB is not a whole number of MiB"
CP="cp${PYVER/./}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT_FILE="${OUT_FILE:-$TARGET_DIR/sglang-gpu/memtest-sglang-gpu.tar.xz}"
case "$OUT_FILE" in *.tar.xz) ;; *) refuse "the output file must end in .tar.xz (got '$OUT_FILE')" ;; esac
WHEELS="${MEMTEST_SGLANG_GPU_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sglang-memtest/sglang-gpu/wheels-$CP}"

for tool in cargo python3 strip tar xz sha256sum; do
    command -v "$tool" >/dev/null || refuse "'$tool' is not on PATH"
done
python3 -m pip --version >/dev/null 2>&1 || refuse "python3 has no pip (it downloads the wheels)"

# --- wheels ------------------------------------------------------------------------------------
mkdir -p "$WHEELS"
say "downloading the wheels of wheels.lock for $CP (cached in $WHEELS)"
platforms=()
for tag in manylinux_2_17 manylinux2014 manylinux_2_24 manylinux_2_26 manylinux_2_27 manylinux_2_28 manylinux_2_34; do
    platforms+=(--platform "${tag}_x86_64")
done
if ! python3 -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
    --python-version "$PYVER" --implementation cp "${platforms[@]}" -d "$WHEELS" \
    -r "$HERE/wheels.lock" >&2; then
    refuse "pip could not download the wheels of $HERE/wheels.lock for Python $PYVER (is the registry reachable?)"
fi

STAGE="$(mktemp -d "${TMPDIR:-/tmp}/memtest-bundle.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
B="$STAGE/memtest-sglang-gpu"
mkdir -p "$B/bin" "$B/wheels" "$B/python" "$B/fixtures/sglang"

# Exactly one wheel per line of the lock, at the locked version.
python3 - "$HERE/wheels.lock" "$WHEELS" "$B/wheels" <<'EOF'
import os, re, shutil, sys
lock, cache, dest = sys.argv[1:]
norm = lambda n: re.sub(r"[-_.]+", "_", n).lower()
wanted = {}
for line in open(lock):
    line = line.strip()
    if line and not line.startswith("#"):
        name, version = line.split("==")
        wanted[norm(name)] = version
have = {}
for f in os.listdir(cache):
    if f.endswith(".whl"):
        name, version = f.split("-")[:2]
        if wanted.get(norm(name)) == version:
            have.setdefault(norm(name), []).append(f)
missing = sorted(set(wanted) - set(have))
if missing:
    sys.exit("make-bundle: cannot make the bundle: no downloaded wheel for %s" % ", ".join(missing))
for name, files in have.items():
    shutil.copy(os.path.join(cache, sorted(files)[-1]), dest)
print("make-bundle: %d wheels" % len(have), file=sys.stderr)
EOF

# Slim sglang: the Rust extensions of other serving modes (Rust HTTP server, gRPC, benchmarks, the
# image processors of DeepSeek-V4.1 / Inkling / Muse), the diffusion runtime, tests and benchmarks.
# No server process of the tier imports them; RECORD is rewritten to match.
python3 - "$B/wheels" <<'EOF'
import base64, glob, hashlib, os, sys, zipfile
path = glob.glob(os.path.join(sys.argv[1], "sglang-*.whl"))[0]
drop_dirs = ("sglang/multimodal_gen/", "sglang/test/", "sglang/benchmark/")
drop_so = tuple("sglang/srt/rust_extensions/%s." % n for n in ("_server", "_bench", "_grpc", "_multimodal"))
before = os.path.getsize(path)
src = zipfile.ZipFile(path)
record = next(n for n in src.namelist() if n.endswith(".dist-info/RECORD"))
rows, dropped = [], 0
with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        if info.filename.startswith(drop_dirs + drop_so):
            dropped += 1
            continue
        if info.filename == record:
            continue
        data = src.read(info)
        dst.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append("%s,sha256=%s,%d" % (info.filename, digest, len(data)))
    rows.append(record + ",,")
    dst.writestr(record, "\n".join(rows) + "\n")
src.close()
os.replace(path + ".tmp", path)
print("make-bundle: %s slimmed %.1f -> %.1f MiB (%d files dropped)" % (
    os.path.basename(path), before / 2**20, os.path.getsize(path) / 2**20, dropped), file=sys.stderr)
EOF

# --- binaries ----------------------------------------------------------------------------------
say "building the release binaries (--features cuda): ${TARGETS[*]} and the CLI"
test_args=()
for t in "${TARGETS[@]}"; do test_args+=(--test "$t"); done
messages="$STAGE/cargo.json"
(cd "$ROOT" && cargo test --release --features cuda --no-run --message-format=json "${test_args[@]}") >"$messages" ||
    refuse "cargo could not build the test binaries (run the cargo command above for its errors)"
python3 - "$messages" "$B/bin" "${TARGETS[@]}" <<'EOF'
import json, shutil, sys
messages, dest, targets = sys.argv[1], sys.argv[2], sys.argv[3:]
found = {}
for line in open(messages):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        kinds, name = m["target"]["kind"], m["target"]["name"]
        if "test" in kinds and name in targets:
            found[name] = m["executable"]
        elif "bin" in kinds and name == "sglang-memtest":
            found[name] = m["executable"]
missing = [t for t in targets + ["sglang-memtest"] if t not in found]
if missing:
    sys.exit("make-bundle: cannot make the bundle: cargo named no executable for %s" % ", ".join(missing))
for name, exe in found.items():
    shutil.copy(exe, "%s/%s" % (dest, name))
EOF
strip "$B"/bin/*

# --- scripts, stand-in, models, planted leaks --------------------------------------------------
install -m 0755 "$HERE/run-bundle.sh" "$B/run-bundle.sh"
install -m 0644 "$HERE/memtest_gpu_sgl_kernel.py" "$HERE/test_memtest_gpu_sgl_kernel.py" \
    "$HERE/preflight.py" "$HERE/summarize.py" "$ROOT/scripts/sglang-cpu/make_tiny_models.py" "$B/python/"
cp -r "$HERE/stubs" "$B/python/stubs"
cp -r "$ROOT/fixtures/sglang/planted_leaks" "$B/fixtures/sglang/planted_leaks"
find "$B" -name __pycache__ -prune -exec rm -rf {} +

commit="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo ' (with uncommitted changes)' || true)"
{
    echo "memtest-sglang-gpu bundle"
    echo "made: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n)"
    echo "commit: $commit$dirty"
    echo "python: $CP (the GPU machine's Python must be $PYVER)"
    echo "cargo: $(cargo --version)"
    echo
    (cd "$B" && find . -type f ! -name BUNDLE.txt | sort | xargs sha256sum)
} >"$B/BUNDLE.txt"

# --- pack --------------------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT_FILE")"
say "compressing (xz)"
tar -C "$STAGE" -cf - memtest-sglang-gpu | xz -6 -T0 >"$OUT_FILE.tmp"
mv "$OUT_FILE.tmp" "$OUT_FILE"
size=$(stat -c %s "$OUT_FILE")
say "$(du -sh "$B/bin" | cut -f1) of binaries, $(du -sh "$B/wheels" | cut -f1) of wheels -> $OUT_FILE: $((size / 1048576)) MiB"
if [ "$size" -gt $((MAX_MIB * 1048576)) ]; then
    refuse "the bundle is $((size / 1048576)) MiB, over the $MAX_MIB MiB limit (MEMTEST_SGLANG_GPU_MAX_MIB)"
fi
echo "$OUT_FILE"
