"""The training BatchNorm + ReLU backward of the models' fast path (CPU): the compiled kernel
``fastmotion::batchnorm_relu_backward`` against the composite it replaces (recomputed BN output,
ReLU backward, ATen's BatchNorm backward), at the activation shapes of the taichi training step.

Bytes that must move (float32): read the gradient and the input twice (the reduction pass and the
output pass), write the input gradient: 5 * N*C*H*W * 4.
"""
import pytest
import torch

from bench import harness
from fastmotion import _ext
from fastmotion.models.batchnorm_relu import batchnorm_relu_backward_composite

SHAPES = [(8, 64, 64, 64), (16, 64, 64, 64), (8, 45, 64, 64), (16, 128, 32, 32)]


@pytest.mark.parametrize("provider", ["composite", "cpu"])
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_batchnorm_relu_backward(benchmark, shape, layout, provider):
    if provider == "cpu" and not _ext.has_kernel("batchnorm_relu_backward", "CPU"):
        pytest.skip("fastmotion._C (CPU kernels) not built")
    gen = torch.Generator().manual_seed(0)
    c = shape[1]
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(shape, generator=gen).contiguous(memory_format=fmt)
    grad = torch.randn(shape, generator=gen).contiguous(memory_format=fmt)
    w, b = torch.rand(c, generator=gen) + 0.5, torch.randn(c, generator=gen) * 0.1
    _, mean, invstd = torch.ops.aten.native_batch_norm(x, w, b, None, None, True, 0.1, 1e-5)
    if provider == "cpu":
        def call():
            return torch.ops.fastmotion.batchnorm_relu_backward(grad, x, w, b, mean, invstd)
    else:
        def call():
            return batchnorm_relu_backward_composite(grad, x, w, b, mean, invstd, 1e-5, [True, True, True])
    benchmark.group = f"batchnorm_relu backward {'x'.join(map(str, shape))} {layout} cpu"
    harness.run(benchmark, call, "cpu", 5 * x.numel() * x.element_size(), provider=provider, shape=list(shape),
                layout=layout, threads=torch.get_num_threads())
