"""render_gaussians / keypoint_heatmap_embedding: every backend against the float64 reference,
gradients, broadcasting, degenerate covariances, opcheck, torch.compile, bad input."""
import importlib
import math

import pytest
import torch

import fastmotion
from fastmotion.ops import keypoint_heatmap_embedding, render_gaussians
from fastmotion import reference as ref
from tests.compile_check import assert_compiles_like_eager
from tests.tolerance import assert_matches_reference, backend_params

gmod = importlib.import_module("fastmotion.ops.render_gaussians")
BACKENDS = backend_params(gmod.IMPLS)
CPU_BACKENDS = [p for p in BACKENDS if p.values[0] == "cpu"]
INTERPRETED = fastmotion.backends.triton_interpreted()


def _slow(backend, device, numel, limit=6000):
    if backend == "triton" and device == "cpu" and numel > limit:
        pytest.skip("large shapes are slow under TRITON_INTERPRET; covered on GPU")


def _kp(lead, k, kind="matrix", seed=0, device="cpu", dtype=torch.float64):
    """Keypoints like a trained detector's: means in [-1.2, 1.2] (some off the grid), Gaussians a
    few pixels wide, full covariances with random orientation."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.rand(*lead, k, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2
    if kind == "matrix":
        a = torch.randn(*lead, k, 2, 2, generator=g, dtype=torch.float64) * 0.15
        var = a @ a.transpose(-1, -2) + 0.003 * torch.eye(2, dtype=torch.float64)
    elif kind == "single":
        var = torch.rand(*lead, k, 1, 1, generator=g, dtype=torch.float64) * 0.05 + 0.005
    else:
        var = float(kind)
    mean = mean.to(device=device, dtype=dtype)
    if isinstance(var, torch.Tensor):
        var = var.to(device=device, dtype=dtype)
    return mean, var


def _cast(t, dtype, device="cpu"):
    return t.to(device=device, dtype=dtype) if isinstance(t, torch.Tensor) else t


def _kp_variance(kind):
    return kind if kind in ("matrix", "single") else float(kind)


# ---- forward against the float64 reference ----

RENDER_SHAPES = [(2, 3, 1, 1), (2, 3, 7, 13), (1, 2, 61, 67), (1, 64, 5, 6), (3, 1, 8, 8), (0, 4, 8, 8), (5, 9, 4)]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("shape", RENDER_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("kind", ["matrix", "single", "0.02"])
def test_render_matches_reference_fp32(backend, device, shape, kind):
    _slow(backend, device, math.prod(shape))
    *lead, k, h, w = shape
    mean, var = _kp(tuple(lead), k, kind)
    out = render_gaussians(_cast(mean, torch.float32, device), _cast(var, torch.float32, device), (h, w),
                           backend=backend)
    assert out.shape == tuple(shape) and out.dtype == torch.float32 and out.device.type == device
    ref64 = ref.render_gaussians(mean, var, (h, w))
    ref32 = ref.render_gaussians(mean.float(), _cast(var, torch.float32), (h, w))
    assert_matches_reference(out, ref64, ref32, torch.float32)


EMBED_CONFIGS = [("difference", 100.0, True), ("difference", "sum", True), ("gaussian", "sum", False),
                 ("difference", 10.0, False), ("gaussian", 100.0, True)]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("heatmap_type,norm_const,bg", EMBED_CONFIGS, ids=lambda v: str(v))
@pytest.mark.parametrize("kind", ["matrix", "single", "0.01"])
def test_embedding_matches_reference_fp32(backend, device, heatmap_type, norm_const, bg, kind):
    n, k, h, w = (2, 5, 9, 12) if backend == "triton" and device == "cpu" else (3, 10, 33, 31)
    md, vd = _kp((n,), k, kind, seed=1)
    ms, vs = _kp((n,), k, kind, seed=2)

    def run(dtype, be, dev="cpu"):
        return keypoint_heatmap_embedding({"mean": _cast(md, dtype, dev), "var": _cast(vd, dtype, dev)},
                                          {"mean": _cast(ms, dtype, dev), "var": _cast(vs, dtype, dev)}, (h, w),
                                          norm_const, heatmap_type, bg, _kp_variance(kind), backend=be)

    out = run(torch.float32, backend, device)
    assert out.shape == (n, k + int(bg), h, w) and out.dtype == torch.float32
    if bg:
        assert torch.all(out[:, 0] == 0)
    assert_matches_reference(out, run(torch.float64, "reference"), run(torch.float32, "reference"), torch.float32)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision(backend, device, dtype):
    md, vd = _kp((2,), 5, seed=3)
    ms, vs = _kp((2,), 5, seed=4)
    md, vd, ms, vs = (t.to(dtype).double() for t in (md, vd, ms, vs))  # representable inputs

    def run(dt, be, dev="cpu"):
        return keypoint_heatmap_embedding({"mean": _cast(md, dt, dev), "var": _cast(vd, dt, dev)},
                                          {"mean": _cast(ms, dt, dev), "var": _cast(vs, dt, dev)}, (12, 16),
                                          "sum", backend=be)

    out = run(dtype, backend, device)
    assert out.dtype == dtype
    assert_matches_reference(out, run(torch.float64, "reference"), run(dtype, "reference"), dtype)
    r = render_gaussians(_cast(md, dtype, device), _cast(vd, dtype, device), (12, 16), backend=backend)
    assert r.dtype == dtype
    assert_matches_reference(r, ref.render_gaussians(md, vd, (12, 16)),
                             ref.render_gaussians(md.to(dtype), vd.to(dtype), (12, 16)), dtype)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_non_contiguous_inputs(backend, device):
    base_m = torch.rand(2, 4, 3, 2, dtype=torch.float64) * 2 - 1  # (N, K, ..) permuted below
    mean = base_m.permute(0, 2, 1, 3)  # (2, 3, 4, 2), non-contiguous
    _, var = _kp((2, 3), 4)
    var_t = var.transpose(-1, -2).contiguous().transpose(-1, -2)  # same values, transposed strides
    assert not mean.is_contiguous() and not var_t.is_contiguous()
    out = render_gaussians(mean.to(device), var_t.to(device), (7, 9), backend=backend)
    torch.testing.assert_close(out.cpu(), ref.render_gaussians(mean, var, (7, 9)), rtol=1e-9, atol=1e-12)


def test_reference_matches_original_formulation():
    """The reference against an independent transcription of the original kp2gaussian, matrix
    inverse and MovementEmbeddingModule heatmap part (5-D (B, D, K, ...) keypoints, one source
    frame), written with the original's grid construction and a plain matrix inverse."""
    b, d, k, h, w = 2, 3, 4, 9, 11
    md, vd = _kp((b, d), k, seed=5)
    ms, vs = _kp((b, 1), k, seed=6)

    def grid():
        x = 2 * (torch.arange(w, dtype=torch.float64) / (w - 1)) - 1
        y = 2 * (torch.arange(h, dtype=torch.float64) / (h - 1)) - 1
        return torch.cat([x.view(1, -1).repeat(h, 1).unsqueeze(2), y.view(-1, 1).repeat(1, w).unsqueeze(2)], 2)

    def kp2gaussian(mean, var):
        lead = mean.dim() - 1
        g = grid().view((1,) * lead + (h, w, 2)).repeat(*mean.shape[:lead], 1, 1, 1)
        sub = g - mean.view(*mean.shape[:lead], 1, 1, 2)
        inv = torch.linalg.inv(var).view(*var.shape[:lead], 1, 1, 2, 2)
        under = torch.matmul(torch.matmul(sub.unsqueeze(-2), inv), sub.unsqueeze(-1)).squeeze(-1).squeeze(-1)
        return torch.exp(-0.5 * under)

    def normalize(heat, norm_const):
        if norm_const == "sum":
            s = heat.shape
            flat = heat.view(s[0], s[1], s[2], -1)
            return (flat / flat.sum(dim=3, keepdim=True)).view(*s)
        return heat / norm_const

    for norm_const in (100, "sum"):
        heat = normalize(kp2gaussian(md, vd), norm_const) - normalize(kp2gaussian(ms, vs), norm_const)
        heat = torch.cat([torch.zeros(b, d, 1, h, w, dtype=torch.float64), heat], dim=2)
        ours = ref.keypoint_heatmap_embedding({"mean": md, "var": vd}, {"mean": ms, "var": vs}, (h, w), norm_const)
        torch.testing.assert_close(ours, heat, rtol=1e-12, atol=1e-14)
        single = ref.render_gaussians(md, vd[..., :1, :1], (h, w))
        sub = grid() - md.unsqueeze(-2).unsqueeze(-2)
        torch.testing.assert_close(single, torch.exp(-0.5 * (sub**2).sum(-1) / vd[..., :1, :1]), rtol=1e-12,
                                   atol=1e-14)


