"""sglang-memtest's stand-in for `sgl_kernel` when SGLang serves on an NVIDIA GPU without its kernels.

On CUDA (`--device cuda`, no `SGLANG_USE_CPU_ENGINE`) SGLang 0.5.23 imports names from
`sgl_kernel` (PyPI `sglang-kernel`: compiled CUDA kernels, several hundred MB, matched to one torch
build) at module load, with no fallback. A GPU machine without network and without that package
(the GPU tier's machine: torch 2.11, no registry) cannot serve at all. This module answers those
imports, so a real SGLang serves tiny models there for the harness:

* pure-torch versions, on CUDA or CPU tensors, with the kernels' in-place / `out=` contracts, of
  what a dense Llama or Qwen2.5-VL takes on the flags the GPU tier uses (`--attention-backend
  torch_native` or `triton`, `--sampling-backend pytorch`): `rmsnorm`, `fused_add_rmsnorm`,
  `gemma_rmsnorm`, `gemma_fused_add_rmsnorm`, `silu_and_mul`, `gelu_and_mul`,
  `gelu_tanh_and_mul`, `gelu_quick`, `apply_rope_with_cos_sin_cache_inplace`,
  `rotary_embedding`, `top_k_renorm_prob(s)`, `top_p_renorm_prob(s)`, `weak_ref_tensor` (CUDA
  graphs: here a plain alias, which keeps the tensor alive), `sgl_kernel.utils.is_arch_support_pdl`
  (False: no programmatic dependent launch);
* placeholders that raise `NotImplementedError` when called, for names SGLang imports at module
  load but never calls on that path (int8 GEMM, MoE sums, GGUF, host KV-cache transfer, merge
  state): a path nobody foresaw fails loudly instead of computing garbage.

Every other name raises AttributeError, and every other submodule (`sgl_kernel.flash_attn`,
`sgl_kernel.allreduce`, ...) raises ImportError, exactly as if the kernel were missing, so
SGLang's own `try: ... except ImportError` fallbacks keep working.

One SGLang module is answered too: every Llama MLP on CUDA builds `DualGemm`, which imports
`sglang.kernels.ops.gemm.cutedsl_dual_gemm`, a Blackwell-only CuTe-DSL module that imports
`cutlass` (nvidia-cutlass-dsl) at load. When `cutlass` is not importable, a small replacement gives
the names `DualGemm` reads, with `can_use_dual_gemm()` False (the real one is False below SM100).

Installed by scripts/sglang-gpu/run-bundle.sh into the tier's venv with a `.pth` line that
imports this module at interpreter start; that only puts a finder on `sys.meta_path` (torch is
imported when `sgl_kernel` is). `MEMTEST_SGL_SHIM=0` turns it off. Checked against float64
formulas by test_memtest_gpu_sgl_kernel.py (CPU in `cargo test`, CUDA on the GPU machine).
"""

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types

VERSION = "0.0.0+memtest.gpu-shim"

torch = None  # bound by _load_torch() when `sgl_kernel` is first imported
F = None


def _load_torch():
    global torch, F
    if torch is None:
        import torch as _torch
        import torch.nn.functional as _functional

        torch, F = _torch, _functional


# ------------------------------------------------------------------------------------------------
# Norms: input (tokens, hidden), weight (hidden,). Computed in float32, cast back, like the kernels.
# ------------------------------------------------------------------------------------------------


def _rms(x32, eps):
    return x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + eps)


def _into(out, y):
    if out is None:
        return y
    if out.shape != y.shape:
        raise ValueError(
            "memtest sgl_kernel shim: out has shape %s, the result %s"
            % (tuple(out.shape), tuple(y.shape))
        )
    out.copy_(y)
    return out


def rmsnorm(input, weight, eps=1e-6, out=None, enable_pdl=None):
    """input / RMS(input) * weight; written into `out` when given, which is returned."""
    return _into(out, (_rms(input.float(), eps) * weight.float()).to(input.dtype))


def gemma_rmsnorm(input, weight, eps=1e-6, out=None, enable_pdl=None):
    """input / RMS(input) * (1 + weight)."""
    return _into(out, (_rms(input.float(), eps) * (1.0 + weight.float())).to(input.dtype))


def _fused_add(input, residual, scale, eps):
    s = input.float() + residual.float()
    residual.copy_(s.to(residual.dtype))
    # the kernel normalises the float32 sum, not its rounded copy
    input.copy_((_rms(s, eps) * scale).to(input.dtype))


