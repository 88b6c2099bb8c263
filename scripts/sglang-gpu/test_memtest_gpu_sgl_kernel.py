"""Checks memtest_gpu_sgl_kernel.py (the GPU tier's `sgl_kernel` stand-in) against float64 formulas
written out the long way, and its module layout against what SGLang 0.5.23 imports.

    python test_memtest_gpu_sgl_kernel.py          # CPU tensors, and CUDA too when a GPU is visible
    python test_memtest_gpu_sgl_kernel.py cpu      # CPU only (what `cargo test` runs)
    python test_memtest_gpu_sgl_kernel.py cuda     # CUDA only (the GPU machine)

One line per check, then `memtest-gpu-shim: N passed, M failed on DEVICES`; exit status 1 when a
check failed, 2 when it cannot run (no torch, CUDA asked for but absent, a real sgl_kernel loaded).
"""

import importlib
import importlib.util
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(HERE, "memtest_gpu_sgl_kernel.py")



def cannot_run(why):
    print("memtest-gpu-shim: cannot run: " + why, file=sys.stderr)
    sys.exit(2)


try:
    import torch
except ImportError as e:
    cannot_run("this Python (%s) has no torch (%s)" % (sys.executable, e))

os.environ["MEMTEST_SGL_SHIM_QUIET"] = "1"
os.environ.pop("MEMTEST_SGL_SHIM", None)


def load_shim():
    if "sgl_kernel" in sys.modules:
        cannot_run("an sgl_kernel is already imported")
    spec = importlib.util.spec_from_file_location("memtest_gpu_sgl_kernel", SHIM)
    shim = importlib.util.module_from_spec(spec)
    sys.modules["memtest_gpu_sgl_kernel"] = shim
    spec.loader.exec_module(shim)
    sk = importlib.import_module("sgl_kernel")
    if not getattr(sk, "__memtest_shim__", False):
        cannot_run("`import sgl_kernel` gave %r, not the shim" % sk)
    return shim, sk


shim, sk = load_shim()
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print("%s %s%s" % ("ok  " if ok else "FAIL", name, (" (" + detail + ")") if detail else ""))


TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def close(got, want, dtype):
    """Max error within the dtype's rounding, relative to the largest reference value."""
    if got.shape != want.shape:
        return False, "shape %s, want %s" % (tuple(got.shape), tuple(want.shape))
    err = (got.double().cpu() - want.double().cpu()).abs().max().item() if got.numel() else 0.0
    scale = max(1.0, want.double().abs().max().item() if want.numel() else 1.0)
    return err <= TOLERANCE[dtype] * scale, "max error %.3g" % err


def raises(exc, fn):
    try:
        fn()
    except exc:
        return True
    except Exception:  # noqa: BLE001 - the wrong exception is a failed check
        return False
    return False


# ---------------------------------------------------------------------- float64 references


def ref_rmsnorm(x, w, eps, gemma=False):
    """Row by row: x_i / sqrt(mean_j x_ij^2 + eps) * w (or * (1 + w))."""
    x, w = x.double().cpu(), w.double().cpu()
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        rms = math.sqrt(sum(v * v for v in x[i].tolist()) / x.shape[1] + eps)
        out[i] = x[i] / rms * ((1.0 + w) if gemma else w)
    return out


def ref_gated(h, act):
    d = h.shape[-1] // 2
    a, b = h.double().cpu()[..., :d], h.double().cpu()[..., d:]
    return act(a) * b


ACTS = {
    "silu_and_mul": lambda a: a / (1.0 + torch.exp(-a)),
    "gelu_and_mul": lambda a: 0.5 * a * (1.0 + torch.erf(a / math.sqrt(2.0))),
    "gelu_tanh_and_mul": lambda a: 0.5
    * a
    * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (a + 0.044715 * a**3))),
}


def ref_rope(positions, x, head_size, cache, neox):
    """Pair by pair: (a, b) -> (a cos t - b sin t, b cos t + a sin t); neox pairs dims j and
    j + rot/2, GPT-J pairs 2j and 2j + 1; dims past rot are untouched."""
    n = positions.shape[0]
    v = x.double().cpu().reshape(n, -1, head_size).clone()
    rot = cache.shape[-1]
    half = rot // 2
    for t in range(n):
        row = cache[int(positions[t])].double().cpu()
        for j in range(half):
            ia, ib = (j, j + half) if neox else (2 * j, 2 * j + 1)
            a, b = v[t, :, ia].clone(), v[t, :, ib].clone()
            c, s = row[j].item(), row[half + j].item()
            v[t, :, ia] = a * c - b * s
            v[t, :, ib] = b * c + a * s
    return v.reshape(x.shape)