# ---- broadcasting of kp_source ----

BROADCASTS = [((2, 3), (2, 1)), ((2, 3), (1, 3)), ((2, 3), ()), ((4,), (1,)), ((2, 3, 2), (2, 1, 2)), ((1, 3), (2, 1))]


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("lead_d,lead_s", BROADCASTS, ids=str)
def test_broadcast_source_forward_and_grads(backend, device, lead_d, lead_s):
    k, h, w = 3, 6, 5
    md, vd = _kp(lead_d, k, seed=7)
    ms, vs = _kp(lead_s, k, seed=8)

    def grads(be, dev, dtype):
        ts = [t.detach().to(device=dev, dtype=dtype).clone().requires_grad_() for t in (md, vd, ms, vs)]
        out = keypoint_heatmap_embedding({"mean": ts[0], "var": ts[1]}, {"mean": ts[2], "var": ts[3]}, (h, w), "sum",
                                         backend=be)
        weight = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape)
        (out * weight.to(device=dev, dtype=dtype)).sum().backward()
        return [out] + [t.grad for t in ts]

    got = grads(backend, device, torch.float32)
    want = grads("reference", "cpu", torch.float64)
    want32 = grads("reference", "cpu", torch.float32)
    lead = tuple(torch.broadcast_shapes(lead_d, lead_s))
    assert got[0].shape == lead + (k + 1, h, w)
    for name, g, r, r32 in zip(("out", "mean_d", "var_d", "mean_s", "var_s"), got, want, want32):
        assert g.shape == r.shape, name
        assert_matches_reference(g, r, r32, torch.float32, what=name)


