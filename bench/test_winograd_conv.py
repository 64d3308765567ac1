"""Inference convolutions of the fast path on CPU, float32 and bfloat16 (CPU autocast, where the CPU
has AVX512_BF16), at the per-frame Monkey-Net
shapes (vox 256x256, batch 1): the Winograd kernel (fastmotion.models.winograd_conv) against
oneDNN's direct kernel with pre-packed weights (what the fast path ran before; torch.compile's CPU
backend calls the same one), each as ``conv_fusion.fused_conv`` runs it (BatchNorm folded, ReLU
fused; the up-sampling layers as their sub-pixel phase kernels on oneDNN).

The policy thresholds in fastmotion/models/policy.py (WINOGRAD_*) come from these rows: the
provider ``winograd`` is forced on whatever the policy says, ``onednn`` forced off.

Bytes that must move: read the input once, write the output once, read the weights once.
"""
import pytest
import torch
from torch import nn

from bench import harness
from fastmotion.models import conv_fusion as cf
from fastmotion.models import policy
from fastmotion.models import winograd_conv as wc

# (input channels, input side, output channels, up-sampling layer): the generator's refinement
# blocks and decoder, the dense-motion / keypoint hourglasses' 3x3 encoder convolutions.
SHAPES = [(45, 256, 45, False), (64, 32, 128, False), (256, 8, 512, False), (512, 4, 1024, False),
          (3, 64, 64, False),
          (138, 128, 32, True), (266, 64, 64, True), (1034, 16, 256, True), (2058, 8, 512, True),
          (2058, 4, 1024, True), (1034, 2, 1024, True)]


def _id(shape):
    cin, side, cout, up = shape
    return f"{cin}x{side}x{side}-{cout}{'-upsampling' if up else ''}"


@pytest.mark.parametrize("provider", ["winograd", "onednn"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES, ids=_id)
def test_inference_conv(benchmark, monkeypatch, shape, dtype, provider):
    if provider == "winograd" and not wc.built():
        pytest.skip("fastmotion._C (winograd_conv2d) not built")
    if dtype == "bfloat16" and not (wc.available(torch.bfloat16) and cf._onednn_bf16()):
        pytest.skip("this CPU has no AVX512_BF16 (bfloat16 Winograd) or oneDNN bfloat16 convolutions")
    cin, side, cout, up = shape
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    norm = nn.BatchNorm2d(cout).eval()
    owner = nn.Module()
    x = torch.randn(1, cin, side, side).to(getattr(torch, dtype)).contiguous(memory_format=torch.channels_last)
    if provider == "winograd":
        monkeypatch.setattr(policy, "WINOGRAD_MIN_IN_CHANNELS", 1)
        monkeypatch.setattr(policy, "WINOGRAD_CONV3X3_MIN_POSITIONS", 1)
    else:
        monkeypatch.setattr(policy, "WINOGRAD_MIN_IN_CHANNELS", 1 << 30)

    def fn():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            return cf.fused_conv(owner, "conv", conv, x, norm=norm, relu=True, subpixel=up)

    out_side = 2 * side if up else side
    bytes_moved = x.element_size() * (x.numel() + cout * out_side * out_side + conv.weight.numel())
    benchmark.group = f"inference conv {_id(shape)} cpu {dtype}"
    harness.run(benchmark, fn, "cpu", bytes_moved, provider=provider, shape=list(shape),
                threads=torch.get_num_threads())
