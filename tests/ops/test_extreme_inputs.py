"""Extreme but finite inputs (issue 11, item 2): every backend gives the float64 reference's
answer, never NaN from finite input, never a noise floor that the reference does not have."""
import importlib

import pytest
import torch
import torch.nn.functional as F

from fastmotion import reference
from fastmotion.ops import grid_sample, heatmap_moments, keypoint_heatmap_embedding, render_gaussians
from fastmotion.ops import shifted_warps, warp_features
from tests.tolerance import assert_matches_reference, backend_params

pytestmark = pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")  # interpreter, masked lanes

gaussian_module, heatmap_module, grid_sample_module, shift_module, warp_module = (
    importlib.import_module(f"fastmotion.ops.{m}")
    for m in ("render_gaussians", "heatmap_moments", "grid_sample", "shifted_warps", "warp_features"))

GAUSS = backend_params(gaussian_module.IMPLS)
MOMENTS = backend_params(heatmap_module.IMPLS)

# keypoints far off the grid: the terms of the quadratic form overflow (inf - inf) although the
# heatmap is exactly 0 (the reference in float64 renders 0)
FAR = [((1e19, 1e19), torch.float32), ((-1e19, -2e19), torch.float32), ((3e30, -1e10), torch.float32),
       ((1e200, 1e200), torch.float64), ((-1e160, 3e160), torch.float64)]


@pytest.mark.parametrize("backend,device", GAUSS)
@pytest.mark.parametrize("mean,dtype", FAR, ids=[f"{m}-{str(d)[6:]}" for m, d in FAR])
def test_far_keypoint_renders_zero(backend, device, mean, dtype):
    var = torch.tensor([[[[0.3, 0.1], [0.1, 0.1]]]], dtype=dtype, device=device)
    m = torch.tensor([[mean]], dtype=dtype, device=device).requires_grad_()
    v = var.clone().requires_grad_()
    out = render_gaussians(m, v, (2, 3), backend=backend)
    expected = reference.render_gaussians(m.detach().double(), var.double(), (2, 3))
    assert torch.equal(expected, torch.zeros_like(expected))
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=0)
    gm, gv = torch.autograd.grad((out * torch.randn_like(out)).sum(), [m, v])
    assert torch.count_nonzero(gm) == 0 and torch.count_nonzero(gv) == 0  # the reference's: exactly 0
    # isotropic and fixed variances too
    single = render_gaussians(m.detach(), torch.full((1, 1, 1, 1), 0.05, dtype=dtype, device=device), (2, 3),
                              backend=backend)
    fixed = render_gaussians(m.detach(), 0.05, (2, 3), backend=backend)
    assert torch.count_nonzero(single) == 0 and torch.count_nonzero(fixed) == 0


@pytest.mark.parametrize("backend,device", GAUSS)
@pytest.mark.parametrize("norm_const", [100.0, "sum"])
def test_movement_embedding_far_driving_keypoint(backend, device, norm_const):
    """A far driving keypoint: its channel is 0 - source, not a whole NaN channel."""
    var = torch.tensor([[[0.3, 0.1], [0.1, 0.1]], [[0.02, 0.0], [0.0, 0.03]]]).expand(2, 2, 2, 2).to(device)
    md = torch.tensor([[[1e19, 1e19], [0.2, -0.1]], [[0.1, 0.3], [-3e25, 4e20]]], device=device)
    ms = torch.tensor([[[0.0, 0.0], [0.4, 0.1]], [[-0.2, 0.5], [0.3, 0.3]]], device=device)
    args = ({"mean": md, "var": var}, {"mean": ms, "var": var}, (5, 6), norm_const)
    out = keypoint_heatmap_embedding(*args, backend=backend)
    expected = reference.keypoint_heatmap_embedding(
        {"mean": md.double(), "var": var.double()}, {"mean": ms.double(), "var": var.double()}, (5, 6), norm_const)
    assert not out.isnan().any()
    same = reference.keypoint_heatmap_embedding(*args)
    assert_matches_reference(out, expected, same, torch.float32)


