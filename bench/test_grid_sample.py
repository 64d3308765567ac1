"""grid_sample forward and forward+backward: reference (F.grid_sample eager, "torch native"),
compile (torch.compile of F.grid_sample), and the fused backends, on a smooth near-identity
flow grid (Monkey-Net's warps: bilinear, zeros padding, align_corners=True; output size = input size).

Bytes that must move (B = bytes per element, P = Ho * Wo):
  forward:          input N*C*H*W*B + grid N*P*2*B read, output N*C*P*B written;
  forward+backward: the forward's, plus grad_out N*C*P*B, input N*C*H*W*B and grid N*P*2*B read,
                    grad_input N*C*H*W*B and grad_grid N*P*2*B written.
The extra provider ``cuda-tile`` runs the CUDA backend with FASTMOTION_GRID_SAMPLE_SCATTER=tile
(shared-memory tile accumulation of the input gradient instead of the default warp-combined
atomics), to measure the two (the forward is the same kernel); ``triton-gather`` runs the Triton
backend with FASTMOTION_GRID_SAMPLE_SCATTER=gather (the deterministic gather input gradient that
torch.use_deterministic_algorithms(True) selects).
"""
import importlib

import pytest
import torch
import torch.nn.functional as F

from bench import harness
from fastmotion.ops import grid_sample

IMPLS = importlib.import_module("fastmotion.ops.grid_sample").IMPLS
SHAPES = [(32, 64, 64, 64), (1, 32, 256, 256)]
KEY_SHAPES = [(32, 64, 64, 64)]  # the headline shape (torch.compile runs here only with =key)
PROVIDERS = harness.PROVIDERS + ("cuda-tile", "triton-gather")
VARIANTS = {"cuda-tile": ("cuda", "tile"), "triton-gather": ("triton", "gather")}  # (backend, scatter)


def smooth_flow_grid(n, h, w, device, dtype=torch.float32):
    """Identity plus a smooth displacement of a few pixels, different per image."""
    ys = torch.linspace(-1, 1, h, device=device, dtype=dtype)
    xs = torch.linspace(-1, 1, w, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy], -1).expand(n, h, w, 2)
    phase = torch.arange(n, device=device, dtype=dtype).view(n, 1, 1, 1)
    return (base + 0.05 * torch.sin(3.0 * base.flip(-1) + phase)).contiguous()


def _sampler(provider):
    def reference(x, g):
        return F.grid_sample(x, g, mode="bilinear", padding_mode="zeros", align_corners=True)

    if provider == "reference":
        return reference
    if provider == "compile":
        return harness.compiled(reference)
    backend = VARIANTS.get(provider, (provider,))[0]

    def fused(x, g):
        return grid_sample(x, g, "bilinear", "zeros", True, backend=backend)

    return fused


def _make(provider, device, shape, mode):
    n, c, h, w = shape
    x = torch.randn(shape, device=device)
    g = smooth_flow_grid(n, h, w, device)
    fn = _sampler(provider)
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return fn(x, g)
        return call
    x.requires_grad_()
    g.requires_grad_()
    gout = torch.randn(n, c, h, w, device=device)

    def call():
        out = fn(x, g)
        return torch.autograd.grad(out, (x, g), gout)
    return call


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("device", harness.devices())
def test_grid_sample(benchmark, device, provider, shape, mode, monkeypatch):
    base, scatter = VARIANTS.get(provider, (provider, None))
    harness.skip_unless_runnable(base, device, IMPLS, key=shape in KEY_SHAPES)
    if scatter is not None:
        if mode == "fwd":
            pytest.skip(f"{provider} differs from {base} only in the backward")
        monkeypatch.setenv("FASTMOTION_GRID_SAMPLE_SCATTER", scatter)
    benchmark.group = f"grid_sample {mode} {'x'.join(map(str, shape))} {device}"
    n, c, h, w = shape
    itemsize = 4
    img = n * c * h * w * itemsize
    grid_bytes = n * h * w * 2 * itemsize
    bytes_fwd = img + grid_bytes + img
    bytes_moved = bytes_fwd if mode == "fwd" else bytes_fwd + (img + img + grid_bytes) + (img + grid_bytes)
    harness.run(benchmark, _make(provider, device, shape, mode), device, bytes_moved,
                op="grid_sample", provider=provider, shape=list(shape), mode=mode)