def test_broadcast_source_is_not_copied():
    """The kernels read a broadcast source through zero strides: the views handed to the fused op
    share the source's storage."""
    md, vd = _kp((2, 3), 4)
    ms, vs = _kp((2, 1), 4)
    views = gmod._ab_views((2, 3), [(md, (2, 3)), (vd, (2, 3)), (ms, (2, 1)), (vs, (2, 1))])
    assert [tuple(v.shape[:2]) for v in views] == [(2, 3)] * 4
    assert views[2].stride(1) == 0 and views[3].stride(1) == 0
    assert views[2].data_ptr() == ms.data_ptr() and views[3].data_ptr() == vs.data_ptr()


# ---- gradients ----

def _grad_inputs(kind, lead=(2,), k=2, seed=9):
    md, vd = _kp(lead, k, kind, seed=seed)
    ms, vs = _kp(lead, k, kind, seed=seed + 1)
    req = lambda t: t.clone().requires_grad_() if isinstance(t, torch.Tensor) else t  # noqa: E731
    return req(md), req(vd), req(ms), req(vs)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("kind", ["matrix", "single", "0.02"])
@pytest.mark.parametrize("norm_const", [100.0, "sum"])
def test_gradcheck_embedding(backend, device, kind, norm_const):
    md, vd, ms, vs = (_cast(t, torch.float64, device) for t in _grad_inputs(kind))
    tensors = [t for t in (md, vd, ms, vs) if isinstance(t, torch.Tensor)]
    for t in tensors:
        t.requires_grad_()

    def fn(*ts):
        it = iter(ts)
        a = next(it)
        b = next(it) if isinstance(vd, torch.Tensor) else vd
        c = next(it)
        d = next(it) if isinstance(vs, torch.Tensor) else vs
        return keypoint_heatmap_embedding({"mean": a, "var": b}, {"mean": c, "var": d}, (4, 5), norm_const,
                                          "difference", True, _kp_variance(kind), backend=backend)

    fast = backend == "triton" and device == "cpu"
    assert torch.autograd.gradcheck(fn, tuple(tensors), eps=1e-6, atol=1e-7, fast_mode=fast)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("kind", ["matrix", "single"])
