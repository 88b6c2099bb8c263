"""Checks, before any server starts, that the GPU tier's venv can serve SGLang on this GPU.

    <venv>/bin/python preflight.py          # run by run-bundle.sh (phase `preflight`)

Prints the versions (Python, torch, CUDA, the card, triton, transformers, sglang), that
`sgl_kernel` is the tier's stand-in, that SGLang's CUDA-path modules import, and that a tiny Triton
kernel compiles and runs (SGLang's Triton attention backend and its KV-slot kernels need a working
Triton). One line per check; the last line is `preflight: ok` or `preflight: FAILED (...)`, and the
exit status is 0 or 1. A failure names what is missing.
"""

import importlib
import os
import subprocess
import sys
import tempfile
import time
import traceback

FAILED = []


def line(ok, what):
    print("  %-4s %s" % ("ok" if ok else "FAIL", what), flush=True)
    if not ok:
        FAILED.append(what.split(":")[0])


def versions():
    import torch

    line(True, "python %s (%s)" % (sys.version.split()[0], sys.executable))
    line(True, "torch %s, CUDA %s" % (torch.__version__, torch.version.cuda))
    if not torch.cuda.is_available():
        line(False, "CUDA: torch sees no GPU (driver, CUDA_VISIBLE_DEVICES?)")
        return
    p = torch.cuda.get_device_properties(0)
    line(True, "GPU 0: %s, sm_%d%d, %.1f GiB, %d device(s)" % (
        p.name, p.major, p.minor, p.total_memory / 2**30, torch.cuda.device_count()))
    for name in ("triton", "transformers", "tokenizers", "sglang"):
        try:
            mod = importlib.import_module(name)
            line(True, "%s %s (%s)" % (name, getattr(mod, "__version__", "?"), os.path.dirname(mod.__file__)))
        except Exception as e:  # noqa: BLE001 - reported, the run stops later
            line(False, "%s: %s" % (name, e))


def stand_in():
    import sgl_kernel

    line(getattr(sgl_kernel, "__memtest_shim__", False),
         "sgl_kernel: %s %s" % (getattr(sgl_kernel, "__version__", "?"), sgl_kernel))


# What SGLang's three processes import on CUDA for a dense Llama and Qwen2.5-VL with the tier's
# flags: a missing sgl_kernel name or package shows up here, not as a server that never starts.
MODULES = (
    "sglang.srt.entrypoints.http_server",
    "sglang.srt.managers.scheduler",
    "sglang.srt.managers.detokenizer_manager",
    "sglang.srt.model_executor.model_runner",
    "sglang.srt.models.llama",
    "sglang.srt.models.qwen2_5_vl",
    "sglang.srt.multimodal.processors.qwen_vl",
    "sglang.srt.layers.attention.torch_native_backend",
    "sglang.srt.layers.attention.triton_backend",
    "sglang.srt.layers.dual_gemm",
    "sglang.kernels.ops.gemm.cutedsl_dual_gemm",
)


def sglang_imports():
    for name in MODULES:
        started = time.time()
        try:
            importlib.import_module(name)
            line(True, "import %s (%.1f s)" % (name, time.time() - started))
        except BaseException as e:  # noqa: BLE001 - SystemExit from a module counts too
            line(False, "import %s: %s: %s" % (name, type(e).__name__, e))
            print("".join(traceback.format_exception(e)[-4:]), flush=True)


TRITON_KERNEL = """
import torch, triton, triton.language as tl

@triton.jit
def add(x, y, out, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(out + i, tl.load(x + i, mask=m) + tl.load(y + i, mask=m), mask=m)

x = torch.randn(1000, device="cuda")
y = torch.randn(1000, device="cuda")
out = torch.empty_like(x)
add[(triton.cdiv(1000, 256),)](x, y, out, 1000, BLOCK=256)
torch.cuda.synchronize()
assert torch.allclose(out, x + y), "wrong sum"
"""


def triton_kernel():
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="memtest-triton-") as tmp:
        src = os.path.join(tmp, "kernel.py")  # @triton.jit reads its source from a file
        with open(src, "w") as f:
            f.write(TRITON_KERNEL)
        try:
            r = subprocess.run([sys.executable, src], capture_output=True, text=True, timeout=120)
            tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
            line(r.returncode == 0, "a Triton kernel compiled and ran in %.1f s%s" % (
                time.time() - started, "" if r.returncode == 0 else ": " + " | ".join(tail)))
        except subprocess.TimeoutExpired:
            line(False, "a Triton kernel: no result within 120 s")


def main():
    versions()
    if not FAILED:
        stand_in()
        sglang_imports()
        triton_kernel()
    if FAILED:
        print("preflight: FAILED (%s)" % ", ".join(FAILED), flush=True)
        sys.exit(1)
    print("preflight: ok", flush=True)


if __name__ == "__main__":
    main()