def fused_add_rmsnorm(input, residual, weight, eps=1e-6, enable_pdl=None):
    """In place: residual += input; input = rmsnorm(residual) * weight. Returns None."""
    _fused_add(input, residual, weight.float(), eps)


def gemma_fused_add_rmsnorm(input, residual, weight, eps=1e-6, enable_pdl=None):
    """In place: residual += input; input = rmsnorm(residual) * (1 + weight). Returns None."""
    _fused_add(input, residual, 1.0 + weight.float(), eps)


# ------------------------------------------------------------------------------------------------
# Gated activations: input (..., 2d) -> (..., d) = act(input[..., :d]) * input[..., d:]
# ------------------------------------------------------------------------------------------------


def _gated(act, input, out):
    d = input.shape[-1] // 2
    x = input.float()
    return _into(out, (act(x[..., :d]) * x[..., d:]).to(input.dtype))


def silu_and_mul(input, out=None, enable_pdl=None):
    return _gated(F.silu, input, out)


def gelu_and_mul(input, out=None, enable_pdl=None):
    return _gated(lambda t: F.gelu(t, approximate="none"), input, out)


def gelu_tanh_and_mul(input, out=None, enable_pdl=None):
    return _gated(lambda t: F.gelu(t, approximate="tanh"), input, out)


def gelu_quick(input, out=None):
    """x * sigmoid(1.702 x), same shape as the input."""
    x = input.float()
    return _into(out, (x * torch.sigmoid(1.702 * x)).to(input.dtype))


# ------------------------------------------------------------------------------------------------
# Rotary embedding. cos_sin_cache (max_pos, rot_dim): cos in the first half of a row, sin in the
# second. query/key (tokens, heads * head_size) or (tokens, heads, head_size), possibly strided
# views; the first rot_dim dims of every head are rotated in place. Neox style rotates the two
# halves, GPT-J style interleaved pairs.
# ------------------------------------------------------------------------------------------------


