"""Where the time of each fused op goes, kernel by kernel: forward + backward at the headline
shapes, run back to back under torch.profiler, per provider.

The pytest benchmarks time one synchronised call at a time (host time included); this script
answers the next question on a GPU: which kernels take the device time (the main kernel, a
zero fill, a partial-sum reduction, a dtype conversion...), and what the op costs back to back.

    python bench/profile_kernels.py [--iters 20] [--out kernels.json] [--small] [--only grid_sample]

On a machine without CUDA it profiles CPU ops instead (``--small`` keeps that quick); the GPU
numbers are the ones it is for (bench/gpu_check.sh runs it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastmotion import backends, reference  # noqa: E402
from fastmotion.ops import (compose_flow, grid_sample, heatmap_moments, render_gaussians,  # noqa: E402
                            shifted_warps, warp_features)
from fastmotion.reference import gaussian as ref_gaussian  # noqa: E402
from fastmotion.reference import warp as ref_warp  # noqa: E402

# provider -> (backend, FASTMOTION_GRID_SAMPLE_SCATTER)
VARIANTS = {"cuda-tile": ("cuda", "tile"), "triton-gather": ("triton", "gather")}


def _smooth_grid(n, h, w, device):
    ys, xs = torch.linspace(-1, 1, h, device=device), torch.linspace(-1, 1, w, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy], -1).expand(n, h, w, 2)
    phase = torch.arange(n, device=device, dtype=torch.float32).view(n, 1, 1, 1)
    return (base + 0.05 * torch.sin(3.0 * base.flip(-1) + phase)).contiguous()


def cases(device, small):
    """op -> (shape label, inputs, {provider: fn(*inputs) -> tensor or list})."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device)

    n = 2 if small else 32
    side = 16 if small else 64
    out = {}
    c = 4 if small else 64
    x, grid = rand(n, c, side, side), _smooth_grid(n, side, side, device)
    out["grid_sample"] = (f"{n}x{c}x{side}x{side}", [x, grid], {
        "torch": lambda a, b: F.grid_sample(a, b, align_corners=True),
        **{p: (lambda a, b, p=p: grid_sample(a, b, "bilinear", "zeros", True, backend=VARIANTS.get(p, (p,))[0]))
           for p in ("cpu", "cuda", "cuda-tile", "triton", "triton-gather")},
    })
    k1 = 11
    src, shift = rand(n, 3, side, side), rand(n, k1, 2, scale=0.2)
    out["shifted_warps"] = (f"{n}x3x{side}x{side} K+1={k1}", [src, shift], {
        "reference": ref_warp.shifted_warps,
        **{p: (lambda a, b, p=p: shifted_warps(a, b, backend=p)) for p in ("cpu", "cuda", "triton")},
    })
    logits, corr = rand(n, k1, side, side), rand(n, 2, side, side, scale=0.05)
    out["compose_flow"] = (f"{n}x{k1}x{side}x{side}", [logits, shift, corr], {
        "reference": ref_warp.compose_flow,
        **{p: (lambda a, b, d, p=p: compose_flow(a, b, d, backend=p)) for p in ("cpu", "cuda", "triton")},
    })
    hm = rand(n, 10, side, side)
    out["heatmap_moments"] = (f"{n}x10x{side}x{side}", [hm], {
        "reference": lambda a: torch.cat([t.flatten() for t in reference.heatmap_moments(a, 0.1, "matrix", 0.001)]),
        **{p: (lambda a, p=p: torch.cat([t.flatten() for t in heatmap_moments(a, 0.1, clip_variance=0.001,
                                                                                  backend=p)]))
           for p in ("cpu", "cuda", "triton")},
    })
    a = rand(n, 10, 2, 2, scale=0.2)
    mean, var = rand(n, 10, 2, scale=0.5), a @ a.transpose(-1, -2) + 0.01 * torch.eye(2, device=device)
    out["render_gaussians"] = (f"{n}x10x{side}x{side}", [mean, var], {
        "reference": lambda m, v: ref_gaussian.render_gaussians(m, v, (side, side)),
        **{p: (lambda m, v, p=p: render_gaussians(m, v, (side, side), backend=p)) for p in ("cpu", "cuda", "triton")},
    })
    chans = (3, 8, 16) if small else (3, 64, 128, 256, 512, 1024)
    skips = [rand(n if small else 16, ch, side >> i, side >> i) for i, ch in enumerate(chans)]
    wgrid = _smooth_grid(skips[0].shape[0], side, side, device)
    out["warp_features"] = (f"taichi skips N={skips[0].shape[0]}", [wgrid, *skips], {
        "reference": lambda gr, *fs: ref_warp.warp_features(list(fs), gr, "nearest"),
        **{p: (lambda gr, *fs, p=p: warp_features(list(fs), gr, "nearest", backend=p))
           for p in ("cpu", "cuda", "triton")},
    })
    return out