def rope_cache(max_pos, rot, device):
    inv = [1.0 / (10000.0 ** (2 * i / rot)) for i in range(rot // 2)]
    rows = [[math.cos(p * f) for f in inv] + [math.sin(p * f) for f in inv] for p in range(max_pos)]
    return torch.tensor(rows, dtype=torch.float32, device=device)


def ref_top_k(p, k):
    vocab = len(p)
    k = vocab if k <= 0 or k > vocab else k
    order = sorted(range(vocab), key=lambda j: (-p[j], j))
    kept = [p[j] if j in set(order[:k]) else 0.0 for j in range(vocab)]
    total = sum(kept)
    return [v / total for v in kept]


def ref_top_p(p, top_p):
    order = sorted(range(len(p)), key=lambda j: (-p[j], j))
    kept, mass = [0.0] * len(p), 0.0
    for n, j in enumerate(order):
        if n > 0 and mass > top_p:
            break
        kept[j] = p[j]
        mass += p[j]
    total = sum(kept)
    return [v / total for v in kept]


# ---------------------------------------------------------------------- the kernels


def kernels(device):
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        tag = "%s %s" % (device, str(dtype).split(".")[-1])
        x, w, r = rnd(5, 96, dtype=dtype), rnd(96, dtype=dtype), rnd(5, 96, dtype=dtype)
        eps = 1e-5
        for name, gemma in (("rmsnorm", False), ("gemma_rmsnorm", True)):
            fn = getattr(sk, name)
            want = ref_rmsnorm(x, w, eps, gemma)
            ok, d = close(fn(x, w, eps), want, dtype)
            check("%s %s" % (name, tag), ok, d)
            out = torch.empty_like(x)
            ret = fn(x, w, eps, out=out)
            check("%s out= %s" % (name, tag), ret is out and close(out, want, dtype)[0])
        check(
            "rmsnorm out= of the wrong shape raises %s" % tag,
            raises(ValueError, lambda: sk.rmsnorm(x, w, eps, out=torch.empty(3, 96, device=device, dtype=dtype))),
        )
        for name, gemma in (("fused_add_rmsnorm", False), ("gemma_fused_add_rmsnorm", True)):
            xi, ri = x.clone(), r.clone()
            ret = getattr(sk, name)(xi, ri, w, eps)
            total = x.double() + r.double()
            ok1, d1 = close(ri, total, dtype)
            ok2, d2 = close(xi, ref_rmsnorm(total, w, eps, gemma), dtype)
            check("%s in place %s" % (name, tag), ret is None and ok1 and ok2, "residual %s, out %s" % (d1, d2))
        h = rnd(3, 4, 2 * 40, dtype=dtype)
        for name, act in ACTS.items():
            want = ref_gated(h, act)
            ok, d = close(getattr(sk, name)(h), want, dtype)
            out = torch.empty(3, 4, 40, device=device, dtype=dtype)
            ret = getattr(sk, name)(h, out)
            check("%s %s" % (name, tag), ok and ret is out and close(out, want, dtype)[0], d)
        a = x.double().cpu()
        ok, d = close(sk.gelu_quick(x), a / (1.0 + torch.exp(-1.702 * a)), dtype)
        check("gelu_quick %s" % tag, ok, d)

        n, hq, hk, hs = 6, 4, 2, 32
        pos = torch.tensor([0, 1, 7, 19, 3, 63], device=device)
        for rot in (hs, hs // 2):
            cache = rope_cache(64, rot, device)
            for neox in (True, False):
                qkv = rnd(n, (hq + 2 * hk) * hs, dtype=dtype)
                q, k, _ = qkv.split([hq * hs, hk * hs, hk * hs], dim=-1)  # strided views
                wq, wk = ref_rope(pos, q, hs, cache, neox), ref_rope(pos, k, hs, cache, neox)
                before_v = qkv[:, (hq + hk) * hs :].clone()
                sk.apply_rope_with_cos_sin_cache_inplace(pos, q, k, hs, cache, is_neox=neox)
                ok1, d1 = close(q, wq, dtype)
                ok2, d2 = close(k, wk, dtype)
                untouched = torch.equal(qkv[:, (hq + hk) * hs :], before_v)
                check(
                    "apply_rope_with_cos_sin_cache_inplace %s rot=%d neox=%s" % (tag, rot, neox),
                    ok1 and ok2 and untouched,
                    "%s; %s" % (d1, d2),
                )
                q3, k3 = rnd(n, hq, hs, dtype=dtype), rnd(n, hk, hs, dtype=dtype)
                wq, wk = ref_rope(pos, q3, hs, cache, neox), ref_rope(pos, k3, hs, cache, neox)
                sk.rotary_embedding(pos, q3, k3, hs, cache, neox)
                check(
                    "rotary_embedding 3-D %s rot=%d neox=%s" % (tag, rot, neox),
                    close(q3, wq, dtype)[0] and close(k3, wk, dtype)[0],
                )

        class KvArg:
            k_scale = v_scale = None

        cache = rope_cache(64, hs, device)
        q, k, v = rnd(n, hq * hs, dtype=dtype), rnd(n, hk * hs, dtype=dtype), rnd(n, hk * hs, dtype=dtype)
        arg = KvArg()
        arg.value = v
        arg.k_buffer = torch.zeros(16, hk, hs, device=device, dtype=dtype)
        arg.v_buffer = torch.zeros(16, hk, hs, device=device, dtype=dtype)
        arg.cache_loc = torch.tensor([3, 9, 4, 15, 0, 11], device=device)
        wk = ref_rope(pos, k, hs, cache, True)
        sk.apply_rope_with_cos_sin_cache_inplace(pos, q, k, hs, cache, True, fused_set_kv_buffer_arg=arg)
        untouched = [i for i in range(16) if i not in arg.cache_loc.tolist()]
        check(
            "apply_rope + set_kv_buffer %s" % tag,
            close(arg.k_buffer[arg.cache_loc].reshape(n, -1), wk, dtype)[0]
            and torch.equal(arg.v_buffer[arg.cache_loc].reshape(n, -1), v)
            and arg.k_buffer[untouched].abs().sum().item() == 0,
        )
        arg.k_scale = 1.0
        check(
            "apply_rope with k_scale raises %s" % tag,
            raises(
                NotImplementedError,
                lambda: sk.apply_rope_with_cos_sin_cache_inplace(pos, q, k, hs, cache, True, fused_set_kv_buffer_arg=arg),
            ),
        )

    probs = torch.softmax(torch.randn(6, 40, generator=gen), dim=-1)
    probs[0, 5] = probs[0, 6] = probs[0].max()  # a tie at the top: the lower index ranks first
    probs = (probs / probs.sum(-1, keepdim=True)).to(device)
    ks = [1, 4, 40, 0, 7, 100]
    ps = [0.0, 0.3, 0.9, 1.0, 0.5, 0.75]
    got_k = sk.top_k_renorm_prob(probs, torch.tensor(ks, device=device))
    got_p = sk.top_p_renorm_prob(probs, torch.tensor(ps, device=device))
    rows = probs.double().cpu().tolist()
    want_k = torch.tensor([ref_top_k(rows[i], ks[i]) for i in range(6)], dtype=torch.float64)
    want_p = torch.tensor([ref_top_p(rows[i], ps[i]) for i in range(6)], dtype=torch.float64)
    check(
        "top_k_renorm_prob %s" % device,
        got_k.dtype == torch.float32 and torch.allclose(got_k.double().cpu(), want_k, atol=1e-6),
    )
    check(
        "top_p_renorm_prob %s" % device,
        got_p.dtype == torch.float32 and torch.allclose(got_p.double().cpu(), want_p, atol=1e-6),
    )
    check(
        "top_k_renorm_prob with one int k %s" % device,
        torch.equal(sk.top_k_renorm_prob(probs, 3), sk.top_k_renorm_probs(probs, torch.full((6,), 3, device=device))),
    )
    check(
        "top_p_renorm_prob with one float p %s" % device,
        torch.equal(sk.top_p_renorm_prob(probs, 0.5), sk.top_p_renorm_probs(probs, torch.full((6,), 0.5, device=device))),
    )
    t = rnd(4, 4)
    ref = sk.weak_ref_tensor(t)
    check("weak_ref_tensor shares the storage %s" % device, ref.data_ptr() == t.data_ptr() and torch.equal(ref, t))


# ---------------------------------------------------------------------- the module


def layout():
    # The names SGLang 0.5.23 imports from sgl_kernel at module load on the tier's CUDA path.
    wanted = (
        "rmsnorm fused_add_rmsnorm gemma_rmsnorm gemma_fused_add_rmsnorm silu_and_mul gelu_and_mul "
        "gelu_tanh_and_mul top_k_renorm_prob top_p_renorm_prob int8_scaled_mm moe_sum moe_sum_reduce "
        "merge_state_v2 weak_ref_tensor"
    ).split()
    missing = [n for n in wanted if not hasattr(sk, n)]
    check("the names SGLang imports at module load", not missing, "missing: %s" % missing if missing else "")
    from sgl_kernel.kvcacheio import transfer_kv_all_layer_mla, transfer_kv_per_layer  # noqa: F401
    from sgl_kernel.quantization import ggml_dequantize
    from sgl_kernel.utils import is_arch_support_pdl

    check("utils.is_arch_support_pdl() is False", is_arch_support_pdl() is False)
    check("a placeholder raises NotImplementedError", raises(NotImplementedError, ggml_dequantize))
    check("a top-level placeholder raises NotImplementedError", raises(NotImplementedError, sk.moe_sum))
    try:
        sk.flash_mla_decode  # noqa: B018
        check("an unknown name raises AttributeError", False)
    except AttributeError as e:
        check("an unknown name raises AttributeError, naming what exists", "rmsnorm" in str(e), str(e)[:80])
    for stmt in (
        "import sgl_kernel.allreduce",
        "from sgl_kernel.scalar_type import scalar_types",
        "from sgl_kernel.flash_attn import flash_attn_varlen_func",
    ):
        check("ImportError for `%s` (SGLang's fallback runs)" % stmt, raises(ImportError, lambda: exec(stmt, {})))
    spec = next(f for f in sys.meta_path if isinstance(f, shim._Finder)).find_spec(shim.DUAL_GEMM)
    if importlib.util.find_spec("cutlass") is None:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mode = mod.DualGemmQuantMode
        check(
            "the cutedsl_dual_gemm replacement (no cutlass here)",
            mod.MAX_DUAL_GEMM_DECODE_TOKENS == 16
            and mod.can_use_dual_gemm(1, 4096, 11008, mode.UNQUANT) is False
            and not mode.UNQUANT.is_quantized
            and mode.DYNAMIC_PER_TOKEN.is_dynamic
            and mode.STATIC_PER_TOKEN.is_per_token
            and raises(NotImplementedError, mod.dual_gemm_swiglu),
        )
    else:
        check("the real cutedsl_dual_gemm loads where cutlass is installed", spec is None)
    # MEMTEST_SGL_SHIM=0: no finder, `import sgl_kernel` behaves as without the shim.
    probe = (
        "import importlib.util, sys; spec = importlib.util.spec_from_file_location('m', %r); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "sys.exit(int(any(isinstance(f, m._Finder) for f in sys.meta_path)))" % SHIM
    )
    env = dict(os.environ, MEMTEST_SGL_SHIM="0")
    off = subprocess.run([sys.executable, "-c", probe], env=env).returncode == 0
    check("MEMTEST_SGL_SHIM=0 installs no finder", off)


def main():
    devices = sys.argv[1:] or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    for d in devices:
        if d not in ("cpu", "cuda"):
            cannot_run("unknown device %r: use cpu or cuda" % d)
        if d == "cuda" and not torch.cuda.is_available():
            cannot_run("torch %s sees no CUDA device, and cuda was asked for" % torch.__version__)
    layout()
    for d in devices:
        kernels(d)
    failed = RESULTS.count(False)
    print(
        "memtest-gpu-shim: %d passed, %d failed on %s (torch %s)"
        % (RESULTS.count(True), failed, "+".join(devices), torch.__version__)
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
