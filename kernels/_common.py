"""Triton math shared by every kernel family, written once: the accumulation dtype, division
rounded as the reference's, Monkey-Net's grid coordinates and the align_corners=True taps of the
keypoint-space warps, float64 scalars passed as two float32 halves, and the variance-mode codes.

Kernels take these from here, never from another op's module or from ``fastmotion.reference``.
"""
from __future__ import annotations

import struct

import torch
import triton
import triton.language as tl

from fastmotion.ops import _schema

# The variance modes of the schemas (fastmotion/ops/_schema.py) as constexprs: jit code may read
# only constexpr globals. Launchers pass the plain int, VAR_MATRIX.value.
VAR_MATRIX = tl.constexpr(_schema.VAR_MATRIX)
VAR_SINGLE = tl.constexpr(_schema.VAR_SINGLE)
VAR_FIXED = tl.constexpr(_schema.VAR_FIXED)
# warp_features' grid resize (the launchers' int ``mode``): nearest, else linear
MODE_NEAREST = _schema.MODE_NEAREST


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of a kernel on ``dtype`` data: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def tl_acc(dtype: torch.dtype):
    """:func:`acc_dtype` as a Triton dtype (the kernels' ``ACC`` constexpr)."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def split_float(x: float, acc: torch.dtype = torch.float64):
    """``x`` as (hi, lo) float32 halves for a kernel accumulating in ``acc``: Triton passes Python
    floats as float32, and :func:`join_float` adds the halves back (to ~2^-48 relative). A float32
    kernel gets (x, 0.0), which rounds the same."""
    if acc != torch.float64:
        return x, 0.0
    hi = struct.unpack("f", struct.pack("f", x))[0] if abs(x) < 3.4e38 else x
    return hi, x - hi


@triton.jit
def join_float(hi, lo, ACC: tl.constexpr):
    """The scalar :func:`split_float` split, in ``ACC``."""
    return tl.cast(hi, ACC) + tl.cast(lo, ACC)


@triton.jit
def div_rn(a, b):
    """IEEE round-to-nearest division, as the reference's (Triton's float32 ``/`` is the 2-ulp
    ``div.full`` on NVIDIA GPUs)."""
    if a.dtype == tl.float64:
        return a / b
    else:
        return tl.math.div_rn(a, b)


def grid_args(h: int, w: int) -> dict:
    """The kernels' grid arguments of an H x W grid, in the order ``w_m1, h_m1, x_on, y_on``: each
    axis' size - 1 and 1.0, or 1.0 and 0.0 on a single-pixel axis (see :func:`grid_coord`)."""
    return dict(w_m1=float(max(w - 1, 1)), h_m1=float(max(h - 1, 1)), x_on=1.0 if w > 1 else 0.0,
                y_on=1.0 if h > 1 else 0.0)


@triton.jit
def grid_consts(w_m1, h_m1, x_on, y_on, ACC: tl.constexpr):
    """The grid's size - 1 per axis and its single-pixel switches (:func:`grid_coord`) in ``ACC``:
    torch.compile passes float scalars as float64, which would turn loop-carried state float64."""
    return tl.cast(w_m1, ACC), tl.cast(h_m1, ACC), tl.cast(x_on, ACC), tl.cast(y_on, ACC)


@triton.jit
def grid_coord(idx, size_m1, on):
    """Monkey-Net's coordinate of pixel ``idx`` (in the accumulation dtype) on an axis of
    ``size_m1 + 1`` pixels: ``2 * (idx / (n - 1)) - 1``, the division rounded as the reference's
    (:func:`div_rn`); 0 on a single-pixel axis (``on`` 0, ``size_m1`` 1)."""
    return (2.0 * div_rn(idx, tl.cast(size_m1, idx.dtype)) - 1.0) * on


@triton.jit
def aligned_taps(coord, size):
    """grid_sample's unnormalize (align_corners=True) of a coordinate, clamped to [-2, size + 1]:
    the first tap's index (the second is +1) and the second tap's weight, NaN for a NaN / inf
    coordinate (so the sample is NaN, as grid_sample's). Sizes go through tl.cast: Triton turns an
    int argument equal to 1 into a constexpr, which has no .to()."""
    c = (coord + 1.0) * 0.5 * tl.cast(size - 1, coord.dtype)
    nonfinite = c - c
    hi = tl.cast(size + 1, coord.dtype)
    c = tl.where(c >= -2.0, tl.where(c <= hi, c, hi), -2.0)
    f = tl.floor(c)
    return f.to(tl.int32), (c - f) + nonfinite


@triton.jit
def aligned_corners(x, y, W, H, mask):
    """:func:`aligned_taps` of a point (x, y) in Monkey-Net coordinates on a W x H map: the
    north-west tap (x0, y0), the weights (fx, fy) of the east / south taps, and the load masks of
    the four taps (nw, ne, sw, se), which are ``mask`` and inside the map (zero padding)."""
    x0, fx = aligned_taps(x, W)
    y0, fy = aligned_taps(y, H)
    in_x0 = (x0 >= 0) & (x0 < W)
    in_x1 = (x0 + 1 >= 0) & (x0 + 1 < W)
    in_y0 = (y0 >= 0) & (y0 < H)
    in_y1 = (y0 + 1 >= 0) & (y0 + 1 < H)
    return x0, y0, fx, fy, mask & in_y0 & in_x0, mask & in_y0 & in_x1, mask & in_y1 & in_x0, mask & in_y1 & in_x1


@triton.jit
def load_corners(nw_ptr, s_h, s_w, m00, m01, m10, m11, ACC: tl.constexpr):
    """The four taps (nw, ne, sw, se) from the north-west one's address and the map's strides, in
    ``ACC``; 0 where a mask of :func:`aligned_corners` is off."""
    v00 = tl.load(nw_ptr, mask=m00, other=0.0).to(ACC)
    v01 = tl.load(nw_ptr + s_w, mask=m01, other=0.0).to(ACC)
    v10 = tl.load(nw_ptr + s_h, mask=m10, other=0.0).to(ACC)
    v11 = tl.load(nw_ptr + s_h + s_w, mask=m11, other=0.0).to(ACC)
    return v00, v01, v10, v11


@triton.jit
def corner_slopes(v00, v01, v10, v11, fx, fy):
    """d(bilinear sample) / d(pixel coordinate) along x and y, from the four taps."""
    return (1.0 - fy) * (v01 - v00) + fy * (v11 - v10), (1.0 - fx) * (v10 - v00) + fx * (v11 - v01)
