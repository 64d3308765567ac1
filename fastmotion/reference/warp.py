"""Reference of the flow-warping ops: ``grid_sample`` and Monkey-Net's dense-motion patterns.

Monkey-Net's warps use bilinear sampling with zero padding and align_corners=True: what
``grid_sample`` computed in the PyTorch the original was written for.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastmotion.reference.grid import make_coordinate_grid


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False):
    """``torch.nn.functional.grid_sample`` for 4-D input (the spec of fastmotion's own)."""
    return F.grid_sample(input, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


def compose_flow(mask_logits, kp_shift, correction=None):
    """Absolute sampling grid ``(N, H, W, 2)`` of the dense motion module.

    ``identity + sum_k softmax(mask_logits)_k * kp_shift_k (+ correction)``, with
    mask_logits ``(N, K+1, H, W)``, kp_shift ``(N, K+1, 2)`` and correction ``(N, 2, H, W)``.
    """
    n, k1, h, w = mask_logits.shape
    mask = F.softmax(mask_logits, dim=1).unsqueeze(2)  # (N, K+1, 1, H, W)
    shift = kp_shift.view(n, k1, 2, 1, 1)
    flow = (mask * shift).sum(dim=1)  # (N, 2, H, W)
    if correction is not None:
        flow = flow + correction
    grid = make_coordinate_grid((h, w), dtype=flow.dtype, device=flow.device)
    return flow.permute(0, 2, 3, 1) + grid


def _sampling_dtype(input_dtype, grid_dtype):
    """F.grid_sample needs one dtype: the two promoted (a half map and a float32 grid sample in
    float32 and are rounded back to half, as the fused kernels do)."""
    return torch.promote_types(input_dtype, grid_dtype)


def shifted_warps(source, kp_shift):
    """``(N, K+1, C, H, W)``: the source sampled at ``identity + kp_shift_k`` for every k
    (bilinear, zeros, align_corners=True), as the original's movement embedding does with
    K+1 repeated copies of the source. Returns the source's dtype; mixed dtypes sample in the
    promoted one."""
    n, c, h, w = source.shape
    k1 = kp_shift.shape[1]
    dtype = _sampling_dtype(source.dtype, kp_shift.dtype)
    repeated = source.to(dtype).unsqueeze(1).expand(n, k1, c, h, w).reshape(n * k1, c, h, w)
    grid = make_coordinate_grid((h, w), dtype=dtype, device=source.device)
    grid = grid.unsqueeze(0) + kp_shift.to(dtype).reshape(n * k1, 1, 1, 2)
    out = F.grid_sample(repeated, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.view(n, k1, c, h, w).to(source.dtype)


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
        dtype = _sampling_dtype(f.dtype, grid.dtype)
        g = resize_grid(grid.to(dtype), f.shape[-2:], mode)
        out.append(F.grid_sample(f.to(dtype), g, mode="bilinear", padding_mode="zeros",
                                 align_corners=True).to(f.dtype))
    return out
