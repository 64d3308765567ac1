"""Reference of ``warp_features``: the generator's encoder skips warped by one grid, resized to each
skip's size as the original does."""
from __future__ import annotations

import torch.nn.functional as F

from fastmotion.reference.grid_sample import sampling_dtype


def resize_grid(grid, size, mode="nearest"):
    """Resize an ``(N, h, w, 2)`` sampling grid to ``size`` as the original generator does:
    ``F.interpolate`` with ``mode`` ("nearest", or "bilinear"/"trilinear": linear, align_corners=False)."""
    if tuple(grid.shape[1:3]) == tuple(size):
        return grid
    chw = grid.permute(0, 3, 1, 2)
    if mode == "nearest":
        out = F.interpolate(chw, size=tuple(size), mode="nearest")
    else:
        out = F.interpolate(chw, size=tuple(size), mode="bilinear", align_corners=False)
    return out.permute(0, 2, 3, 1)


def warp_features(features, grid, mode="nearest"):
    """Warp each ``(N, C_i, H_i, W_i)`` feature map by ``grid`` ``(N, h, w, 2)`` resized to its size.
    Each output has its map's dtype; a map and a grid of different dtypes sample in the promoted one."""
    out = []
    for f in features:
        dtype = sampling_dtype(f.dtype, grid.dtype)
        g = resize_grid(grid.to(dtype), f.shape[-2:], mode)
        out.append(F.grid_sample(f.to(dtype), g, mode="bilinear", padding_mode="zeros",
                                 align_corners=True).to(f.dtype))
    return out