def test_gradcheck_render(backend, device, kind):
    md, vd, _, _ = (_cast(t, torch.float64, device) for t in _grad_inputs(kind, lead=(1,), k=3))
    md.requires_grad_()
    vd.requires_grad_()
    fast = backend == "triton" and device == "cpu"
    assert torch.autograd.gradcheck(lambda m, v: render_gaussians(m, v, (5, 3), backend=backend), (md, vd), eps=1e-6,
                                     atol=1e-7, fast_mode=fast)


@pytest.mark.parametrize("backend,device", BACKENDS)
@pytest.mark.parametrize("norm_const", [100.0, "sum"])
def test_gradients_match_reference_fp32(backend, device, norm_const):
    n, k, h, w = (1, 3, 10, 9) if backend == "triton" and device == "cpu" else (4, 10, 32, 32)
    md, vd = _kp((n,), k, seed=11)
    ms, vs = _kp((n,), k, seed=12)
    gout = torch.randn(n, k + 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def grads(be, dev, dtype):
        ts = [t.detach().to(device=dev, dtype=dtype).clone().requires_grad_() for t in (md, vd, ms, vs)]
        out = keypoint_heatmap_embedding({"mean": ts[0], "var": ts[1]}, {"mean": ts[2], "var": ts[3]}, (h, w),
                                         norm_const, backend=be)
        return torch.autograd.grad((out * gout.to(device=dev, dtype=dtype)).sum(), ts)

    got, want, want32 = grads(backend, device, torch.float32), grads("reference", "cpu", torch.float64), \
        grads("reference", "cpu", torch.float32)
    for name, g, r, r32 in zip(("mean_d", "var_d", "mean_s", "var_s"), got, want, want32):
        assert_matches_reference(g, r, r32, torch.float32, what=name)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_backward_with_expanded_and_channels_last_grad(backend, device):
    md, vd = _kp((2,), 3, seed=13)
    mean = md.float().to(device).requires_grad_()
    var = vd.float().to(device).requires_grad_()
    out = render_gaussians(mean, var, (6, 7), backend=backend)
    (g_sum,) = torch.autograd.grad(out.sum(), mean, retain_graph=True)  # grad_out: expanded ones, strides 0
    gcl = torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(13)).to(device)
    gcl = gcl.contiguous(memory_format=torch.channels_last)
    (g_cl,) = torch.autograd.grad(out, mean, gcl)
    m64 = md.clone().requires_grad_()
    o64 = ref.render_gaussians(m64, vd, (6, 7))
    (r_sum,) = torch.autograd.grad(o64.sum(), m64, retain_graph=True)
    (r_cl,) = torch.autograd.grad(o64, m64, gcl.double().cpu())
    torch.testing.assert_close(g_sum.double().cpu(), r_sum, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_cl.double().cpu(), r_cl, rtol=1e-4, atol=1e-4)


def test_triton_split_backward_matches_fused():
    """The Triton backward splits a heatmap over several programs when there are few keypoints;
    the partials + epilogue path agrees with the single-program path."""
    if gmod.IMPLS.get("triton") is None or not (INTERPRETED or torch.cuda.is_available()):
        pytest.skip("triton backend not available")
    from fastmotion.kernels import render_gaussians as tk

    device = "cuda" if torch.cuda.is_available() else "cpu"
    md, vd = (t.float().to(device) for t in _kp((1, 2), 3, seed=14))
    ms, vs = (t.float().to(device) for t in _kp((1, 2), 3, seed=15))
    g = torch.randn(1, 2, 4, 9, 7, device=device)
    for norm_sum in (False, True):
        one = tk.render_gaussians_backward(g, md, vd, ms, vs, 1.0, 10.0, norm_sum, True, split=1)
        three = tk.render_gaussians_backward(g, md, vd, ms, vs, 1.0, 10.0, norm_sum, True, split=3)
        for a, b in zip(one, three):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---- degenerate input: defined, finite, the same in every backend ----

