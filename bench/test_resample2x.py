"""2x nearest up-sampling on CPU as the models' fast path runs it (fastmotion.models.resample2x):
ATen's ``F.interpolate`` against ``repeat_interleave`` and the compiled kernel
``fastmotion::upsample2x_nearest``, at hourglass / discriminator shapes, NCHW and channels_last.

Bytes that must move: read the input once, write the 4x larger output once: 5 * N*C*h*w * 4.
"""
import pytest
import torch
import torch.nn.functional as F

from bench import harness
from fastmotion import _ext

SHAPES = [(16, 64, 32, 32), (16, 64, 30, 30), (8, 45, 32, 32), (16, 1024, 4, 4), (1, 256, 64, 64)]


@pytest.mark.parametrize("provider", ["aten", "repeat", "cpu"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_upsample2x_nearest(benchmark, shape, layout, provider):
    if provider == "cpu" and not _ext.has_kernel("upsample2x_nearest", "CPU"):
        pytest.skip("fastmotion._C (CPU kernels) not built")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    h, w = shape[2:]
    fns = {"aten": lambda: F.interpolate(x, scale_factor=(2, 2)),
           "repeat": lambda: x.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2),
           "cpu": lambda: torch.ops.fastmotion.upsample2x_nearest(x, 2 * h, 2 * w, 1.0)}
    benchmark.group = f"upsample2x_nearest {'x'.join(map(str, shape))} {layout} cpu"
    harness.run(benchmark, fns[provider], "cpu", 5 * x.numel() * x.element_size(), provider=provider,
                shape=list(shape), layout=layout, threads=torch.get_num_threads())
