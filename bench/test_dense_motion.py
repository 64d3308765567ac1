"""compose_flow and shifted_warps, forward and forward+backward: reference, torch.compile(reference),
fused backends, at Monkey-Net shapes (K = 10 keypoints + background: K+1 = 11).

Bytes that must move (float32):
  compose_flow fwd: read N*K1*HW logits + 2*N*HW correction, write 2*N*HW grid;
    fwd+bwd adds: read the grid gradient (2*N*HW) and the logits again, write N*K1*HW logit grads.
  shifted_warps fwd: read N*C*HW source, write N*K1*C*HW;
    fwd+bwd adds: read the N*K1*C*HW output gradient and the source again, write N*C*HW source grads.
The backward gets a pre-made output gradient (torch.autograd.grad(..., grad_outputs=...)) so
that peak memory counts the op, not a loss.
"""
import importlib

import pytest
import torch

from bench import harness
from fastmotion import reference
from fastmotion.ops import compose_flow, shifted_warps

DM = importlib.import_module("fastmotion.ops.dense_motion")
K1 = 11
COMPOSE_SHAPES = [(1, K1, 64, 64), (32, K1, 64, 64), (1, K1, 256, 256)]
COMPOSE_KEY = [(32, K1, 64, 64)]
SHIFT_SHAPES = [(1, 3, 64, 64), (32, 3, 64, 64), (1, 3, 256, 256)]  # source (N, C, H, W); K+1 = 11
SHIFT_KEY = [(32, 3, 64, 64)]


def _fn(provider, ref_fn, op_fn):
    if provider == "reference":
        return ref_fn
    if provider == "compile":
        return harness.compiled(ref_fn)
    return lambda *a: op_fn(*a, backend=provider)


def _call(fn, inputs, mode, grad_out):
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return fn(*inputs)
        return call

    def call():
        out = fn(*inputs)
        return torch.autograd.grad(out, inputs, grad_out)
    return call


def _ids(s):
    return "x".join(map(str, s))


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", COMPOSE_SHAPES, ids=_ids)
@pytest.mark.parametrize("provider", harness.PROVIDERS)
@pytest.mark.parametrize("device", harness.devices())
def test_compose_flow(benchmark, device, provider, shape, mode):
    harness.skip_unless_runnable(provider, device, DM.COMPOSE_IMPLS, key=shape in COMPOSE_KEY)
    benchmark.group = f"compose_flow {mode} {_ids(shape)} {device}"
    n, k1, h, w = shape
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g).to(device)
    shift = (torch.randn(n, k1, 2, generator=g) * 0.2).to(device)
    corr = (torch.randn(n, 2, h, w, generator=g) * 0.05).to(device)
    inputs = [t.requires_grad_(mode != "fwd") for t in (logits, shift, corr)]
    grad_out = torch.randn(n, h, w, 2, generator=g).to(device)
    fn = _fn(provider, reference.warp.compose_flow, compose_flow)
    hw, elem = h * w, 4
    bytes_fwd = (n * k1 * hw + 2 * n * hw + 2 * n * hw) * elem
    bytes_moved = bytes_fwd if mode == "fwd" else bytes_fwd + (2 * n * hw + 2 * n * k1 * hw) * elem
    harness.run(benchmark, _call(fn, inputs, mode, grad_out), device, bytes_moved,
                op="compose_flow", provider=provider, shape=list(shape), mode=mode)


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", SHIFT_SHAPES, ids=_ids)
@pytest.mark.parametrize("provider", harness.PROVIDERS)
@pytest.mark.parametrize("device", harness.devices())
def test_shifted_warps(benchmark, device, provider, shape, mode):
    harness.skip_unless_runnable(provider, device, DM.SHIFT_IMPLS, key=shape in SHIFT_KEY)
    benchmark.group = f"shifted_warps {mode} {_ids(shape)} K+1={K1} {device}"
    n, c, h, w = shape
    g = torch.Generator().manual_seed(0)
    source = torch.rand(shape, generator=g).to(device)
    shift = (torch.randn(n, K1, 2, generator=g) * 0.2).to(device)
    shift[:, 0] = 0.0  # Monkey-Net's background block
    inputs = [t.requires_grad_(mode != "fwd") for t in (source, shift)]
    grad_out = torch.randn(n, K1, c, h, w, generator=g).to(device)
    fn = _fn(provider, reference.warp.shifted_warps, shifted_warps)
    elem, src, out = 4, n * c * h * w, n * K1 * c * h * w
    bytes_fwd = (src + out) * elem
    bytes_moved = bytes_fwd if mode == "fwd" else bytes_fwd + (out + 2 * src) * elem
    harness.run(benchmark, _call(fn, inputs, mode, grad_out), device, bytes_moved,
                op="shifted_warps", provider=provider, shape=list(shape), mode=mode)
