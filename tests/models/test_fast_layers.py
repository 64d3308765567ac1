"""The fast path's exact rewrites, piece by piece, against the plain layers they replace."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastmotion.models import batchnorm_relu as bnr
from fastmotion.models import conv_fusion as cf
from fastmotion.models import resample2x as rs
from fastmotion.models.conv3d_layout import FrameConv2d


def randomized_bn(channels, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels).to(dtype)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=gen, dtype=dtype) * 0.1)
        bn.running_var.copy_(torch.rand(channels, generator=gen, dtype=dtype) + 0.5)
        bn.weight.copy_(torch.rand(channels, generator=gen, dtype=dtype) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=gen, dtype=dtype) * 0.1)
    return bn


@pytest.mark.parametrize("size", [(1, 1), (4, 4), (5, 7)])
def test_subpixel_conv_equals_upsample_then_conv(size):
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    w, b = torch.randn(6, 5, 3, 3, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    expected = F.conv2d(F.interpolate(x, scale_factor=(2, 2)), w, b, padding=1)

    def subpixel_conv(x):  # as fused_conv runs it: the phase convolutions, then their interleave
        return cf.interleave_phases(F.conv2d(x, *cf.subpixel_weights(w, b), padding=1))

    assert torch.allclose(subpixel_conv(x), expected, atol=1e-12)
    assert torch.allclose(subpixel_conv(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
def test_interleave_backward(channels_last):
    x = torch.randn(2, 8, 4, 6, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    assert torch.autograd.gradcheck(cf.interleave_phases, (x,))


def test_fold_batchnorm_equals_conv_then_eval_norm():
    conv = nn.Conv2d(4, 6, 3, padding=1).double()
    bn = randomized_bn(6).eval()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    w, b = cf.fold_batchnorm(conv.weight, conv.bias, bn)
    assert torch.allclose(F.conv2d(x, w, b, padding=1), bn(conv(x)), atol=1e-12)


@pytest.mark.parametrize("kind", ["relu", "residual", "subpixel", "groups", "plain"])
def test_fused_conv_inference_matches_layers(kind):
    """float32 inference path (oneDNN pre-packed weights on CPU) against the plain layers."""
    torch.manual_seed(0)
    groups = 3 if kind == "groups" else 1
    conv = FrameConv2d(6, 6, (3, 3) if kind != "groups" else (1, 1), padding=(1, 1) if kind != "groups" else 0,
                       groups=groups)
    bn = randomized_bn(6, torch.float32).eval() if kind in ("relu", "subpixel", "groups") else None
    owner = nn.Module()
    x = torch.randn(2, 6, 8, 8).contiguous(memory_format=torch.channels_last)
    residual = torch.randn(2, 6, 8, 8) if kind == "residual" else None
    subpixel = kind == "subpixel"
    with torch.no_grad():
        inp = F.interpolate(x, scale_factor=(2, 2)) if subpixel else x
        expected = conv(inp)
        if bn is not None:
            expected = F.relu(bn(expected))
        if residual is not None:
            expected = expected + residual
        got = cf.fused_conv(owner, "c", conv, x, norm=bn, relu=bn is not None, subpixel=subpixel, residual=residual)
        again = cf.fused_conv(owner, "c", conv, x, norm=bn, relu=bn is not None, subpixel=subpixel, residual=residual)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-5
    assert torch.equal(got, again)  # cached weights


def test_fused_conv_cache_follows_weights_and_shapes():
    conv = FrameConv2d(3, 4, (3, 3), padding=(1, 1))
    owner = nn.Module()
    with torch.no_grad():
        for size in (8, 6):
            x = torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last)
            assert (cf.fused_conv(owner, "c", conv, x) - conv(x)).abs().max() < 1e-5
            conv.weight.mul_(2)  # in place, as an optimizer step or load_state_dict
            assert (cf.fused_conv(owner, "c", conv, x) - conv(x)).abs().max() < 1e-5


def test_batchnorm_relu_train_equals_module():
    x = torch.randn(4, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    for momentum in (0.1, None):
        bn = randomized_bn(5).train()
        bn.momentum = momentum
        mine = copy.deepcopy(bn)
        expected = torch.relu(bn(x))
        got = bnr.batchnorm_relu_train(mine, x)
        assert torch.allclose(got, expected, atol=1e-13)
        grad = torch.randn_like(expected)
        a = torch.autograd.grad(expected, [x, bn.weight, bn.bias], grad)
        b = torch.autograd.grad(got, [x, mine.weight, mine.bias], grad)
        for p, q in zip(a, b):
            assert torch.allclose(p, q, atol=1e-12)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.allclose(getattr(bn, name).double(), getattr(mine, name).double())
    assert not bnr.supported(nn.SyncBatchNorm(5).train(), x)
    assert not bnr.supported(randomized_bn(5).eval(), x)


def _kernel_or_skip():
    from fastmotion import _ext
    if not _ext.has_kernel("batchnorm_relu_backward", "CPU"):
        pytest.skip("fastmotion._C (CPU kernels) not built")
    return torch.ops.fastmotion.batchnorm_relu_backward


def _bn_case(shape, dtype, affine, seed=0):
    gen = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(shape, generator=gen, dtype=dtype)
    w = torch.rand(c, generator=gen, dtype=dtype) + 0.5 if affine else None
    b = torch.randn(c, generator=gen, dtype=dtype) * 0.3 if affine else None
    _, mean, invstd = torch.ops.aten.native_batch_norm(x, w, b, None, None, True, 0.1, 1e-5)
    grad = torch.randn(shape, generator=gen, dtype=dtype)
    return grad, x, w, b, mean, invstd


def _autograd_reference(grad, x, w, b):
    """Float64 autograd through relu(batch_norm(x)): independent of both backward implementations."""
    x64 = x.detach().double().requires_grad_()
    params = [p.detach().double().requires_grad_() for p in (w, b)] if w is not None else []
    out = torch.relu(F.batch_norm(x64, None, None, *(params or [None, None]), training=True, eps=1e-5))
    return torch.autograd.grad(out, [x64] + params, grad.double())


@pytest.mark.parametrize("shape", [(4, 5, 6, 7), (2, 3, 1, 1), (1, 70, 3, 2), (3, 2, 17, 9)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batchnorm_relu_backward_kernel(shape, layout, affine, dtype):
    kernel = _kernel_or_skip()
    grad, x, w, b, mean, invstd = _bn_case(shape, dtype, affine)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    grad, x = grad.contiguous(memory_format=fmt), x.contiguous(memory_format=fmt)
    gx, gw, gb = kernel(grad, x, w, b, mean, invstd)
    assert gx.shape == x.shape and gx.is_contiguous(memory_format=fmt)
    expected = _autograd_reference(grad, x, w, b)
    tol = 1e-11 if dtype == torch.float64 else 2e-5
    scale = max(float(e.abs().max()) for e in expected) + 1.0
    assert (gx.double() - expected[0]).abs().max() <= tol * scale
    if affine:
        assert (gw.double() - expected[1]).abs().max() <= tol * scale
        assert (gb.double() - expected[2]).abs().max() <= tol * scale
    # the composite it replaces gives the same
    comp = bnr.batchnorm_relu_backward_composite(grad, x, w, b, mean, invstd, 1e-5, [True, affine, affine])
    assert (gx - comp[0]).abs().max() <= tol * scale


def test_batchnorm_relu_backward_kernel_is_deterministic_and_strided_grad_ok():
    _kernel_or_skip()
    torch.manual_seed(0)
    bn = randomized_bn(6, dtype=torch.float32).train()
    x = torch.randn(3, 6, 20, 20).contiguous(memory_format=torch.channels_last).requires_grad_()
    big = torch.randn(3, 12, 20, 20)
    grads = []
    for _ in range(2):
        out = bnr.batchnorm_relu_train(bn, x)
        grads.append(torch.autograd.grad(out, x, big[:, :6])[0])  # a channel slice, as from a concatenation
    assert torch.equal(grads[0], grads[1])
    expected = _autograd_reference(big[:, :6], x, bn.weight, bn.bias)[0]
    assert (grads[0].double() - expected).abs().max() < 1e-4


def test_batchnorm_relu_backward_kernel_takes_channel_sliced_grad():
    """NCHW: a gradient with contiguous (H, W) planes at other strides (a slice of a concatenation's
    gradient) is read in place, with the same result as its contiguous copy."""
    kernel = _kernel_or_skip()
    grad, x, w, b, mean, invstd = _bn_case((3, 4, 5, 6), torch.float64, True)
    big = torch.cat([torch.randn_like(grad), grad], dim=1)[:, 4:]
    assert not big.is_contiguous() and big.stride(3) == 1
    for got, want in zip(kernel(big, x, w, b, mean, invstd), kernel(big.contiguous(), x, w, b, mean, invstd)):
        assert torch.equal(got, want)
    expected = _autograd_reference(grad, x, w, b)[0]
    assert (kernel(big, x, w, b, mean, invstd)[0] - expected).abs().max() < 1e-12


def test_batchnorm_relu_backward_kernel_bad_input():
    kernel = _kernel_or_skip()
    grad, x, w, b, mean, invstd = _bn_case((2, 3, 4, 4), torch.float32, True)
    with pytest.raises(RuntimeError, match="x must be"):
        kernel(grad[0], x[0], w, b, mean, invstd)
    with pytest.raises(RuntimeError, match="grad must match x"):
        kernel(grad.double(), x, w, b, mean, invstd)
    with pytest.raises(RuntimeError, match="mean must be"):
        kernel(grad, x, w, b, mean[:2], invstd)
    with pytest.raises(RuntimeError, match="both be contiguous"):
        kernel(grad.transpose(2, 3), x, w, b, mean, invstd)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        kernel(grad.half(), x.half(), None, None, mean.half(), invstd.half())


def test_batchnorm_relu_backward_opcheck():
    kernel = _kernel_or_skip()
    for fmt in (torch.contiguous_format, torch.channels_last):
        grad, x, w, b, mean, invstd = _bn_case((2, 4, 5, 3), torch.float32, True)
        torch.library.opcheck(kernel, (grad.contiguous(memory_format=fmt), x.contiguous(memory_format=fmt),
                                       w, b, mean, invstd))


def _layout(x, layout):
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # a channel slice, as the gradient of a concatenation arrives
        return torch.cat([x, x], dim=1)[:, : x.shape[1]]
    return x


LAYOUTS = ["contiguous", "channels_last", "strided"]


@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (2, 3, 7, 9), (1, 2, 1, 1), (2, 2, 3, 80)])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_avg_pool_2x2(shape, layout):
    x = _layout(torch.randn(shape, dtype=torch.float64), layout).requires_grad_()
    if min(shape[2:]) < 2:  # no 2x2 window fits: refused, as ATen refuses it
        with pytest.raises(ValueError, match="at least 2x2"):
            rs.avg_pool_2x2(x)
        with pytest.raises(RuntimeError):
            F.avg_pool2d(x, 2)
        return
    expected = F.avg_pool2d(x, 2)
    assert torch.allclose(rs.avg_pool_2x2(x), expected, rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(rs.avg_pool_2x2, (x,))
    grad = _layout(torch.randn(expected.shape, dtype=torch.float64), layout)
    assert torch.allclose(torch.autograd.grad(rs.avg_pool_2x2(x), x, grad)[0],
                          torch.autograd.grad(F.avg_pool2d(x, 2), x, grad)[0], rtol=0, atol=1e-15)


@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (2, 3, 7, 9), (1, 2, 1, 1), (1, 2, 5, 70)])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_upsample_nearest_2x(shape, layout):
    x = _layout(torch.randn(shape, dtype=torch.float64), layout).requires_grad_()
    expected = F.interpolate(x, scale_factor=(2, 2))
    assert torch.equal(rs.upsample_nearest_2x(x), expected)
    assert torch.autograd.gradcheck(rs.upsample_nearest_2x, (x,))
    grad = _layout(torch.randn(expected.shape, dtype=torch.float64), layout)
    assert torch.allclose(torch.autograd.grad(rs.upsample_nearest_2x(x), x, grad)[0],
                          torch.autograd.grad(expected, x, grad)[0], rtol=0, atol=1e-15)


def test_resample_2x_bad_input():
    for fn in (rs.avg_pool_2x2, rs.upsample_nearest_2x):
        with pytest.raises(ValueError, match="x must be"):
            fn(torch.zeros(2, 3, 4))


def test_gemm_conv3x3_equals_conv2d():
    from fastmotion.models.gemm_conv import applies, gemm_conv3x3

    x = torch.randn(3, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(gemm_conv3x3(x, w, b), F.conv2d(x, w, b, padding=1), atol=1e-12)
    assert torch.autograd.gradcheck(gemm_conv3x3, (x, w, b))
    assert torch.autograd.gradcheck(gemm_conv3x3, (x, w, None))
    conv = nn.Conv2d(512, 8, 3, padding=1)
    assert applies(conv, torch.zeros(2, 512, 4, 4)) and not applies(conv, torch.zeros(2, 512, 8, 8))


def _resample_kernel_or_skip():
    from fastmotion import _ext
    if not _ext.has_kernel("upsample2x_nearest", "CPU"):
        pytest.skip("fastmotion._C (CPU kernels) not built")
    return torch.ops.fastmotion.upsample2x_nearest


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 1, 1), (2, 70, 3, 4)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_upsample2x_nearest_kernel(shape, layout, dtype):
    kernel = _resample_kernel_or_skip()
    x = _layout(torch.randn(shape, dtype=torch.float64), layout).to(dtype)
    h, w = shape[2:]
    got = kernel(x, 2 * h, 2 * w, 1.0)
    assert torch.equal(got, F.interpolate(x.double(), scale_factor=(2, 2)).to(dtype))
    if not x.is_contiguous() or layout == "contiguous":  # (a 1x1 map is both layouts at once)
        fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        assert got.is_contiguous(memory_format=fmt)
    # the 2x2 average pooling's backward, odd sizes included: against autograd of F.avg_pool2d in float64
    for extra_h, extra_w in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        pooled_input = torch.zeros((shape[0], shape[1], 2 * h + extra_h, 2 * w + extra_w), dtype=torch.float64,
                                   requires_grad=True)
        expected = torch.autograd.grad(F.avg_pool2d(pooled_input, 2), pooled_input, x.double())[0]
        got = kernel(x, 2 * h + extra_h, 2 * w + extra_w, 0.25)
        assert torch.equal(got.double(), expected.to(dtype).double())


def test_upsample2x_nearest_kernel_bad_input_and_opcheck():
    kernel = _resample_kernel_or_skip()
    x = torch.randn(2, 3, 4, 5)
    with pytest.raises(RuntimeError, match="input must be \\(N, C, H, W\\)"):
        kernel(x[0], 8, 10, 1.0)
    with pytest.raises(RuntimeError, match="out_h must be 8 or 9"):
        kernel(x, 7, 10, 1.0)
    with pytest.raises(RuntimeError, match="out_w must be 10 or 11"):
        kernel(x, 8, 12, 1.0)
    with pytest.raises(RuntimeError, match="contiguous"):
        kernel(x.transpose(2, 3), 10, 8, 1.0)
    with pytest.raises(RuntimeError, match="floating"):
        kernel(x.int(), 8, 10, 1.0)
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        torch.library.opcheck(kernel, (t, 9, 10, 0.25))


@pytest.mark.parametrize("shape", [(4, 5, 6, 7), (2, 3, 1, 1), (1, 70, 3, 2), (3, 2, 17, 9)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batchnorm_relu_forward_kernel(shape, layout, affine, dtype):
    _kernel_or_skip()
    kernel = torch.ops.fastmotion.batchnorm_relu_forward
    _, x, w, b, _, _ = _bn_case(shape, dtype, affine, seed=1)
    x = _layout(x, layout)
    out, mean, invstd, var = kernel(x, w, b, 1e-5)
    x64 = x.double()
    mean64 = x64.mean((0, 2, 3))
    var64 = x64.var((0, 2, 3), unbiased=False)
    expected = torch.relu(F.batch_norm(x64, None, None, None if w is None else w.double(),
                                       None if b is None else b.double(), training=True, eps=1e-5))
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    assert (out.double() - expected).abs().max() <= tol * (1 + expected.abs().max())
    assert (mean.double() - mean64).abs().max() <= tol * (1 + mean64.abs().max())
    assert (var.double() - var64).abs().max() <= tol * (1 + var64.abs().max())
    assert torch.allclose(invstd.double(), (var64 + 1e-5).rsqrt(), rtol=tol * 10, atol=0)
    if not x.is_contiguous():
        assert out.is_contiguous(memory_format=torch.channels_last)


def test_batchnorm_relu_forward_kernel_statistics_far_from_zero():
    """float32 activations with |mean| >> std: the variance must not cancel away."""
    _kernel_or_skip()
    gen = torch.Generator().manual_seed(2)
    x = 1000.0 + 0.01 * torch.randn(8, 3, 16, 16, generator=gen)
    _, mean, _, var = torch.ops.fastmotion.batchnorm_relu_forward(x, None, None, 1e-5)
    var64 = x.double().var((0, 2, 3), unbiased=False)
    assert torch.allclose(var.double(), var64, rtol=1e-3)
    assert torch.allclose(mean.double(), x.double().mean((0, 2, 3)), rtol=1e-7)


def test_batchnorm_relu_forward_kernel_bad_input_and_opcheck():
    _kernel_or_skip()
    kernel = torch.ops.fastmotion.batchnorm_relu_forward
    x = torch.randn(2, 3, 4, 5)
    with pytest.raises(RuntimeError, match="x must be \\(N, C, H, W\\)"):
        kernel(x[0], None, None, 1e-5)
    with pytest.raises(RuntimeError, match="weight must be"):
        kernel(x, torch.ones(4), None, 1e-5)
    with pytest.raises(RuntimeError, match="no values per channel"):
        kernel(x[:0], None, None, 1e-5)
    with pytest.raises(RuntimeError, match="contiguous"):
        kernel(x.transpose(2, 3), None, None, 1e-5)
    for t in (x, x.contiguous(memory_format=torch.channels_last)):
        torch.library.opcheck(kernel, (t, torch.rand(3) + 0.5, torch.randn(3), 1e-5))


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_batchnorm_relu_train_gradcheck(layout):
    """Forward and backward kernels (CPU float64) together, against finite differences."""
    bn = randomized_bn(3).train()
    x = _layout(torch.randn(2, 3, 4, 5, dtype=torch.float64), layout).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b: bnr._BatchNormReLU.apply(x, w, b, bn.running_mean.clone(),
                                                                             bn.running_var.clone(), 0.1, 1e-5),
                                    (x, bn.weight, bn.bias))
