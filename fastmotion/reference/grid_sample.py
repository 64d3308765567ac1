"""Reference of ``grid_sample``: ``torch.nn.functional.grid_sample`` on 4-D input, which the
fused warps (compose_flow's grid, shifted_warps, warp_features) feed.

Monkey-Net's warps use bilinear sampling with zero padding and align_corners=True: what
``grid_sample`` computed in the PyTorch the original was written for.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False):
    """``torch.nn.functional.grid_sample`` for 4-D input (the spec of fastmotion's own)."""
    return F.grid_sample(input, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


def sampling_dtype(input_dtype, grid_dtype):
    """F.grid_sample needs one dtype: the two promoted (a half map and a float32 grid sample in
    float32 and are rounded back to half, as the fused kernels do)."""
    return torch.promote_types(input_dtype, grid_dtype)
