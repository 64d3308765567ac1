"""The rewrites' policy: oneDNN convolutions are chosen by a check made before they are asked
(not dropped after an error), and the CPU-tuned thresholds the rewrites read live in
fastmotion.models.policy."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastmotion.models import conv_fusion as cf
from fastmotion.models import gemm_conv, policy
from fastmotion.models.conv3d_layout import FrameConv2d
from tests.tolerance import assert_matches_reference


class _NotAsked:
    """Stands in for a oneDNN op that must not be called."""

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise AssertionError("oneDNN was asked")
        return fail


def test_onednn_is_chosen_up_front(monkeypatch):
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    if not cf._onednn_ok(x):
        pytest.skip("this torch build has no oneDNN convolutions")
    assert not cf._onednn_ok(x.contiguous())  # NCHW
    assert not cf._onednn_ok(x[:0])
    assert not cf._onednn_ok(x.double())
    monkeypatch.setattr(cf, "_onednn_bf16", lambda: False)
    assert not cf._onednn_ok(x.bfloat16())


@pytest.mark.parametrize("residual", [False, True])
def test_bfloat16_without_onednn_bfloat16_runs_plain_convolutions(monkeypatch, residual):
    """A CPU without bfloat16 oneDNN convolutions (AVX2): plain convolutions, oneDNN never asked."""
    monkeypatch.setattr(cf, "_onednn_bf16", lambda: False)
    monkeypatch.setattr(cf, "_POINTWISE", _NotAsked())
    monkeypatch.setattr(cf, "_REORDER", _NotAsked())
    torch.manual_seed(0)
    conv = FrameConv2d(4, 5, (3, 3), padding=(1, 1))
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    res = torch.randn(2, 5, 6, 6) if residual else None

    def layers(x, res, dtype):
        y = F.conv2d(x.to(dtype), conv.weight.to(dtype), conv.bias.to(dtype), padding=1)
        return y + res.to(dtype) if residual else F.relu(y)

    with torch.no_grad():
        got = cf.fused_conv(nn.Module(), "c", conv, x.bfloat16(), relu=not residual,
                            residual=None if res is None else res.bfloat16())
        assert got.dtype == torch.bfloat16
        assert_matches_reference(got, layers(x, res, torch.float64), layers(x.bfloat16(), res, torch.bfloat16),
                                 torch.bfloat16)


def test_thresholds_are_read_from_the_policy(monkeypatch):
    bottleneck = nn.Conv2d(256, 8, 3, padding=1)
    x = torch.randn(1, 256, 4, 4)
    assert gemm_conv.applies(bottleneck, x)
    monkeypatch.setattr(policy, "GEMM_CONV_MAX_POSITIONS", 15)
    assert not gemm_conv.applies(bottleneck, x)
    up = nn.Conv2d(8, 8, 3, padding=1)
    low_res = torch.randn(2, 8, 8, 8)
    assert cf.use_subpixel(up, low_res, training=True)
    monkeypatch.setattr(policy, "SUBPIXEL_MIN_SIDE", 9)
    assert not cf.use_subpixel(up, low_res, training=True)
    assert cf.use_subpixel(up, low_res, training=False)  # inference: derived weights are cached
