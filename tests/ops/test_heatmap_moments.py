"""heatmap_moments: every backend against the float64 reference, gradients, opcheck, bad input."""
import importlib
import math

import pytest
import torch

import fastmotion
from fastmotion import reference
from fastmotion.ops import heatmap_moments
from tests.tolerance import assert_matches_reference, backend_params

hm_mod = importlib.import_module("fastmotion.ops.heatmap_moments")  # the module, not the function
BACKENDS = backend_params(hm_mod.IMPLS)
SHAPES = [(2, 3, 1, 1), (2, 3, 7, 13), (1, 2, 61, 67), (2, 1, 16, 16), (1, 64, 5, 6), (0, 4, 8, 8), (3, 8, 8)]


def _logits(shape, device, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Peaky but not degenerate heatmaps, like a trained detector's at temperature 0.1.
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 0.5).to(device=device, dtype=dtype)


def _check(out, logits64, logits_dtype, kwargs, dtype):
    ref64 = reference.heatmap_moments(logits64, **kwargs)
    ref_lp = reference.heatmap_moments(logits_dtype, **kwargs)
    for name, o, r, rl in zip(("mean", "var"), out, ref64, ref_lp):
        if r is None:
            assert o is None
            continue
        assert o.dtype == dtype, f"{name} dtype {o.dtype} != input dtype {dtype}"
        assert_matches_reference(o, r, rl, dtype, what=name)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kp_variance,clip", [("matrix", None), ("matrix", 0.001), ("single", None), (0.01, None)])
def test_forward_matches_reference_fp32(backend, device, shape, kp_variance, clip):
    if backend == "triton" and device == "cpu" and math.prod(shape) > 20000:
        pytest.skip("large shapes are slow under TRITON_INTERPRET; covered on GPU")
    x64 = _logits(shape, device)
    x32 = x64.float()
    kwargs = dict(temperature=0.1, kp_variance=kp_variance, clip_variance=clip)
    out = heatmap_moments(x32, **kwargs, backend=backend)
    _check(out, x64.cpu(), x32.cpu(), kwargs, torch.float32)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_forward_low_precision(backend, device, dtype):
    x = _logits((2, 5, 16, 12), device, dtype=dtype)
    x64 = x.double().cpu()  # the rounded input, so only the kernel's own error counts
    kwargs = dict(temperature=0.1, kp_variance="matrix", clip_variance=0.001)
    out = heatmap_moments(x, **kwargs, backend=backend)
    ref64 = reference.heatmap_moments(x64, **kwargs)
    ref_lp = reference.heatmap_moments(x64.to(dtype), **kwargs)
    for o, r, rl in zip(out, ref64, ref_lp):
        assert o.dtype == dtype
        assert_matches_reference(o, r, rl, dtype)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_and_channels_last(backend, device):
    base = _logits((2, 9, 7, 4), device)  # (N, H, W, K) -> permute to (N, K, H, W): non-contiguous
    x = base.permute(0, 3, 1, 2)
    assert not x.is_contiguous()
    ref = reference.heatmap_moments(x.cpu(), 0.1)
    out = heatmap_moments(x, 0.1, backend=backend)
    for o, r in zip(out, ref):
        torch.testing.assert_close(o.cpu(), r, rtol=1e-9, atol=1e-12)
    cl = _logits((2, 4, 9, 7), device).contiguous(memory_format=torch.channels_last)
    out = heatmap_moments(cl, 0.1, backend=backend)
    for o, r in zip(out, reference.heatmap_moments(cl.cpu(), 0.1)):
        torch.testing.assert_close(o.cpu(), r, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("kp_variance,clip", [("matrix", None), ("matrix", 0.05), ("matrix", 0.6), ("single", None),
                                              (0.01, None)])
def test_gradcheck(backend, device, kp_variance, clip):
    x = _logits((2, 3, 5, 7), device).requires_grad_()
    # clip 0.6 is above every smallest singular value here: the rescaling branch is exercised
    fn = lambda t: tuple(o for o in heatmap_moments(t, 0.3, kp_variance, clip, backend=backend) if o is not None)  # noqa: E731
    # fast_mode (random directional derivatives) keeps the interpreted Triton run short
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-7, fast_mode=(backend == "triton" and device == "cpu"))


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_gradients_match_reference_fp32(backend, device):
    x64 = _logits((4, 10, 32, 32), device)
    gm = torch.randn(4, 10, 2, dtype=torch.float64)
    gv = torch.randn(4, 10, 2, 2, dtype=torch.float64)

    def grad(x, be):
        x = x.detach().requires_grad_()
        m, v = heatmap_moments(x, 0.1, "matrix", 0.001, backend=be)
        loss = (m * gm.to(device=m.device, dtype=m.dtype)).sum() + (v * gv.to(device=v.device, dtype=v.dtype)).sum()
        (g,) = torch.autograd.grad(loss, x)
        return g

    g64 = grad(x64.cpu(), "reference")
    g32_ref = grad(x64.float().cpu(), "reference")
    g = grad(x64.float(), backend)
    assert_matches_reference(g, g64, g32_ref, torch.float32, what="grad logits")


