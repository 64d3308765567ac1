"""warp_features forward and forward+backward: reference (F.interpolate + F.grid_sample per map),
torch.compile(reference), fused backends, at the Monkey-Net generator's encoder skips.

taichi: num_blocks=5, block_expansion=32, 64x64 frames: skips (3, 64, 128, 256, 512, 1024)
  channels at 64, 32, 16, 8, 4, 2 pixels, warped by a 64x64 grid, nearest resize.
vox: num_blocks=7, 256x256 frames, dense motion at scale 0.25: skips (3, 64, 128, 256, 512,
  1024, 1024, 1024) at 256 ... 2 pixels, warped by a 64x64 grid, trilinear resize.
Bytes that must move (float32): fwd reads every skip and writes its warped copy (+ the grid);
fwd+bwd adds reading the output gradients and the skips again and writing the skip gradients.
"""
import importlib

import pytest
import torch

from bench import harness
from fastmotion import reference
from fastmotion.ops import warp_features

WF = importlib.import_module("fastmotion.ops.warp_features")
CONFIGS = {
    "taichi": dict(channels=(3, 64, 128, 256, 512, 1024), top=64, grid=64, mode="nearest"),
    "vox": dict(channels=(3, 64, 128, 256, 512, 1024, 1024, 1024), top=256, grid=64, mode="trilinear"),
}
CASES = [("taichi", 1), ("taichi", 16), ("vox", 1), ("vox", 4)]
KEY = [("taichi", 16)]


def _skips(cfg, n, device, g):
    return [torch.randn(n, c, cfg["top"] >> i, cfg["top"] >> i, generator=g).to(device)
            for i, c in enumerate(cfg["channels"])]


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-N{c[1]}")
@pytest.mark.parametrize("provider", harness.PROVIDERS)
@pytest.mark.parametrize("device", harness.devices())
def test_warp_features(benchmark, device, provider, case, mode):
    harness.skip_unless_runnable(provider, device, WF.IMPLS, key=case in KEY)
    name, n = case
    cfg = CONFIGS[name]
    benchmark.group = f"warp_features {mode} {name} N={n} {device}"
    g = torch.Generator().manual_seed(0)
    skips = _skips(cfg, n, device, g)
    side = cfg["grid"]
    ident = reference.grid.make_coordinate_grid((side, side))
    grid = (ident.unsqueeze(0) + 0.1 * torch.randn(n, side, side, 2, generator=g)).to(device)
    grad_outs = [torch.randn(s.shape, generator=g).to(device) for s in skips]
    inputs = [t.requires_grad_(mode != "fwd") for t in skips + [grid]]
    interp = cfg["mode"]
    if provider == "reference":
        fn = lambda *t: reference.warp.warp_features(list(t[:-1]), t[-1], interp)  # noqa: E731
    elif provider == "compile":
        fn = harness.compiled(lambda *t: reference.warp.warp_features(list(t[:-1]), t[-1], interp))
    else:
        fn = lambda *t: warp_features(list(t[:-1]), t[-1], interp, backend=provider)  # noqa: E731
    if mode == "fwd":
        def call():
            with torch.no_grad():
                return fn(*inputs)
    else:
        def call():
            return torch.autograd.grad(fn(*inputs), inputs, grad_outs)
    elem = 4
    feat = sum(s.numel() for s in skips)
    bytes_fwd = (2 * feat + grid.numel()) * elem
    bytes_moved = bytes_fwd if mode == "fwd" else bytes_fwd + (3 * feat + 2 * grid.numel()) * elem
    harness.run(benchmark, call, device, bytes_moved, op="warp_features", provider=provider,
                shape=[name, n], mode=mode)
