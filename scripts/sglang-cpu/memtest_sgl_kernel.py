"""sglang-memtest's stand-in for `sgl_kernel` when SGLang serves on CPU from PyPI alone.

SGLang's CPU engine imports `sgl_kernel` (its compiled kernels) at module load. The CPU build of
that package is on no registry, and PyPI's `sglang-kernel` wheel is a CUDA build that cannot load
without libcuda. With `--attention-backend torch_native` SGLang runs every layer in pure torch,
so it needs from `sgl_kernel` only:

* one function it really calls on every prefill: `assign_req_to_token_pool_cpu` (writes the KV
  slots of new tokens into `req_to_token`), implemented here in torch;
* names it imports at module load but never calls on the torch-native path (KV slot moves,
  speculative decoding): placeholders that raise `NotImplementedError` if ever called, so a path
  we did not foresee fails loudly instead of computing garbage;
* four `torch.ops.sgl_kernel.*` ops that `sglang/srt/models/qwen3_5.py` looks up at import time
  (the Qwen-VL multimodal processor imports that file): registered with a placeholder schema.

`torch.ops.sgl_kernel.convert_weight_packed` is deliberately *not* defined: SGLang reads its
presence as "Intel AMX kernels available"; without it every layer takes its `forward_native` path.

Only the top-level name `sgl_kernel` is answered. Any other attribute raises AttributeError and
any submodule (`sgl_kernel.kvcacheio`, ...) raises ImportError, exactly as if the package were
absent, so SGLang's own `try: ... except ImportError` fallbacks keep working.

Loaded at interpreter start by `memtest_sgl_kernel.pth` (installed next to this file in the
venv's site-packages); active only with `SGLANG_USE_CPU_ENGINE=1` and `MEMTEST_SGL_SHIM` not `0`.
Installing it costs an interpreter nothing but one environment lookup; torch is imported only
when `sglang` is.
"""

import importlib.abc
import importlib.machinery
import os
import sys
import types

VERSION = "0.0.0+memtest.shim"

# Python-level functions SGLang's CPU path imports and calls (pure-torch versions).


def assign_req_to_token_pool_cpu(
    req_pool_indices, req_to_token, start_offset, end_offset, out_cache_loc, pool_len
):
    """For each request i: req_to_token[row_i, start_i:end_i] = the next (end_i - start_i)
    entries of out_cache_loc (the KV slots allocated for its new tokens, in batch order)."""
    taken = 0
    for row, start, end in zip(
        req_pool_indices.tolist(), start_offset.tolist(), end_offset.tolist()
    ):
        n = end - start
        if n > 0:
            req_to_token[row, start:end] = out_cache_loc[taken : taken + n].to(
                req_to_token.dtype
            )
        taken += n


IMPLEMENTED = {"assign_req_to_token_pool_cpu": assign_req_to_token_pool_cpu}

# Imported at module load by SGLang's CPU path, never called with torch-native attention and
# the radix cache off (checked on sglang 0.5.23).
PLACEHOLDERS = (
    "copy_all_layer_kv_cache_cpu",  # KV slot move (memory_pool / cache_move.py)
    "build_tree_kernel_efficient_cpu",  # EAGLE speculative decoding helpers
    "verify_tree_greedy_cpu",
    "assign_draft_cache_locs_contiguous_cpu",
    "assign_extend_cache_locs_cpu",
    "fill_accept_out_cache_loc_cpu",
    "fill_bonus_tokens_cpu",
)

# torch.ops.sgl_kernel.* looked up (not called) at import by sglang/srt/models/qwen3_5.py.
TORCH_OP_PLACEHOLDERS = (
    "fused_sigmoid_mul_cpu",
    "fused_qk_gemma_rmsnorm_cpu",
    "fused_qk_gemma_rmsnorm_with_gate_cpu",
    "fused_qkvzba_split_reshape_cat_contiguous_cpu",
)


class _NotImplementedKernel:
    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(
            "memtest sgl_kernel shim: %s is not implemented (SGLang's compiled CPU kernel "
            "is not installed; this path is not supported by the CPU test tier)" % self.name
        )

    def __repr__(self):
        return "<memtest shim placeholder %s>" % self.name


class _ShimModule(types.ModuleType):
    def __getattr__(self, name):
        raise AttributeError(
            "module 'sgl_kernel' has no attribute %r (memtest shim: only %s exist)"
            % (name, ", ".join(sorted(list(IMPLEMENTED) + list(PLACEHOLDERS))))
        )


_torch_ops_registered = False
_torch_library = None  # kept alive: the ops vanish when the Library object is collected


def _register_torch_op_placeholders():
    global _torch_ops_registered, _torch_library
    if _torch_ops_registered:
        return
    _torch_ops_registered = True
    import torch

    _torch_library = torch.library.Library("sgl_kernel", "FRAGMENT")
    for name in TORCH_OP_PLACEHOLDERS:
        if hasattr(torch.ops.sgl_kernel, name):
            continue
        _torch_library.define("%s(Tensor memtest_placeholder) -> ()" % name)
        _torch_library.impl(
            name, _NotImplementedKernel("torch.ops.sgl_kernel." + name), "CompositeExplicitAutograd"
        )


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "sglang":
            _register_torch_op_placeholders()
            return None  # the real sglang loads as usual
        if fullname == "sgl_kernel":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _ShimModule(spec.name)
        module.__path__ = []  # a package with no submodules: `sgl_kernel.x` -> ImportError
        module.__version__ = VERSION
        module.__memtest_shim__ = True
        return module

    def exec_module(self, module):
        for name, fn in IMPLEMENTED.items():
            setattr(module, name, fn)
        for name in PLACEHOLDERS:
            setattr(module, name, _NotImplementedKernel("sgl_kernel." + name))


def install():
    """Put the finder first on sys.meta_path (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


if os.environ.get("SGLANG_USE_CPU_ENGINE") == "1" and os.environ.get("MEMTEST_SGL_SHIM") != "0":
    install()
