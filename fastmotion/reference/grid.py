"""Monkey-Net's normalized pixel grid."""
from __future__ import annotations

import torch


def make_coordinate_grid(spatial_size, dtype=torch.float32, device=None) -> torch.Tensor:
    """``(H, W, 2)`` grid of (x, y) coordinates in [-1, 1], endpoints included.

    ``x_j = 2 * (j / (W - 1)) - 1`` (same order of operations as the original). A
    single-pixel axis sits at 0 (the original would divide by zero there).
    """
    h, w = (int(s) for s in spatial_size)

    def axis(n):
        i = torch.arange(n, dtype=dtype, device=device)
        if n == 1:
            return torch.zeros_like(i)
        return 2 * (i / (n - 1)) - 1

    x = axis(w).view(1, w).expand(h, w)
    y = axis(h).view(h, 1).expand(h, w)
    return torch.stack([x, y], dim=-1)
