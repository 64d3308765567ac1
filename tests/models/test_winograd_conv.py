"""Winograd convolutions (fastmotion.models.winograd_conv) against float64 convolutions: error at
most 2x that of torch's own float32 convolution (oneDNN's direct kernel) on the same input."""
import pytest
import torch
import torch.nn.functional as F

from fastmotion.models import winograd_conv as wc
from tests.tolerance import assert_matches_reference

pytestmark = pytest.mark.skipif(not wc.built(), reason="the compiled extension (winograd_conv2d) is not built")


def _channels_last(t):
    return t.contiguous(memory_format=torch.channels_last)


def _inputs(n, cin, cout, h, w, r, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(cout, cin, r, r, generator=gen, dtype=torch.float64) / (r * cin ** 0.5)
    bias = torch.randn(cout, generator=gen, dtype=torch.float64)
    return x, weight, bias


@pytest.mark.parametrize("shape", [
    (1, 45, 45, 64, 64, 1),   # the refinement blocks' shape, smaller map
    (2, 7, 5, 13, 11, 1),     # odd sizes: partial tiles on both edges
    (1, 3, 4, 1, 1, 1),       # a single pixel
    (1, 17, 33, 7, 9, 1),     # channels not a multiple of 16
    (1, 4, 3, 5, 6, 0),       # no padding
    (0, 4, 3, 5, 6, 1),       # empty batch
])
def test_matches_float64_convolution(shape):
    n, cin, cout, h, w, pad = shape
    x, weight, bias = _inputs(n, cin, cout, h, w, 3)
    ref64 = F.conv2d(x, weight, bias, padding=pad)
    ref32 = F.conv2d(_channels_last(x.float()), weight.float(), bias.float(), padding=pad)
    weight_t = wc.transform_weights(weight.float())
    out = wc.winograd_conv2d(x.float(), weight_t, bias.float(), padding=pad)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_matches_reference(out, ref64, ref32, torch.float32)
    if cin > 4:  # the same input as channel parts in three layouts: the same numbers
        a, b, c = x.float().split([cin // 3, cin // 3, cin - 2 * (cin // 3)], dim=1)
        parts = [_channels_last(a), b.contiguous(), c]  # c: a strided view
        torch.testing.assert_close(wc.winograd_conv2d(parts, weight_t, bias.float(), padding=pad), out, rtol=0, atol=0)


def test_pre_op_residual_and_relu():
    x, weight, bias = _inputs(2, 6, 6, 9, 10, 3)
    gen = torch.Generator().manual_seed(1)
    scale = torch.rand(6, generator=gen, dtype=torch.float64) + 0.5
    shift = torch.randn(6, generator=gen, dtype=torch.float64)
    residual = torch.randn(2, 6, 9, 10, generator=gen, dtype=torch.float64)
    pre = torch.relu(x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1))  # padding stays zero
    weight_t = wc.transform_weights(weight.float())
    out = wc.winograd_conv2d(x.float(), weight_t, bias.float(), input_scale=scale.float(), input_shift=shift.float(),
                             residual=residual.float())
    ref64 = F.conv2d(pre, weight, bias, padding=1) + residual
    ref32 = F.conv2d(pre.float(), weight.float(), bias.float(), padding=1) + residual.float()
    assert_matches_reference(out, ref64, ref32, torch.float32)
    parts = [residual[:, :2].float().contiguous(), _channels_last(residual[:, 2:].float())]
    torch.testing.assert_close(wc.winograd_conv2d(x.float(), weight_t, bias.float(), input_scale=scale.float(),
                                                  input_shift=shift.float(), residual=parts), out, rtol=0, atol=0)
    out = wc.winograd_conv2d(x.float(), weight_t, bias.float(), relu=True)
    ref64 = torch.relu(F.conv2d(x, weight, bias, padding=1))
    assert_matches_reference(out, ref64, torch.relu(F.conv2d(x.float(), weight.float(), bias.float(), padding=1)),
                             torch.float32)


@pytest.mark.parametrize("size", [(8, 8), (5, 7), (1, 1), (3, 2)])
def test_upsampled_equals_convolution_of_upsampled_input(size):
    """The up-sampled tiling, written straight to the output's pixels, equals
    conv3x3(upsample2x(pre(x))); the pre-op applies to the low-resolution input."""
    x, weight, bias = _inputs(2, 20, 18, *size, 3)
    gen = torch.Generator().manual_seed(3)
    scale = torch.rand(20, generator=gen, dtype=torch.float64) + 0.5
    shift = torch.randn(20, generator=gen, dtype=torch.float64)
    up = F.interpolate(torch.relu(x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)), scale_factor=2)
    ref64 = torch.relu(F.conv2d(up, weight, bias, padding=1))
    ref32 = torch.relu(F.conv2d(up.float(), weight.float(), bias.float(), padding=1))
    out = wc.winograd_conv2d(x.float(), wc.transform_weights(weight.float(), "upsampled"), bias.float(),
                             upsampled=True, input_scale=scale.float(), input_shift=shift.float(), relu=True)
    assert out.shape == (2, 18, 2 * size[0], 2 * size[1])
    assert_matches_reference(out, ref64, ref32, torch.float32)


def test_float64_weight_transform_is_exact():
    """In float64 the transformed weights reproduce the convolution to rounding (the transform
    matrices are right), independently of the float32 kernel."""
    x, weight, bias = _inputs(1, 3, 2, 6, 6, 3)
    g = torch.tensor(wc._TILINGS["conv3x3"][0], dtype=torch.float64)
    bt = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float64)
    at = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float64)
    u = torch.einsum("ar,ocrs,bs->ocab", g, weight, g)
    patch = F.pad(x, (1, 1, 1, 1))[0, :, 0:4, 0:4]  # the top-left tile
    v = bt @ patch @ bt.T
    tile = at @ torch.einsum("cab,ocab->oab", v, u) @ at.T + bias.view(-1, 1, 1)
    torch.testing.assert_close(tile, F.conv2d(x, weight, bias, padding=1)[0, :, 0:2, 0:2], rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad, match", [
    (dict(padding=2), "padding must be 1"),
    (dict(x=torch.randn(1, 8, 6, 6, dtype=torch.float64)), "float32 CPU"),
    (dict(residual=[torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 5)]), "residual must be float32 CPU"),
    (dict(residual=[torch.randn(1, 7, 6, 6)]), "residual must be \\(1, 8, 6, 6\\)"),
    (dict(weight_t=torch.randn(16, 7, 16)), "weight_t must be contiguous float32"),
    (dict(relu=True, residual=[torch.randn(1, 8, 6, 6)]), "residual and relu"),
    (dict(upsampled=True), "weight_t must be contiguous float32 \\(9"),
    (dict(bias=torch.zeros(40)), "bias must be contiguous float32"),
])
def test_bad_arguments(bad, match):
    args = dict(x=torch.randn(1, 8, 6, 6), weight_t=torch.zeros(16, 8, 16), bias=torch.zeros(8), padding=1,
                upsampled=False, input_scale=None, input_shift=None, residual=None, relu=False)
    args.update(bad)
    x = args.pop("x")
    with pytest.raises(RuntimeError, match=match):
        torch.ops.fastmotion.winograd_conv2d([x.contiguous(memory_format=torch.channels_last)], *args.values())


