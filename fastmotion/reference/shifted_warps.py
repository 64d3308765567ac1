"""Reference of ``shifted_warps``: the source image warped by every keypoint's shift (the movement
embedding's deformed sources)."""
from __future__ import annotations

import torch.nn.functional as F

from fastmotion.reference.grid import make_coordinate_grid
from fastmotion.reference.grid_sample import sampling_dtype


def shifted_warps(source, kp_shift):
    """``(N, K+1, C, H, W)``: the source sampled at ``identity + kp_shift_k`` for every k
    (bilinear, zeros, align_corners=True), as the original's movement embedding does with
    K+1 repeated copies of the source. Returns the source's dtype; mixed dtypes sample in the
    promoted one."""
    n, c, h, w = source.shape
    k1 = kp_shift.shape[1]
    dtype = sampling_dtype(source.dtype, kp_shift.dtype)
    repeated = source.to(dtype).unsqueeze(1).expand(n, k1, c, h, w).reshape(n * k1, c, h, w)
    grid = make_coordinate_grid((h, w), dtype=dtype, device=source.device)
    grid = grid.unsqueeze(0) + kp_shift.to(dtype).reshape(n * k1, 1, 1, 2)
    out = F.grid_sample(repeated, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.view(n, k1, c, h, w).to(source.dtype)