def _peaked_logits(dtype, device, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, h, w, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


@pytest.mark.parametrize("backend,device", MOMENTS)
@pytest.mark.parametrize("temperature,clip", [(1e-4, None), (1e-6, 1e-3), (1e-3, 0.01), (0.05, None)])
def test_heatmap_moments_backward_small_temperature(backend, device, temperature, clip):
    """At a small temperature the softmax is (nearly) one-hot and the true logit gradient (nearly)
    0: the fused backward must not leave a noise floor of order eps / T (issue 11: 6e-4 at
    T=1e-4, 30-60 at T=1e-6 with clip 1e-3)."""
    logits = _peaked_logits(torch.float32, device)
    gm = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    gv = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def grad(x, b):
        x = x.detach().requires_grad_()
        mean, var = heatmap_moments(x, temperature, "matrix", clip, backend=b)
        (g,) = torch.autograd.grad((mean * gm.to(mean)).sum() + (var * gv.to(var)).sum(), x)
        return g

    got = grad(logits, backend)
    exp64 = grad(logits.double().cpu(), "reference")
    exp32 = grad(logits.cpu(), "reference")
    assert_matches_reference(got, exp64, exp32, torch.float32, what=f"logit gradient at T={temperature}")


@pytest.mark.parametrize("backend,device", MOMENTS)
def test_heatmap_moments_all_minus_inf(backend, device):
    logits = torch.randn(2, 2, 3, 4, device=device)
    logits[0, 1] = -float("inf")
    mean, var = heatmap_moments(logits, 0.1, backend=backend)
    ref_mean, ref_var = reference.heatmap_moments(logits.cpu().double(), 0.1)
    assert torch.equal(mean.isnan().cpu(), ref_mean.isnan()) and bool(mean[0, 1].isnan().all())
    assert torch.equal(var.isnan().cpu(), ref_var.isnan()) and bool(var[0, 1].isnan().all())
    torch.testing.assert_close(mean[~mean.isnan()].double().cpu(), ref_mean[~ref_mean.isnan()], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend,device", MOMENTS)
@pytest.mark.parametrize("kp_variance,clip", [("matrix", 0.9), ("single", None), ("matrix", None)])
def test_heatmap_moments_float64_scalars(backend, device, kp_variance, clip):
    """float64 logits get their temperature and clip in float64 (Triton passes Python floats as
    float32: 4.7e-8 relative error before)."""
    logits = _peaked_logits(torch.float64, device, 5, 6, seed=3)
    mean, var = heatmap_moments(logits, 0.37, kp_variance, clip, backend=backend)
    ref_mean, ref_var = reference.heatmap_moments(logits.cpu(), 0.37, kp_variance, clip)
    torch.testing.assert_close(mean.cpu(), ref_mean, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(var.cpu(), ref_var, rtol=1e-11, atol=1e-13)
    x = logits.detach().requires_grad_()
    m, v = heatmap_moments(x, 0.37, kp_variance, clip, backend=backend)
    (g,) = torch.autograd.grad(m.sum() + v.sum(), x)
    x = logits.cpu().detach().requires_grad_()
    m, v = reference.heatmap_moments(x, 0.37, kp_variance, clip)
    (ref_g,) = torch.autograd.grad(m.sum() + v.sum(), x)
    torch.testing.assert_close(g.cpu(), ref_g, rtol=1e-10, atol=1e-12)


# ---- expanded (stride-0) inputs are read through their strides, not copied ----

def _huge_view(dtype=torch.float64):
    """A (1, 16, 65536, 65536) view of one 512 KiB row: 512 GiB if materialised, more than any
    machine here has, so a copy fails at once instead of running the machine out of memory."""
    base = torch.randn(1, 1, 1, 65536, generator=torch.Generator().manual_seed(5), dtype=dtype)
    return base, base.expand(1, 16, 65536, 65536)


def test_cpu_grid_sample_expanded_input_not_materialized():
    if grid_sample_module.IMPLS["cpu"].fn is None:
        pytest.skip("the cpu backend is not built")
    base, view = _huge_view()
    g = torch.Generator().manual_seed(6)
    grid = (torch.rand(1, 3, 4, 2, generator=g, dtype=torch.float64) * 1.9 - 0.95).requires_grad_()
    out = grid_sample(view, grid, "bilinear", "zeros", True, backend="cpu")
    # every row of the view is the base row: sampling two identical rows at y = 0 is the same
    two_rows = base.expand(1, 16, 2, 65536).contiguous()
    flat = torch.stack([grid[..., 0], torch.zeros_like(grid[..., 1])], dim=-1)
    expected = F.grid_sample(two_rows, flat, mode="bilinear", padding_mode="zeros", align_corners=True)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    (gg,) = torch.autograd.grad(out.sum(), grid)
    (exp_gg,) = torch.autograd.grad(expected.sum(), grid)
    torch.testing.assert_close(gg[..., 0], exp_gg[..., 0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gg[..., 1], torch.zeros_like(gg[..., 1]), rtol=0, atol=1e-9)  # rows equal


def test_cpu_ops_expanded_inputs_match_reference():
    """Expanded maps (every stride pattern of a broadcast) give the reference's answer on the cpu
    backend, forward and backward."""
    if grid_sample_module.IMPLS["cpu"].fn is None:
        pytest.skip("the cpu backend is not built")
    g = torch.Generator().manual_seed(7)
    for base, shape in [((1, 1, 1, 7), (2, 3, 5, 7)), ((1, 3, 5, 1), (2, 3, 5, 7)), ((2, 1, 1, 1), (2, 3, 5, 7))]:
        src = torch.randn(*base, generator=g, dtype=torch.float64).expand(*shape)
        grid = torch.rand(2, 4, 6, 2, generator=g, dtype=torch.float64) * 2.2 - 1.1
        for padding in ("zeros", "border", "reflection"):
            torch.testing.assert_close(grid_sample(src, grid, "bilinear", padding, False, backend="cpu"),
                                       F.grid_sample(src, grid, "bilinear", padding, False), rtol=1e-12, atol=1e-12)
        gr = grid.clone().requires_grad_()
        (a,) = torch.autograd.grad(grid_sample(src, gr, "bilinear", "zeros", True, backend="cpu").sum(), gr)
        (b,) = torch.autograd.grad(F.grid_sample(src, gr, "bilinear", "zeros", True).sum(), gr)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        shift = torch.randn(2, 3, 2, generator=g, dtype=torch.float64) * 0.2
        torch.testing.assert_close(shifted_warps(src, shift, backend="cpu"), reference.shifted_warps(src, shift),
                                   rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(warp_features([src], grid, "bilinear", backend="cpu")[0],
                                   reference.warp_features([src], grid, "bilinear")[0], rtol=1e-12, atol=1e-12)
        # grid / shift gradients only: the expanded map is read through its strides
        small = (grid[:, :3, :4] * 0.9).clone()
        for mode in ("bilinear", "nearest"):
            gr = small.clone().requires_grad_()
            weight = torch.randn(2, 3, 5, 7, generator=g, dtype=torch.float64)
            (a,) = torch.autograd.grad((warp_features([src], gr, mode, backend="cpu")[0] * weight).sum(), gr)
            (b,) = torch.autograd.grad((reference.warp_features([src], gr, mode)[0] * weight).sum(), gr)
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"warp_features {mode}, base {base}")
        sh = (shift + 0.013).requires_grad_()
        weight = torch.randn(2, 3, 3, 5, 7, generator=g, dtype=torch.float64)
        (a,) = torch.autograd.grad((shifted_warps(src, sh, backend="cpu") * weight).sum(), sh)
        (b,) = torch.autograd.grad((reference.shifted_warps(src, sh) * weight).sum(), sh)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10, msg=f"shifted_warps, base {base}")


# ---- the reference accepts the mixed dtypes the fused backends accept ----

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reference_mixed_dtypes(dtype):
    g = torch.Generator().manual_seed(8)
    source = torch.randn(2, 3, 5, 6, generator=g).to(dtype)
    shift = torch.randn(2, 4, 2, generator=g) * 0.2
    out = shifted_warps(source, shift, backend="reference")
    assert out.dtype == dtype
    expected = reference.shifted_warps(source.double(), shift.double())
    same = reference.shifted_warps(source, shift.to(dtype))
    assert_matches_reference(out, expected, same, dtype)
    grid = torch.rand(2, 3, 4, 2, generator=g) * 2 - 1
    (warped,) = warp_features([source], grid, "bilinear", backend="reference")
    assert warped.dtype == dtype
    assert_matches_reference(warped, reference.warp_features([source.double()], grid.double(), "bilinear")[0],
                             reference.warp_features([source], grid.to(dtype), "bilinear")[0], dtype)
    if shift_module.IMPLS["cpu"].fn is not None:
        fused = shifted_warps(source, shift, backend="cpu")
        assert_matches_reference(fused, expected, same, dtype)
