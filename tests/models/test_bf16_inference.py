"""Fast-path inference convolutions under CPU autocast to bfloat16: oneDNN bfloat16 kernels where
the CPU has them (activations come out bfloat16, close to float32), float32 kernels elsewhere
(AVX2-only machines: ONEDNN_MAX_CPU_ISA=AVX2), never an error."""
import pytest
import torch

from fastmotion.models import conv_fusion as cf
from fastmotion.models.blocks import ResBlock, UpBlock
from tests.models.helpers import max_err, randomize


@pytest.mark.parametrize("block", ["res", "up"])
def test_blocks_under_cpu_bf16_autocast(block):
    torch.manual_seed(0)
    module = ResBlock(16, (1, 3, 3), (0, 1, 1)) if block == "res" else UpBlock(16, 8, (1, 3, 3), (0, 1, 1))
    randomize(module)
    module.eval()
    x = torch.rand(1, 16, 12, 12)
    with torch.no_grad():
        expected = module(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = module(x)
    native = cf._onednn_bf16()
    assert got.dtype == (torch.bfloat16 if native else torch.float32)
    assert cf.inference_dtype(x) == torch.float32  # outside autocast: unchanged
    # bfloat16 rounds inputs and weights to 8 bits: about 1% of the output's scale
    scale = expected.abs().max().item()
    assert max_err(got.float(), expected) < (0.03 if native else 1e-5) * scale


def test_cat_channels_rounds_float32_parts_to_bfloat16_under_autocast():
    a = torch.rand(1, 3, 4, 4, dtype=torch.bfloat16)
    b = torch.rand(1, 2, 4, 4)
    with torch.no_grad():
        plain = cf.cat_channels([a, b], fast=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = cf.cat_channels([a, b], fast=True)
    assert plain.dtype == torch.float32 and mixed.dtype == torch.bfloat16
    assert max_err(mixed.float(), torch.cat([a.float(), b], 1)) < 1e-2