def _runnable(provider, device, op):
    import importlib
    module, table = {"grid_sample": ("grid_sample", "IMPLS"), "shifted_warps": ("dense_motion", "SHIFT_IMPLS"),
                     "compose_flow": ("dense_motion", "COMPOSE_IMPLS"), "heatmap_moments": ("heatmap_moments", "IMPLS"),
                     "render_gaussians": ("gaussian", "IMPLS"), "warp_features": ("warp_features", "IMPLS")}[op]
    impls = getattr(importlib.import_module(f"fastmotion.ops.{module}"), table)
    backend = VARIANTS.get(provider, (provider,))[0]
    if backend in ("torch", "reference"):
        return None
    if backend not in impls:
        return f"{backend} not implemented"
    if backend == "triton" and device == "cpu":
        return "triton on CPU only runs interpreted"
    return backends.unavailable_reason(backend, device, impls[backend].cpp_op)


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def profile_case(fn, inputs, device, iters):
    inputs = [t.detach().requires_grad_() for t in inputs]

    def step():
        out = fn(*inputs)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return torch.autograd.grad(outs, inputs, [torch.ones_like(o) for o in outs], allow_unused=True)

    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    wall = (time.perf_counter() - start) / iters
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(iters):
            step()
        _sync(device)
    rows = []
    for e in prof.key_averages():
        t = e.self_device_time_total if device == "cuda" else e.self_cpu_time_total
        if t > 0:
            rows.append({"name": e.key, "us_per_call": t / iters, "launches_per_call": e.count / iters})
    rows.sort(key=lambda r: -r["us_per_call"])
    total = sum(r["us_per_call"] for r in rows)
    return {"wall_us_per_call": wall * 1e6, "device_us_per_call": total, "kernels": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--small", action="store_true", help="small shapes (a quick check of the script)")
    ap.add_argument("--only", default=None, help="one op")
    ap.add_argument("--top", type=int, default=6, help="kernels listed per case")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    what = "device" if device == "cuda" else "CPU self"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"# forward + backward, {args.iters} calls back to back, {name}; {what} time per call")
    results = []
    for op, (shape, inputs, providers) in cases(device, args.small).items():
        if args.only and op != args.only:
            continue
        for provider, fn in providers.items():
            reason = _runnable(provider, device, op)
            if reason:
                continue
            scatter = VARIANTS.get(provider, (None, None))[1]
            previous = os.environ.get("FASTMOTION_GRID_SAMPLE_SCATTER")
            if scatter:
                os.environ["FASTMOTION_GRID_SAMPLE_SCATTER"] = scatter
            try:
                r = profile_case(fn, inputs, device, args.iters)
            except Exception as exc:  # one failing provider must not hide the others' numbers
                print(f"{op} {shape} {provider}: FAILED {type(exc).__name__}: {exc}")
                continue
            finally:
                if scatter:
                    if previous is None:
                        os.environ.pop("FASTMOTION_GRID_SAMPLE_SCATTER", None)
                    else:
                        os.environ["FASTMOTION_GRID_SAMPLE_SCATTER"] = previous
            results.append({"op": op, "shape": shape, "provider": provider, "device": name, **r})
            print(f"{op} {shape} {provider}: wall {r['wall_us_per_call']:.1f} us/call, "
                  f"{what} {r['device_us_per_call']:.1f} us/call")
            for k in r["kernels"][:args.top]:
                print(f"    {k['us_per_call']:9.1f} us  x{k['launches_per_call']:<4g} {k['name'][:90]}")
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