def test_reference_matches_original_formulation():
    """The reference against an independent transcription of the original gaussian2kp
    (5-D heatmap (B, K, D, H, W) -> mean (B, D, K, 2)), written with the original's grid."""
    torch.manual_seed(0)
    b, k, d, h, w = 2, 3, 2, 9, 11
    logits = torch.randn(b, k, d, h, w, dtype=torch.float64)
    heat = torch.softmax(logits.view(b, k, d, -1) / 0.1, dim=3).view(b, k, d, h, w)
    x = 2 * (torch.arange(w, dtype=torch.float64) / (w - 1)) - 1
    y = 2 * (torch.arange(h, dtype=torch.float64) / (h - 1)) - 1
    grid = torch.cat([x.view(1, -1).repeat(h, 1).unsqueeze(2), y.view(-1, 1).repeat(1, w).unsqueeze(2)], 2)
    grid = grid.view(1, 1, 1, h, w, 2)
    hm = heat.unsqueeze(-1) + 1e-7
    mean = (hm * grid).sum(dim=(3, 4))
    mean_sub = grid - mean.unsqueeze(-2).unsqueeze(-2)
    var = (torch.matmul(mean_sub.unsqueeze(-1), mean_sub.unsqueeze(-2)) * hm.unsqueeze(-1)).sum(dim=(3, 4))
    ours_mean, ours_var = reference.heatmap_moments(logits.permute(0, 2, 1, 3, 4), 0.1)
    torch.testing.assert_close(ours_mean, mean.permute(0, 2, 1, 3), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ours_var, var.permute(0, 2, 1, 3, 4), rtol=1e-12, atol=1e-14)


def test_clip_variance_enforces_smallest_singular_value():
    logits = torch.full((1, 1, 9, 9), -30.0, dtype=torch.float64)
    logits[..., 4, 4] = 30.0  # nearly a delta: variance ~ eps terms only
    _, var = reference.heatmap_moments(logits, 0.1, clip_variance=0.5)
    sg = torch.linalg.svdvals(var[0, 0]).min().item()
    assert abs(sg - 0.5) < 1e-9


def test_nan_propagates():
    x = _logits((1, 2, 5, 5), "cpu").float()
    x[0, 1, 2, 2] = float("nan")
    for be in ("reference", "cpu"):
        m, v = heatmap_moments(x, 0.1, backend=be)
        assert torch.isnan(m[0, 1]).all() and torch.isnan(v[0, 1]).all()
        assert torch.isfinite(m[0, 0]).all() and torch.isfinite(v[0, 0]).all()


@pytest.mark.parametrize("backend,device", [p for p in BACKENDS if p.values[0] == "cpu"])
def test_opcheck(backend, device):
    x = _logits((6, 5, 7), device).float()
    for var_mode, clip in ((0, 0.0), (0, 0.05), (1, 0.0), (2, 0.0)):
        torch.library.opcheck(torch.ops.fastmotion.heatmap_moments_forward, (x, 0.1, var_mode, clip))
        m, v, raw, lse = torch.ops.fastmotion.heatmap_moments_forward(x, 0.1, var_mode, clip)
        args = (torch.randn_like(m), torch.randn_like(v), x, m, raw, lse, 0.1, var_mode, clip)
        torch.library.opcheck(torch.ops.fastmotion.heatmap_moments_backward, args)


def _compilable(params):
    # torch.compile cannot trace a triton_op under TRITON_INTERPRET (fake tensors have no data
    # pointer): the Triton path's compile test runs on a GPU.
    out = []
    for p in params:
        backend, device = p.values
        if backend == "triton" and device == "cpu":
            continue
        out.append(p)
    return out