def _rope_inplace(positions, x, head_size, cos_sin_cache, is_neox):
    if x is None:
        return
    n = positions.shape[0]
    heads = x.view(n, -1, head_size)
    cs = cos_sin_cache.index_select(0, positions.reshape(-1).long()).float()
    rot = cs.shape[-1]
    cos, sin = cs[:, None, : rot // 2], cs[:, None, rot // 2 :]
    r = heads[..., :rot].float()
    if is_neox:
        a, b = r[..., : rot // 2], r[..., rot // 2 :]
        rotated = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    else:
        a, b = r[..., 0::2], r[..., 1::2]
        rotated = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    heads[..., :rot] = rotated.to(x.dtype)


def apply_rope_with_cos_sin_cache_inplace(
    positions,
    query,
    key,
    head_size,
    cos_sin_cache,
    is_neox=True,
    fused_set_kv_buffer_arg=None,
    enable_pdl=None,
):
    """Rotates query and key in place; with `fused_set_kv_buffer_arg`, also stores the rotated
    key and the value at `cache_loc` of its k/v buffers (no k/v scales, as in the kernel)."""
    _rope_inplace(positions, query, head_size, cos_sin_cache, is_neox)
    _rope_inplace(positions, key, head_size, cos_sin_cache, is_neox)
    arg = fused_set_kv_buffer_arg
    if arg is None:
        return
    if getattr(arg, "k_scale", None) is not None or getattr(arg, "v_scale", None) is not None:
        raise NotImplementedError(
            "memtest sgl_kernel shim: k_scale/v_scale are not supported (nor by the kernel)"
        )
    loc = arg.cache_loc.long()
    kb, vb = arg.k_buffer, arg.v_buffer
    kb.view(kb.shape[0], -1)[loc] = key.reshape(key.shape[0], -1).to(kb.dtype)
    vb.view(vb.shape[0], -1)[loc] = arg.value.reshape(arg.value.shape[0], -1).to(vb.dtype)


def rotary_embedding(positions, query, key, head_size, cos_sin_cache, is_neox=True):
    """vLLM-style rotary embedding, in place on query and (if given) key."""
    _rope_inplace(positions, query, head_size, cos_sin_cache, is_neox)
    _rope_inplace(positions, key, head_size, cos_sin_cache, is_neox)


# ------------------------------------------------------------------------------------------------
# Sampling renormalisation (FlashInfer's semantics, float32 results like the kernels)
# ------------------------------------------------------------------------------------------------


def _per_row(value, rows, device, dtype):
    if isinstance(value, torch.Tensor):
        v = value.to(device=device, dtype=dtype).reshape(-1)
        return v.expand(rows) if v.numel() == 1 else v
    return torch.full((rows,), value, device=device, dtype=dtype)


def _renormalised(p, keep):
    kept = torch.where(keep, p, torch.zeros_like(p))
    return kept / kept.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)


def top_k_renorm_prob(probs, top_k):
    """Keeps each row's k most probable tokens (by rank, ties by position as a stable sort does),
    zeroes the rest and renormalises; k <= 0 or k >= vocab keeps the whole row."""
    p = probs.float()
    rows, vocab = p.shape
    k = _per_row(top_k, rows, p.device, torch.int64)
    k = torch.where((k <= 0) | (k > vocab), torch.full_like(k, vocab), k)
    _, order = torch.sort(p, dim=-1, descending=True, stable=True)
    rank = torch.arange(vocab, device=p.device).view(1, -1)
    keep = torch.zeros_like(p, dtype=torch.bool).scatter(1, order, rank < k.view(-1, 1))
    return _renormalised(p, keep)


def top_p_renorm_prob(probs, top_p):
    """Keeps, by descending probability, every token whose preceding mass is <= top_p (the token
    that crosses top_p stays, as in SGLang's top_p_normalize_probs_torch), renormalises."""
    p = probs.float()
    rows, _ = p.shape
    tp = _per_row(top_p, rows, p.device, torch.float32).view(-1, 1)
    sorted_p, order = torch.sort(p, dim=-1, descending=True, stable=True)
    keep_sorted = (torch.cumsum(sorted_p, dim=-1) - sorted_p) <= tp
    keep_sorted[:, 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(1, order, keep_sorted)
    return _renormalised(p, keep)


top_k_renorm_probs = top_k_renorm_prob
top_p_renorm_probs = top_p_renorm_prob


def weak_ref_tensor(tensor):
    """CUDA-graph outputs: the kernel returns a tensor on the same memory that does not keep it
    alive. Here the tensor itself: same values and storage, kept alive a little longer (the
    graph's memory pool owns that memory anyway)."""
    return tensor


# ------------------------------------------------------------------------------------------------
# Placeholders and the module layout
# ------------------------------------------------------------------------------------------------

IMPLEMENTED = (
    "rmsnorm",
    "fused_add_rmsnorm",
    "gemma_rmsnorm",
    "gemma_fused_add_rmsnorm",
    "silu_and_mul",
    "gelu_and_mul",
    "gelu_tanh_and_mul",
    "gelu_quick",
    "apply_rope_with_cos_sin_cache_inplace",
    "rotary_embedding",
    "top_k_renorm_prob",
    "top_p_renorm_prob",
    "top_k_renorm_probs",
    "top_p_renorm_probs",
    "weak_ref_tensor",
)

# Imported at module load by SGLang 0.5.23 on CUDA, never called on the tier's path.
PLACEHOLDERS = (
    "int8_scaled_mm",  # layers/quantization/w8a8_int8.py, compressed_tensors_w8a8_int8.py
    "moe_sum",  # layers/quantization/gguf.py
    "moe_sum_reduce",  # layers/moe/moe_runner/triton_utils/fused_moe.py, fused_marlin_moe.py
    "merge_state_v2",  # layers/attention/merge_state.py
)

SUBMODULES = {
    # layers/attention/triton_backend.py reads is_arch_support_pdl at module load
    "utils": (),
    # layers/quantization/gguf.py
    "quantization": (
        "ggml_dequantize",
        "ggml_moe_a8",
        "ggml_moe_a8_vec",
        "ggml_mul_mat_a8",
        "ggml_mul_mat_vec_a8",
    ),
    # mem_cache/memory_pool_host.py and friends: the host (hierarchical) KV cache, off unless
    # --enable-hierarchical-cache
    "kvcacheio": (
        "transfer_kv_all_layer",
        "transfer_kv_all_layer_direct_lf_pf",
        "transfer_kv_all_layer_lf_pf",
        "transfer_kv_all_layer_lf_ph",
        "transfer_kv_all_layer_mla",
        "transfer_kv_all_layer_mla_lf_pf",
        "transfer_kv_direct",
        "transfer_kv_per_layer",
        "transfer_kv_per_layer_direct_pf_lf",
        "transfer_kv_per_layer_mla",
        "transfer_kv_per_layer_mla_pf_lf",
        "transfer_kv_per_layer_pf_lf",
        "transfer_kv_per_layer_ph_lf",
        "transfer_embedding_ranges_direct",
    ),
}

DUAL_GEMM = "sglang.kernels.ops.gemm.cutedsl_dual_gemm"


class _NotImplementedKernel:
    def __init__(self, name):
        self.name = name
        self.__name__ = name.rsplit(".", 1)[-1]

    def __call__(self, *args, **kwargs):
        raise NotImplementedError(
            "memtest sgl_kernel shim: %s is a placeholder (SGLang's compiled CUDA kernels are "
            "not installed; this path is outside what the GPU test tier supports)" % self.name
        )

    def __repr__(self):
        return "<memtest shim placeholder %s>" % self.name


class _StrictModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        have = sorted(k for k in self.__dict__ if not k.startswith("_"))
        raise AttributeError(
            "module %r has no attribute %r (memtest GPU shim: only %s)"
            % (self.__name__, name, ", ".join(have))
        )


def _is_arch_support_pdl():
    return False


def _get_cuda_stream():
    return torch.cuda.current_stream().cuda_stream


def _fill_top(module):
    module.__path__ = []  # a package: unknown submodules raise ImportError
    module.__version__ = VERSION
    module.__memtest_shim__ = True
    for name in IMPLEMENTED:
        setattr(module, name, globals()[name])
    for name in PLACEHOLDERS:
        setattr(module, name, _NotImplementedKernel("sgl_kernel." + name))


def _fill_sub(module):
    sub = module.__name__.split(".", 1)[1]
    module.__memtest_shim__ = True
    for name in SUBMODULES[sub]:
        setattr(module, name, _NotImplementedKernel(module.__name__ + "." + name))
    if sub == "utils":
        module.is_arch_support_pdl = _is_arch_support_pdl
        module.get_cuda_stream = _get_cuda_stream


def _fill_dual_gemm(module):
    from enum import IntEnum

    class DualGemmQuantMode(IntEnum):
        STATIC_PER_TENSOR = 0
        STATIC_PER_TOKEN = 1
        DYNAMIC_PER_TENSOR = 2
        DYNAMIC_PER_TOKEN = 3
        UNQUANT = 4

        @property
        def is_quantized(self):
            return self is not self.UNQUANT

        @property
        def is_dynamic(self):
            return self in (self.DYNAMIC_PER_TENSOR, self.DYNAMIC_PER_TOKEN)

        @property
        def is_per_token(self):
            return self in (self.STATIC_PER_TOKEN, self.DYNAMIC_PER_TOKEN)

    def can_use_dual_gemm(num_tokens, hidden_size, intermediate_size, quant_mode):
        return False  # the real predicate needs SM100 (Blackwell) and the CuTe DSL

    module.MAX_DUAL_GEMM_DECODE_TOKENS = 16
    module.DualGemmQuantMode = DualGemmQuantMode
    module.can_use_dual_gemm = can_use_dual_gemm
    module.dual_gemm_swiglu = _NotImplementedKernel(DUAL_GEMM + ".dual_gemm_swiglu")
    module.dual_gemm_swiglu_fp8 = _NotImplementedKernel(DUAL_GEMM + ".dual_gemm_swiglu_fp8")
    module.__memtest_shim__ = True


def _cutlass_importable():
    try:
        return importlib.util.find_spec("cutlass") is not None
    except (ImportError, ValueError):
        return False


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers `sgl_kernel`, its three known submodules and (without `cutlass`) the DualGemm
    module; nothing else."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "sgl_kernel":
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if fullname.startswith("sgl_kernel.") and fullname[len("sgl_kernel.") :] in SUBMODULES:
            return importlib.machinery.ModuleSpec(fullname, self)
        if fullname == DUAL_GEMM and not _cutlass_importable():
            return importlib.machinery.ModuleSpec(fullname, self, origin="memtest-gpu-shim")
        return None

    def create_module(self, spec):
        return _StrictModule(spec.name) if spec.name.startswith("sgl_kernel") else None

    def exec_module(self, module):
        _load_torch()
        if module.__name__ == "sgl_kernel":
            _fill_top(module)
            _announce()
        elif module.__name__ == DUAL_GEMM:
            _fill_dual_gemm(module)
        else:
            _fill_sub(module)


def _announce():
    if os.environ.get("MEMTEST_SGL_SHIM_QUIET") != "1":
        print(
            "[memtest] sgl_kernel is the GPU tier's pure-torch stand-in %s (%s)" % (VERSION, __file__),
            file=sys.stderr,
        )


def install():
    """Puts the finder first on sys.meta_path (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


if os.environ.get("MEMTEST_SGL_SHIM") != "0":
    install()
