"""``warp_features``: warp several feature maps by one sampling grid given at another size.

Backends: reference (F.interpolate + F.grid_sample). Fused backends land with issue #5.
"""
from __future__ import annotations

import torch

from fastmotion import backends
from fastmotion.ops import _checks
from fastmotion.reference import warp as ref

OP = "warp_features"
IMPLS = {"reference": backends.Impl(None)}
MODES = ("nearest", "bilinear", "trilinear")


def warp_features(features, grid: torch.Tensor, mode: str = "nearest", *, backend: str | None = None):
    """Warp each ``(N, C_i, H_i, W_i)`` in ``features`` by ``grid (N, h, w, 2)`` resized to
    ``(H_i, W_i)`` with ``mode`` (the original generator's ``interpolation_mode``; 'trilinear'
    means linear, align_corners=False), sampling bilinear / zeros / align_corners=True."""
    _checks.tensor(grid, "grid", OP, dim=4)
    if grid.shape[-1] != 2:
        raise ValueError(f"{OP}: grid must be (N, h, w, 2), got {tuple(grid.shape)}")
    if mode not in MODES:
        raise ValueError(f"{OP}: mode must be one of {MODES}, got {mode!r}")
    features = list(features)
    for i, f in enumerate(features):
        _checks.tensor(f, f"features[{i}]", OP, dim=4)
        if f.shape[0] != grid.shape[0]:
            raise ValueError(f"{OP}: features[{i}] has batch {f.shape[0]}, grid has {grid.shape[0]}")
    backends.select(OP, IMPLS, grid.device, backend)
    return ref.warp_features(features, grid, mode)
