"""render_gaussians (matrix covariance) and keypoint_heatmap_embedding (difference, norm_const=100,
background channel), forward and forward+backward: reference, torch.compile(reference), fused backends.

Bytes that must move (fp32): the forward writes the heatmaps (N*K*H*W, or N*(K+1)*H*W for the
embedding) and reads the keypoints (6 numbers per keypoint and input); forward+backward also reads
grad_out once and writes the keypoint gradients. grad_out is a fixed dense tensor, as the next
convolution's backward would hand over.
"""
import importlib

import pytest
import torch

from bench import harness
from fastmotion.ops import keypoint_heatmap_embedding, render_gaussians
from fastmotion.reference import gaussian as ref

IMPLS = importlib.import_module("fastmotion.ops.gaussian").IMPLS
SHAPES = [(1, 10, 64, 64), (32, 10, 64, 64), (8, 10, 128, 128), (1, 10, 256, 256)]
KEY_SHAPES = [(32, 10, 64, 64)]  # the target shape


def _keypoints(n, k, device, seed):
    g = torch.Generator().manual_seed(seed)
    mean = torch.rand(n, k, 2, generator=g) * 1.6 - 0.8
    a = torch.randn(n, k, 2, 2, generator=g) * 0.1
    var = a @ a.transpose(-1, -2) + 0.002 * torch.eye(2)
    return mean.to(device), var.to(device)


def _fn(op, provider, size):
    if op == "render":
        body = lambda m, v, ms, vs: ref.render_gaussians(m, v, size)  # noqa: E731
        fused = lambda m, v, ms, vs: render_gaussians(m, v, size, backend=provider)  # noqa: E731
    else:
        body = lambda m, v, ms, vs: ref.keypoint_heatmap_embedding(  # noqa: E731
            {"mean": m, "var": v}, {"mean": ms, "var": vs}, size, 100, "difference", True, "matrix")
        fused = lambda m, v, ms, vs: keypoint_heatmap_embedding(  # noqa: E731
            {"mean": m, "var": v}, {"mean": ms, "var": vs}, size, 100, "difference", True, "matrix",
            backend=provider)
    if provider == "reference":
        return body
    if provider == "compile":
        return harness.compiled(body)
    return fused


def _make(op, provider, device, shape, mode):
    n, k, h, w = shape
    md, vd = _keypoints(n, k, device, 0)
    ms, vs = _keypoints(n, k, device, 1)
    fn = _fn(op, provider, (h, w))
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return fn(md, vd, ms, vs)
        return call
    inputs = [t.requires_grad_() for t in (md, vd, ms, vs)]
    c = k + (1 if op == "embed" else 0)
    grad_out = torch.randn(n, c, h, w, device=device)
    wrt = inputs[:2] if op == "render" else inputs

    def call():
        out = fn(*inputs)
        return torch.autograd.grad(out, wrt, grad_out)
    return call


def _bytes(op, shape, mode):
    n, k, h, w = shape
    c = k + (1 if op == "embed" else 0)
    maps = 2 if op == "embed" else 1
    heat = n * c * h * w * 4
    kp = maps * n * k * 6 * 4
    return heat + kp if mode == "fwd" else 2 * heat + 2 * kp


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("provider", harness.PROVIDERS)
@pytest.mark.parametrize("op", ["render", "embed"])
@pytest.mark.parametrize("device", harness.devices())
def test_gaussian(benchmark, device, op, provider, shape, mode):
    harness.skip_unless_runnable(provider, device, IMPLS, key=shape in KEY_SHAPES)
    benchmark.group = f"gaussian_{op} {mode} {'x'.join(map(str, shape))} {device}"
    harness.run(benchmark, _make(op, provider, device, shape, mode), device, _bytes(op, shape, mode),
                op=f"gaussian_{op}", provider=provider, shape=list(shape), mode=mode)