def _degenerate_covariances():
    eye = torch.eye(2, dtype=torch.float64)
    rank1 = torch.tensor([[0.04, 0.02], [0.02, 0.01]], dtype=torch.float64)  # det 0
    near = rank1 + 1e-14 * eye  # det ~ 5e-16 < DET_EPS
    nearly_ok = rank1 + 1e-5 * eye  # det ~ 5e-7: a thin but regular Gaussian
    return torch.stack([rank1, near, nearly_ok, torch.zeros(2, 2, dtype=torch.float64), -0.01 * eye,
                        torch.tensor([[0.02, 0.0], [0.0, -0.01]], dtype=torch.float64),  # indefinite
                        1e-20 * eye]).unsqueeze(0)  # (1, 7, 2, 2)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_degenerate_covariances_are_finite_and_defined(backend, device):
    var = _degenerate_covariances()
    k = var.shape[1]
    mean = torch.zeros(1, k, 2, dtype=torch.float64)
    mean[0, :, 0] = torch.linspace(-0.3, 0.3, k, dtype=torch.float64)
    want = ref.render_gaussians(mean, var, (9, 11))
    assert torch.isfinite(want).all() and want.min() >= 0 and want.max() <= 1
    assert torch.all(want[0, 3] == 1)  # zero covariance: flat map of ones (determinant clamped)
    assert torch.all(want[0, 4] == 1)  # negative definite: quadratic form clamped at 0
    got = render_gaussians(mean.to(device), var.to(device), (9, 11), backend=backend).cpu()
    # With a clamped determinant (singular, indefinite) the precision is ~1e10: q is a cancelling
    # sum of 1e10-sized terms, so rounding order (FMA contraction on GPUs) moves G by ~1e-6 there.
    well_conditioned = [2, 3, 4, 6]
    torch.testing.assert_close(got[:, well_conditioned], want[:, well_conditioned], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    # gradients stay finite and agree with the reference's autograd
    m_ref, v_ref = mean.clone().requires_grad_(), var.clone().requires_grad_()
    weight = torch.rand(1, k, 9, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    r = torch.autograd.grad((ref.render_gaussians(m_ref, v_ref, (9, 11)) * weight).sum(), (m_ref, v_ref))
    m_got, v_got = mean.to(device).requires_grad_(), var.to(device).requires_grad_()
    g = torch.autograd.grad((render_gaussians(m_got, v_got, (9, 11), backend=backend) * weight.to(device)).sum(),
                            (m_got, v_got))
    for a, b in zip(g, r):
        assert torch.isfinite(a).all()
        # singular covariances (clamped determinant: precisions ~1e10) are ill-conditioned: the
        # gradient is a cancelling sum of ~1e10-sized terms, so only agreement to ~1e-5 is meaningful
        torch.testing.assert_close(a.cpu(), b, rtol=1e-5, atol=1e-4 * b.abs().max().item())
        torch.testing.assert_close(a.cpu()[:, well_conditioned], b[:, well_conditioned], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_degenerate_isotropic_and_empty_sum(backend, device):
    mean = torch.tensor([[[0.1, 0.2], [0.0, 0.0], [5.0, 5.0]]], dtype=torch.float64)
    var = torch.tensor([0.0, -0.02, 1e-4], dtype=torch.float64).view(1, 3, 1, 1)
    want = ref.render_gaussians(mean, var, (6, 6))
    assert torch.all(want[0, 0] == 1) and torch.all(want[0, 1] == 1)  # v = 0 / v < 0: as the matrix v I
    got = render_gaussians(mean.to(device), var.to(device), (6, 6), backend=backend)
    torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-12)
    # a Gaussian entirely off the grid: its sum underflows to 0, the normalised heatmap is 0, not NaN
    kp = {"mean": mean.to(device).requires_grad_(), "var": var.abs().to(device) + 1e-4}
    out = keypoint_heatmap_embedding(kp, kp, (6, 6), "sum", "gaussian", kp_variance="single", backend=backend)
    assert torch.isfinite(out).all() and torch.all(out[0, 3] == 0)
    (g,) = torch.autograd.grad(out.sum(), kp["mean"])
    assert torch.isfinite(g).all() and torch.all(g[0, 2] == 0)


@pytest.mark.parametrize("backend,device", BACKENDS)
def test_nan_propagates_to_its_keypoint_only(backend, device):
    mean, var = _kp((1,), 3, seed=16, dtype=torch.float32)
    mean[0, 1, 0] = float("nan")
    out = render_gaussians(mean.to(device), var.to(device), (5, 5), backend=backend).cpu()
    assert torch.isnan(out[0, 1]).all()
    assert torch.isfinite(out[0, 0]).all() and torch.isfinite(out[0, 2]).all()


# ---- torch.library: opcheck, torch.compile ----

@pytest.mark.parametrize("backend,device", CPU_BACKENDS)
def test_opcheck(backend, device):
    md, vd = (t.float() for t in _kp((2, 3), 4, seed=17))
    ms, vs = (t.float() for t in _kp((2, 1), 4, seed=18))
    ms_b, vs_b = ms.expand(2, 3, 4, 2), vs.expand(2, 3, 4, 2, 2)  # zero strides, as the op layer passes them
    fwd = torch.ops.fastmotion.render_gaussians_forward
    bwd = torch.ops.fastmotion.render_gaussians_backward
    cases = [(md, vd, ms_b, vs_b, 1.0, 5, 7, 100.0, False, True),
             (md, vd[..., :1, :1].contiguous(), None, None, 1.0, 5, 7, 1.0, True, False),
             (md, None, ms_b, None, 0.02, 5, 7, 10.0, False, True),
             (md[0], vd[0], ms_b[1], vs_b[1], 1.0, 4, 3, 1.0, True, True)]  # one leading dim
    for args in cases:
        torch.library.opcheck(fwd, args)
        out = fwd(*args)
        grad = torch.randn_like(out)
        torch.library.opcheck(bwd, (grad, *args[:5], *args[7:]))


@pytest.mark.parametrize("backend,device", CPU_BACKENDS)
def test_compile_fullgraph(backend, device):
    md, vd = (t.float().requires_grad_() for t in _kp((2,), 3, seed=19))
    ms, vs = (t.float() for t in _kp((2,), 3, seed=20))

    def f(m, v):
        heat = keypoint_heatmap_embedding({"mean": m, "var": v}, {"mean": ms, "var": vs}, (8, 8), 100,
                                          backend=backend)
        return heat.square().sum() + render_gaussians(m, v, (5, 6), backend=backend).sum()

    assert_compiles_like_eager(f, md, vd)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("compile_backend", ["aot_eager", "inductor"])
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_compile_fullgraph_gpu(backend, compile_backend):
    if backend not in gmod.IMPLS or fastmotion.backends.unavailable_reason(backend, "cuda",
                                                                          gmod.IMPLS[backend].cpp_op):
        pytest.skip(f"{backend} backend not available")
    md, vd = (t.float().cuda().requires_grad_() for t in _kp((2,), 3, seed=21))
    ms, vs = (t.float().cuda() for t in _kp((2,), 3, seed=22))

    def f(m, v):
        heat = keypoint_heatmap_embedding({"mean": m, "var": v}, {"mean": ms, "var": vs}, (8, 8), "sum",
                                          backend=backend)
        return heat.square().sum() + render_gaussians(m, v, (5, 6), backend=backend).sum()

    assert_compiles_like_eager(f, md, vd, backend=compile_backend)


# ---- argument checks and dispatch ----

M = torch.zeros(1, 2, 2)
V = torch.eye(2).expand(1, 2, 2, 2)
KP = {"mean": M, "var": V}


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: render_gaussians(torch.zeros(2, 3), V, (4, 4)), ValueError, "mean"),
        (lambda: render_gaussians(torch.zeros(2), V, (4, 4)), ValueError, "mean"),
        (lambda: render_gaussians(M.long(), V, (4, 4)), TypeError, "mean"),
        (lambda: render_gaussians(M, torch.eye(3).expand(1, 2, 3, 3), (4, 4)), ValueError, "var"),
        (lambda: render_gaussians(M, torch.ones(1, 3, 2, 2), (4, 4)), ValueError, "var"),
        (lambda: render_gaussians(M, -1.0, (4, 4)), ValueError, "var"),
        (lambda: render_gaussians(M, 0.0, (4, 4)), ValueError, "var"),
        (lambda: render_gaussians(M, "x", (4, 4)), TypeError, "var"),
        (lambda: render_gaussians(M, V, (0, 4)), ValueError, "spatial_size"),
        (lambda: render_gaussians(M, V, 4), ValueError, "spatial_size"),
        (lambda: render_gaussians(M, V, (4, 4), backend="cuda"), RuntimeError, "cuda"),
        (lambda: render_gaussians(M, V, (4, 4), backend="tpu"), ValueError, "backend"),
        (lambda: keypoint_heatmap_embedding(KP, KP, (4, 4), heatmap_type="sum"), ValueError, "heatmap_type"),
        (lambda: keypoint_heatmap_embedding(KP, KP, (4, 4), norm_const=0), ValueError, "norm_const"),
        (lambda: keypoint_heatmap_embedding(KP, KP, (4, 4), norm_const="max"), ValueError, "norm_const"),
        (lambda: keypoint_heatmap_embedding(KP, KP, (4, 4), kp_variance="full"), ValueError, "kp_variance"),
        (lambda: keypoint_heatmap_embedding(KP, KP, (4, 4), kp_variance=-0.1), ValueError, "kp_variance"),
        (lambda: keypoint_heatmap_embedding(M, KP, (4, 4)), TypeError, "kp_driving"),
        (lambda: keypoint_heatmap_embedding(KP, None, (4, 4)), TypeError, "kp_source"),
        (lambda: keypoint_heatmap_embedding({"mean": M}, KP, (4, 4)), ValueError, "kp_driving"),
        (lambda: keypoint_heatmap_embedding(KP, KP, (4, 4), kp_variance="single"), ValueError, "kp_variance"),
        (lambda: keypoint_heatmap_embedding(KP, {"mean": torch.zeros(1, 3, 2), "var": torch.eye(2).expand(1, 3, 2, 2)},
                                            (4, 4)), ValueError, "keypoints"),
        (lambda: keypoint_heatmap_embedding({"mean": torch.zeros(2, 2, 2), "var": torch.eye(2).expand(2, 2, 2, 2)},
                                            {"mean": torch.zeros(3, 2, 2), "var": torch.eye(2).expand(3, 2, 2, 2)},
                                            (4, 4)), ValueError, "broadcast"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_gaussian_type_ignores_source_and_fixed_variance_ignores_var():
    out = keypoint_heatmap_embedding({"mean": M}, None, (4, 5), 1.0, "gaussian", False, 0.05)
    torch.testing.assert_close(out, render_gaussians(M, 0.05, (4, 5)))


@pytest.mark.parametrize("backend,device", CPU_BACKENDS)
def test_cpp_op_rejects_bad_shapes(backend, device):
    fwd = torch.ops.fastmotion.render_gaussians_forward
    md = torch.zeros(1, 2, 3, 2)
    with pytest.raises(RuntimeError, match="mean_d"):
        fwd(md[0, 0], None, None, None, 1.0, 4, 4, 1.0, False, False)
    with pytest.raises(RuntimeError, match="var_d"):
        fwd(md, torch.zeros(2, 3, 2, 2), None, None, 1.0, 4, 4, 1.0, False, False)
    with pytest.raises(RuntimeError, match="var_d"):
        fwd(md, torch.zeros(1, 2, 3, 3, 3), None, None, 1.0, 4, 4, 1.0, False, False)
    with pytest.raises(RuntimeError, match="fixed_var"):
        fwd(md, None, None, None, 0.0, 4, 4, 1.0, False, False)
    with pytest.raises(RuntimeError, match="mean_s"):
        fwd(md, None, torch.zeros(1, 1, 3, 2), None, 1.0, 4, 4, 1.0, False, False)
    with pytest.raises(RuntimeError, match="var_s"):
        fwd(md, torch.zeros(1, 2, 3, 2, 2), md, None, 1.0, 4, 4, 1.0, False, False)
    with pytest.raises(RuntimeError, match="height"):
        fwd(md, None, None, None, 1.0, 0, 4, 1.0, False, False)


def test_default_backend_and_fallback(monkeypatch):
    from fastmotion import _ext, backends

    assert backends.select("render_gaussians", gmod.IMPLS, torch.device("cpu")) in ("cpu", "reference")
    monkeypatch.setattr(_ext, "load", lambda: (None, "pretend it is not built"))
    assert backends.select("render_gaussians", gmod.IMPLS, torch.device("cpu")) == "reference"
    with pytest.raises(RuntimeError, match="pretend it is not built"):
        render_gaussians(M, V, (4, 4), backend="cpu")


def test_triton_kernels_compile_for_sm90():
    """The real Triton compiler (not the interpreter) accepts every kernel for every dtype, in
    the variants that change the generated code (variance mode, source, normalisation, split)."""
    from tests.triton_compile import compile_for_sm90

    mod = "fastmotion.kernels.render_gaussians"
    strides = {n: "i32" for n in ("md_sa", "md_sb", "vd_sa", "vd_sb", "ms_sa", "ms_sb", "vs_sa", "vs_sb")}
    scalars = {n: "fp32" for n in ("fixed_hi", "fixed_lo", "norm_hi", "norm_lo")}
    grid = {n: "fp32" for n in ("w_m1", "h_m1", "x_on", "y_on")}
    specs = []
    variants = {"fp32": [(2, 1, 0, 0), (1, 1, 1, 1), (0, 0, 0, 1), (2, 1, 1, 0)], "fp16": [(2, 1, 0, 1)],
                "bf16": [(2, 1, 1, 1)], "fp64": [(2, 1, 1, 1), (1, 0, 0, 0)]}
    for inp, combos in variants.items():
        acc = "fp64" if inp == "fp64" else "fp32"
        acc_t = "tl.float64" if inp == "fp64" else "tl.float32"
        kp = {n: f"*{inp}" for n in ("md_ptr", "vd_ptr", "ms_ptr", "vs_ptr")}
        grads = {n: f"*{inp}" for n in ("gmd_ptr", "gvd_ptr", "gms_ptr", "gvs_ptr")}
        fwd = {"out_ptr": f"*{inp}", **kp, **{n: "i32" for n in ("B", "C", "H", "W", "rows_per_prog")}, **strides,
               **scalars, **grid, **{n: "constexpr" for n in ("MODE", "HAS_SRC", "BG", "NORM_SUM", "BLOCK_H",
                                                              "BLOCK_W", "ACC")}}
        bwd = {"gout_ptr": f"*{inp}", **kp, **grads, "part_ptr": f"*{acc}",
               **{n: "i32" for n in ("B", "K", "H", "W", "rows_per_prog", "n_split", "g_sa", "g_sb", "g_sc", "g_sh",
                                     "g_sw")},
               **strides, **scalars, **grid,
               **{n: "constexpr" for n in ("MODE", "HAS_SRC", "BG", "NORM_SUM", "FUSED", "BLOCK_H", "BLOCK_W",
                                           "ACC")}}
        epi = {"part_ptr": f"*{acc}", **kp, **grads, **{n: "i32" for n in ("B", "K", "n_split")}, **strides,
               **scalars, **{n: "constexpr" for n in ("MODE", "HAS_SRC", "NORM_SUM", "SPLIT_BLOCK", "ACC")}}
        for mode, has_src, norm_sum, fused in combos:
            specs.append(dict(module=mod, kernel="gaussian_fwd_kernel", signature=fwd, num_warps=4,
                              constexprs={"MODE": mode, "HAS_SRC": has_src, "BG": 1, "NORM_SUM": norm_sum,
                                          "BLOCK_H": 16, "BLOCK_W": 64, "ACC": acc_t}))
            specs.append(dict(module=mod, kernel="gaussian_bwd_kernel", signature=bwd,
                              num_warps=8 if norm_sum and has_src else 4,
                              constexprs={"MODE": mode, "HAS_SRC": has_src, "BG": 1, "NORM_SUM": norm_sum,
                                          "FUSED": fused, "BLOCK_H": 8, "BLOCK_W": 64, "ACC": acc_t}))
            if not fused:
                specs.append(dict(module=mod, kernel="gaussian_bwd_epilogue_kernel", signature=epi, num_warps=1,
                                  constexprs={"MODE": mode, "HAS_SRC": has_src, "NORM_SUM": norm_sum,
                                              "SPLIT_BLOCK": 8, "ACC": acc_t}))
    compile_for_sm90(specs)
