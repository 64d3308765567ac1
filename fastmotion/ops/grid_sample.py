"""``grid_sample``: a ``torch.nn.functional.grid_sample``-compatible warp for 4-D inputs.

Backends: reference (F.grid_sample). Fused backends (cpu / cuda / triton) land with issue #5.
"""
from __future__ import annotations

import torch

from fastmotion import backends
from fastmotion.ops import _checks
from fastmotion.reference import warp as ref

OP = "grid_sample"
IMPLS = {"reference": backends.Impl(None)}
MODES = ("bilinear", "nearest")
PADDING_MODES = ("zeros", "border", "reflection")


def grid_sample(input: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros",
                align_corners: bool = False, *, backend: str | None = None) -> torch.Tensor:
    """Sample ``input (N, C, H, W)`` at ``grid (N, Ho, Wo, 2)`` (x, y in [-1, 1]); same results
    as ``F.grid_sample`` with the same arguments."""
    _checks.tensor(input, "input", OP, dim=4)
    _checks.tensor(grid, "grid", OP, dim=4)
    if grid.shape[0] != input.shape[0] or grid.shape[-1] != 2:
        raise ValueError(f"{OP}: grid must be (N={input.shape[0]}, Ho, Wo, 2), got {tuple(grid.shape)}")
    if mode not in MODES:
        raise ValueError(f"{OP}: mode must be one of {MODES}, got {mode!r}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"{OP}: padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    _checks.same_device(OP, input=input, grid=grid)
    backends.select(OP, IMPLS, input.device, backend)
    return ref.grid_sample(input, grid, mode, padding_mode, bool(align_corners))
