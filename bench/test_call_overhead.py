"""Host time per call of each public op at a tiny size (the kernel itself takes ~1 us), so what
is measured is dispatch: argument checks, backend selection and the autograd machinery.

On a GPU this time is paid for every call whatever the size, and the kernels of a real-time
frame take tens of microseconds, so it decides small calls. Providers:
  * reference: the eager PyTorch composition (several ATen ops);
  * torch: PyTorch's own op where there is one (F.grid_sample);
  * <backend>: the public fastmotion op (its eager path, fastmotion/ops/_eager.py);
  * <backend>-registered: the same kernels called as the registered torch.library op
    (``torch.ops.fastmotion.<op>_forward``: its Python autograd kernel on every call), which is
    what the public ops called before the eager path.
Modes: ``no-grad`` (inputs do not require grad) and ``fwd+bwd`` (forward, then
``torch.autograd.grad`` of the first output).
"""
import importlib
import os

import pytest
import torch
import torch.nn.functional as F

from bench import harness
from fastmotion import reference
from fastmotion.reference import gaussian as ref_gaussian
from fastmotion.reference import warp as ref_warp
from fastmotion.ops import compose_flow, grid_sample, heatmap_moments, render_gaussians, shifted_warps, warp_features

PROVIDERS = ("reference", "torch", "cpu", "cpu-registered", "cuda", "cuda-registered", "triton", "triton-registered")
IMPLS = {
    "heatmap_moments": importlib.import_module("fastmotion.ops.heatmap_moments").IMPLS,
    "render_gaussians": importlib.import_module("fastmotion.ops.gaussian").IMPLS,
    "grid_sample": importlib.import_module("fastmotion.ops.grid_sample").IMPLS,
    "compose_flow": importlib.import_module("fastmotion.ops.dense_motion").COMPOSE_IMPLS,
    "shifted_warps": importlib.import_module("fastmotion.ops.dense_motion").SHIFT_IMPLS,
    "warp_features": importlib.import_module("fastmotion.ops.warp_features").IMPLS,
}


def _registered(name, backend):
    return getattr(torch.ops.fastmotion, name + ("_triton" if backend == "triton" else ""))


def _case(op, device):
    """(inputs, {provider: callable(*inputs) -> first output})"""
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    if op == "heatmap_moments":
        x = rand(1, 2, 4, 4)
        return [x], {
            "reference": lambda x: reference.heatmap_moments(x, 0.1, "matrix", None)[0],
            "public": lambda x, b: heatmap_moments(x, 0.1, backend=b)[0],
            "registered": lambda x, b: _registered("heatmap_moments_forward", b)(x.view(-1, 4, 4), 0.1, 0, 0.0)[0],
        }
    if op == "render_gaussians":
        mean, var = rand(1, 2, 2, scale=0.3), torch.eye(2, device=device).expand(1, 2, 2, 2) * 0.01
        return [mean, var.contiguous()], {
            "reference": lambda m, v: ref_gaussian.render_gaussians(m, v, (4, 4)),
            "public": lambda m, v, b: render_gaussians(m, v, (4, 4), backend=b),
        }
    if op == "grid_sample":
        x, grid = rand(1, 2, 4, 4), rand(1, 4, 4, 2, scale=0.5)
        return [x, grid], {
            "reference": lambda x, grid: ref_warp.grid_sample(x, grid, "bilinear", "zeros", False),
            "torch": lambda x, grid: F.grid_sample(x, grid, align_corners=False),
            "public": lambda x, grid, b: grid_sample(x, grid, backend=b),
            "registered": lambda x, grid, b: _registered("grid_sample_forward", b)(x, grid, 0, 0, False),
        }
    if op == "compose_flow":
        logits, shift = rand(1, 3, 4, 4), rand(1, 3, 2, scale=0.1)
        return [logits, shift], {
            "reference": lambda lg, s: ref_warp.compose_flow(lg, s),
            "public": lambda lg, s, b: compose_flow(lg, s, backend=b),
            "registered": lambda lg, s, b: _registered("compose_flow_forward", b)(lg, s, None),
        }
    if op == "shifted_warps":
        source, shift = rand(1, 2, 4, 4), rand(1, 3, 2, scale=0.1)
        return [source, shift], {
            "reference": lambda src, s: ref_warp.shifted_warps(src, s),
            "public": lambda src, s, b: shifted_warps(src, s, backend=b),
            "registered": lambda src, s, b: _registered("shifted_warps_forward", b)(src, s),
        }
    if op == "warp_features":
        f0, f1, grid = rand(1, 2, 4, 4), rand(1, 2, 8, 8), rand(1, 4, 4, 2, scale=0.5)
        return [grid, f0, f1], {
            "reference": lambda grid, *fs: ref_warp.warp_features(list(fs), grid, "nearest")[0],
            "public": lambda grid, *fs, b=None: warp_features(list(fs), grid, backend=b)[0],
            "registered": lambda grid, *fs, b=None: _registered("warp_features_forward", b)(list(fs), grid,
                                                                                            "nearest")[0],
        }
    raise ValueError(op)


def _callable(op, provider, device):
    inputs, fns = _case(op, device)
    backend, _, kind = provider.partition("-")
    if backend in ("reference", "torch"):
        if backend not in fns:
            pytest.skip(f"{op} has no {backend} provider")
        return inputs, fns[backend]
    reason = harness.provider_skip_reason(backend, device, IMPLS[op])
    if reason:
        pytest.skip(reason)
    if kind and "registered" not in fns:
        pytest.skip(f"{op}: no registered-op provider in this benchmark")
    fn = fns["registered" if kind else "public"]
    if op == "warp_features":
        return inputs, lambda *a: fn(*a, b=backend)
    return inputs, lambda *a: fn(*a, backend)


@pytest.mark.parametrize("mode", ["no-grad", "fwd+bwd"])
@pytest.mark.parametrize("op", list(IMPLS))
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("device", harness.devices())
def test_call_overhead(benchmark, device, provider, op, mode):
    inputs, fn = _callable(op, provider, device)
    benchmark.group = f"call overhead {op} {mode} {device}"
    if mode == "fwd+bwd":
        inputs = [t.requires_grad_() for t in inputs]

        def call():
            out = fn(*inputs)
            return torch.autograd.grad(out, inputs, torch.ones_like(out), allow_unused=True)
    else:
        def call():
            return fn(*inputs)

    for _ in range(20):
        call()
    harness.sync(device)

    def timed():
        out = call()
        harness.sync(device)
        return out

    benchmark.pedantic(timed, rounds=int(os.environ.get("FASTMOTION_BENCH_OVERHEAD_ROUNDS", "2000")),
                       iterations=1, warmup_rounds=50)
    benchmark.extra_info.update(op=op, provider=provider, mode=mode)