def test_bad_weights():
    with pytest.raises(ValueError, match="tiling must be one of"):
        wc.transform_weights(torch.zeros(4, 4, 3, 3), "F(4,3)")
    with pytest.raises(ValueError, match="weight must be"):
        wc.transform_weights(torch.zeros(4, 4, 2, 2))


def test_generator_inference_within_reference_error(monkeypatch):
    """Through the model: the generator's fast path in float32 (where its refinement blocks and
    up-sampling layers run as Winograd) stays within 2x the float32 reference's error against the
    float64 reference."""
    from fastmotion.models import policy
    from tests.models.helpers import build, copy_weights, images, small_config

    calls = []
    real = wc.winograd_conv2d
    monkeypatch.setattr(wc, "winograd_conv2d", lambda *a, **k: calls.append(k.get("upsampled", a[4] if len(a) > 4
                                                                                  else False)) or real(*a, **k))
    monkeypatch.setattr(policy, "WINOGRAD_CONV3X3_MIN_POSITIONS", 1)
    monkeypatch.setattr(wc, "_VECTOR_CPU", True)  # also where the policy would keep oneDNN (no AVX2)
    config = small_config("shapes")
    ref64 = build(config, backend="reference", dtype=torch.float64)
    ref32 = build(config, backend="reference")
    fast = build(config)
    copy_weights(ref64, ref32)
    copy_weights(ref64, fast)
    source, driving = images(2, 64, seed=1), images(2, 64, seed=2)
    outs = {}
    with torch.no_grad():
        for name, (kp_detector, generator, _) in (("ref64", ref64), ("ref32", ref32), ("fast", fast)):
            kp_detector.eval(), generator.eval()
            dtype = torch.float64 if name == "ref64" else torch.float32
            kp_source = kp_detector(source.to(dtype))
            kp_driving = kp_detector(driving.to(dtype))
            if name != "ref64":  # the same keypoints everywhere: the generator's error alone
                kp_source = {k: v.float() for k, v in outs["kp"][0].items()}
                kp_driving = {k: v.float() for k, v in outs["kp"][1].items()}
            else:
                outs["kp"] = (kp_source, kp_driving)
            outs[name] = generator(source.to(dtype), kp_driving, kp_source)["video_prediction"]
    assert True in calls and False in calls, "the fast path did not run both Winograd tilings"
    assert_matches_reference(outs["fast"], outs["ref64"], outs["ref32"], torch.float32)


@pytest.mark.parametrize("upsampled", [False, True])
def test_opcheck(upsampled):
    """The registered op's schema, fake kernel and dispatch agree (torch.library.opcheck)."""
    x, weight, bias = _inputs(1, 6, 5, 5, 4, 3)
    weight_t = wc.transform_weights(weight.float(), "upsampled" if upsampled else "conv3x3")
    parts = [_channels_last(x[:, :4].float()), x[:, 4:].float().contiguous()]
    residual = None if upsampled else [_channels_last(torch.randn(1, 5, 5, 4))]
    torch.library.opcheck(torch.ops.fastmotion.winograd_conv2d.default,
                          (parts, weight_t, bias.float(), 1, upsampled, None, None, residual, residual is None))
