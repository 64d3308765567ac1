"""heatmap_moments forward and forward+backward: reference, torch.compile(reference), fused backends.

Bytes that must move: forward reads N*K*H*W logits and writes N*K*(2+4) statistics;
forward+backward additionally reads the logits again and writes their gradient.
"""
import importlib

import pytest
import torch

from bench import harness
from fastmotion import reference
from fastmotion.ops import heatmap_moments

IMPLS = importlib.import_module("fastmotion.ops.heatmap_moments").IMPLS
SHAPES = [(1, 10, 64, 64), (32, 10, 64, 64), (8, 10, 128, 128)]
KEY_SHAPES = [(32, 10, 64, 64)]  # the target shape


def _make(provider, device, shape, mode):
    logits = torch.randn(shape, device=device) * 0.5
    if provider == "reference":
        fn = lambda x: reference.heatmap_moments(x, 0.1, "matrix", 0.001)  # noqa: E731
    elif provider == "compile":
        fn = harness.compiled(lambda x: reference.heatmap_moments(x, 0.1, "matrix", 0.001))
    else:
        fn = lambda x: heatmap_moments(x, 0.1, "matrix", 0.001, backend=provider)  # noqa: E731
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return fn(logits)
        return call
    x = logits.requires_grad_()

    def call():
        mean, var = fn(x)
        (g,) = torch.autograd.grad(mean.sum() + var.sum(), x)
        return g
    return call


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("provider", harness.PROVIDERS)
@pytest.mark.parametrize("device", harness.devices())
def test_heatmap_moments(benchmark, device, provider, shape, mode):
    harness.skip_unless_runnable(provider, device, IMPLS, key=shape in KEY_SHAPES)
    benchmark.group = f"heatmap_moments {mode} {'x'.join(map(str, shape))} {device}"
    n_elem = 1
    for s in shape:
        n_elem *= s
    rows = n_elem // (shape[-1] * shape[-2])
    itemsize = 4
    bytes_fwd = n_elem * itemsize + rows * 6 * itemsize
    bytes_moved = bytes_fwd if mode == "fwd" else bytes_fwd + 2 * n_elem * itemsize
    harness.run(benchmark, _make(provider, device, shape, mode), device, bytes_moved,
                op="heatmap_moments", provider=provider, shape=list(shape), mode=mode)