@pytest.mark.parametrize("backend,device", _compilable(BACKENDS))
def test_compile_fullgraph(backend, device):
    x = _logits((2, 3, 8, 8), device).float().requires_grad_()

    def f(t):
        m, v = heatmap_moments(t, 0.1, "matrix", 0.001, backend=backend)
        return m.sum() + v.sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager" if device == "cpu" else "inductor")
    out = compiled(x)
    (g,) = torch.autograd.grad(out, x)
    (g_ref,) = torch.autograd.grad(f(x), x)
    torch.testing.assert_close(out, f(x))
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_autocast_is_neutral(backend, device):
    """No autocast rule: float32 logits stay float32 inside an autocast region."""
    x = _logits((2, 3, 8, 8), device).float()
    low = torch.bfloat16 if device == "cpu" else torch.float16
    with torch.autocast(device_type=device, dtype=low):
        m, v = heatmap_moments(x, 0.1, backend=backend)
    assert m.dtype == torch.float32 and v.dtype == torch.float32
    m0, v0 = heatmap_moments(x, 0.1, backend=backend)
    torch.testing.assert_close(m, m0)
    torch.testing.assert_close(v, v0)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: heatmap_moments(torch.randn(4, 4)), ValueError, "logits"),
        (lambda: heatmap_moments(torch.ones(1, 2, 4, 4, dtype=torch.int64)), TypeError, "logits"),
        (lambda: heatmap_moments([[1.0]]), TypeError, "logits"),
        (lambda: heatmap_moments(torch.randn(1, 2, 0, 4)), ValueError, "spatial"),
        (lambda: heatmap_moments(torch.randn(1, 2, 4, 4), temperature=0), ValueError, "temperature"),
        (lambda: heatmap_moments(torch.randn(1, 2, 4, 4), temperature=-1.0), ValueError, "temperature"),
        (lambda: heatmap_moments(torch.randn(1, 2, 4, 4), kp_variance="full"), ValueError, "kp_variance"),
        # a fixed variance is checked as render_gaussians checks it
        (lambda: heatmap_moments(torch.randn(1, 2, 4, 4), kp_variance=float("inf")), ValueError, "kp_variance"),
        (lambda: heatmap_moments(torch.randn(1, 2, 4, 4), clip_variance=-1), ValueError, "clip_variance"),
        (lambda: heatmap_moments(torch.randn(1, 2, 4, 4), backend="cuda"), RuntimeError, "cuda"),
        (lambda: heatmap_moments(torch.randn(1, 2, 4, 4), backend="tpu"), ValueError, "backend"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_backend_selection_and_context(monkeypatch):
    from fastmotion import backends

    x = torch.randn(1, 2, 4, 4)
    assert backends.select("heatmap_moments", hm_mod.IMPLS, x.device) in ("cpu", "reference")
    with fastmotion.use_backend("reference"):
        assert backends.select("heatmap_moments", hm_mod.IMPLS, x.device) == "reference"
        # an explicit argument beats the context
        assert backends.select("heatmap_moments", hm_mod.IMPLS, x.device, "reference") == "reference"
    monkeypatch.setenv("FASTMOTION_BACKEND", "cuda")
    with pytest.raises(RuntimeError, match="cuda"):
        heatmap_moments(x)
    monkeypatch.setenv("FASTMOTION_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="FASTMOTION_BACKEND"):
        heatmap_moments(x)


def test_quiet_fallback_when_extension_missing(monkeypatch):
    """An automatic choice whose backend is not built falls back to the reference quietly."""
    from fastmotion import _ext, backends

    monkeypatch.setattr(_ext, "load", lambda: (None, "pretend it is not built"))
    x = torch.randn(1, 2, 4, 4)
    assert backends.select("heatmap_moments", hm_mod.IMPLS, x.device) == "reference"
    with pytest.raises(RuntimeError, match="pretend it is not built"):
        heatmap_moments(x, backend="cpu")


def test_triton_kernels_compile_for_sm90():
    """The real Triton compiler (not the interpreter) accepts both kernels for every dtype and
    epilogue mode, also with fp64 scalars as torch.compile passes them (an H200 run caught
    exactly that failure before this test covered it)."""
    from tests.triton_compile import compile_for_sm90

    scalars = {k: "fp32" for k in ("inv_t", "inv_t_lo", "w_m1", "h_m1", "x_on", "y_on", "eps_hw", "eps_hw_lo", "ex2",
                                   "ex2_lo", "ey2", "ey2_lo", "clip", "clip_lo")}
    specs = []
    for inp, acc in (("fp32", "fp32"), ("fp16", "fp32"), ("bf16", "fp32"), ("fp64", "fp64")):
        acc_t = "tl.float64" if acc == "fp64" else "tl.float32"
        fwd = {"logits_ptr": f"*{inp}", "mean_ptr": f"*{acc}", "var_ptr": f"*{acc}", "raw_ptr": f"*{acc}",
               "lse_ptr": f"*{acc}", "HW": "i32", "W": "i32", **scalars, "BLOCK": "constexpr", "ACC": "constexpr",
               "VAR_MODE": "constexpr"}
        bwd = {"logits_ptr": f"*{inp}", "grad_ptr": f"*{inp}", "mean_ptr": f"*{acc}", "raw_ptr": f"*{acc}",
               "lse_ptr": f"*{acc}", "gmean_ptr": f"*{acc}", "gvar_ptr": f"*{acc}", "HW": "i32", "W": "i32",
               **scalars, "BLOCK": "constexpr", "ACC": "constexpr", "VAR_MODE": "constexpr"}
        for mode in (0, 1, 2) if inp == "fp32" else (0,):
            specs.append(dict(module="fastmotion.kernels.heatmap_moments", kernel="heatmap_moments_fwd_kernel",
                              signature=fwd, constexprs={"BLOCK": 4096, "ACC": acc_t, "VAR_MODE": mode}, num_warps=8))
            specs.append(dict(module="fastmotion.kernels.heatmap_moments", kernel="heatmap_moments_bwd_kernel",
                              signature=bwd, constexprs={"BLOCK": 1024, "ACC": acc_t, "VAR_MODE": mode}, num_warps=4))
    compile_for_sm90(specs)
