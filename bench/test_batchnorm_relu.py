"""The training BatchNorm + ReLU of the models' fast path (CPU), at the activation shapes of the
taichi training step: the compiled kernels ``fastmotion::batchnorm_relu_forward`` / ``_backward``
against what they replace (forward: ATen's batch norm then an in-place ReLU; backward: the
composite of recomputed BN output, ReLU backward and ATen's BatchNorm backward).

Bytes that must move (float32): forward, read the input twice (statistics, output) and write the
output: 3 * N*C*H*W * 4; backward, read the gradient and the input twice (sums, output) and
write the input gradient: 5 * N*C*H*W * 4.
"""
import pytest
import torch

from bench import harness
from fastmotion import _ext
from fastmotion.models.batchnorm_relu import batchnorm_relu_backward_composite

SHAPES = [(8, 64, 64, 64), (16, 64, 64, 64), (8, 45, 64, 64), (16, 128, 32, 32)]


def _inputs(shape, layout):
    """Activation and gradient in the layout, BatchNorm weight and bias."""
    gen = torch.Generator().manual_seed(0)
    c = shape[1]
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(shape, generator=gen).contiguous(memory_format=fmt)
    grad = torch.randn(shape, generator=gen).contiguous(memory_format=fmt)
    return x, grad, torch.rand(c, generator=gen) + 0.5, torch.randn(c, generator=gen) * 0.1


def _cases(baseline):
    """The benchmark at every shape and layout, for ``baseline`` and the compiled kernel ("cpu")."""
    def parametrize(fn):
        fn = pytest.mark.parametrize("provider", [baseline, "cpu"])(fn)
        fn = pytest.mark.parametrize("layout", ["nchw", "channels_last"])(fn)
        return pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))(fn)
    return parametrize


def _run(benchmark, direction, call, x, shape, layout, provider, passes):
    """Time ``call``; ``passes``: N*C*H*W-sized tensors it must read or write."""
    benchmark.group = f"batchnorm_relu {direction} {'x'.join(map(str, shape))} {layout} cpu"
    harness.run(benchmark, call, "cpu", passes * x.numel() * x.element_size(), provider=provider, shape=list(shape),
                layout=layout, threads=torch.get_num_threads())


@_cases("composite")
def test_batchnorm_relu_backward(benchmark, shape, layout, provider):
    if provider == "cpu" and not _ext.has_kernel("batchnorm_relu_backward", "CPU"):
        pytest.skip("fastmotion._C (CPU kernels) not built")
    x, grad, w, b = _inputs(shape, layout)
    _, mean, invstd = torch.ops.aten.native_batch_norm(x, w, b, None, None, True, 0.1, 1e-5)
    if provider == "cpu":
        def call():
            return torch.ops.fastmotion.batchnorm_relu_backward(grad, x, w, b, mean, invstd)
    else:
        def call():
            return batchnorm_relu_backward_composite(grad, x, w, b, mean, invstd, 1e-5, [True, True, True])
    _run(benchmark, "backward", call, x, shape, layout, provider, passes=5)


@_cases("aten")
def test_batchnorm_relu_forward(benchmark, shape, layout, provider):
    if provider == "cpu" and not _ext.has_kernel("batchnorm_relu_forward", "CPU"):
        pytest.skip("fastmotion._C (CPU kernels) not built")
    x, _, w, b = _inputs(shape, layout)
    running_mean, running_var = torch.zeros(shape[1]), torch.ones(shape[1])
    if provider == "cpu":
        def call():
            return torch.ops.fastmotion.batchnorm_relu_forward(x, w, b, 1e-5)
    else:
        def call():
            return torch.ops.aten.native_batch_norm(x, w, b, running_mean, running_var, True, 0.1, 1e-5)[0].relu_()
    _run(benchmark, "forward", call, x, shape, layout, provider, passes=3)
