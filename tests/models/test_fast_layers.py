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
    got = cf.subpixel_conv(x, *cf.subpixel_weights(w, b))
    assert torch.allclose(got, expected, atol=1e-12)
    got_cl = cf.subpixel_conv(x.contiguous(memory_format=torch.channels_last), *cf.subpixel_weights(w, b))
    assert torch.allclose(got_cl, expected, atol=1e-12)


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
