"""Triton helpers of grid_sample's sampling math (mirror of csrc/include/fastmotion/sampling.h).

They follow PyTorch's vectorized CPU grid sampler operation by operation (see the header for
the conventions: unnormalize, clip, reflect, bilinear taps, nearest = round half to even,
NaN / inf handling, and which operations are fused multiply-adds in PyTorch's AVX2 build:
those are explicit ``tl.fma`` here). Kernels that use them should be launched with
``enable_fp_fusion=False`` so that the compiler fuses nothing else (the sampling kernels are
memory-bound; FMAs buy nothing).

``align`` (0/1) and ``padding`` (0 zeros, 1 border, 2 reflection) may be run-time scalars or
constexprs (a constexpr folds the branches away). Sizes are int32 scalars or Python ints (Triton
turns an int argument equal to 1 into a constexpr, so sizes are converted with ``tl.cast``, never
``.to``); the math runs in the dtype of the coordinate (float32, or float64 for float64 inputs).
"""
from __future__ import annotations

import triton
import triton.language as tl

from fastmotion.kernels._common import div_rn

PAD_ZEROS = 0
PAD_BORDER = 1
PAD_REFLECTION = 2
PADDING_CODES = {"zeros": PAD_ZEROS, "border": PAD_BORDER, "reflection": PAD_REFLECTION}


@triton.jit
def unnormalize_scale(size, align, dtype: tl.constexpr):
    """d pixel / d grid: (size - 1) / 2 with align_corners, size / 2 without."""
    if align:
        scale = tl.cast(size - 1, dtype) * 0.5
    else:
        scale = tl.cast(size, dtype) * 0.5
    return scale


@triton.jit
def unnormalize(g, size, align):
    """Grid value in [-1, 1] -> pixel coordinate: fma(g + 1, scale, -shift), shift = 0 | 0.5."""
    scale = unnormalize_scale(size, align, g.dtype)
    if align:
        shift = 0.0
    else:
        shift = 0.5
    return tl.fma(g + 1.0, scale + tl.zeros_like(g), -shift + tl.zeros_like(g))


@triton.jit
def clip_coordinate(x, size):
    """Forward clip to [0, size - 1]; NaN -> 0."""
    max_c = tl.cast(size - 1, x.dtype)
    return tl.where(x > 0.0, tl.where(x < max_c, x, max_c), 0.0)


@triton.jit
def clip_coordinate_with_grad(x, size):
    """Backward clip: (coordinate, multiplier). NaN passes through with multiplier 1; on or
    beyond a border the multiplier is 0."""
    max_c = tl.cast(size - 1, x.dtype)
    keep = (x != x) | ((x > 0.0) & (x < max_c))
    c = tl.where(keep, x, tl.where(x > 0.0, max_c, 0.0))
    return c, tl.where(keep, 1.0, 0.0).to(x.dtype)


@triton.jit
def _reflect_parts(x, size, align):
    if align:
        low = 0.0
        twice_span = tl.cast(2 * (size - 1), x.dtype)
    else:
        low = -0.5
        twice_span = tl.cast(2 * size, x.dtype)
    t = x - low
    a = tl.abs(t)
    # a >= 0, so trunc(a / span) == floor(a / span); the remainder is one fma, as in PyTorch
    flips = tl.floor(div_rn(a, twice_span + tl.zeros_like(a)))
    extra = tl.fma(-flips, twice_span + tl.zeros_like(a), a)
    mirrored = twice_span - extra
    return t < 0.0, extra, mirrored, low


@triton.jit
def reflect_coordinate(x, size, align):
    """Forward reflection (before the clip); NaN propagates."""
    neg, extra, mirrored, low = _reflect_parts(x, size, align)
    r = tl.where(extra > mirrored, mirrored, extra) + low
    if align:
        r = tl.where(size <= 1, 0.0, r)
    return r


@triton.jit
def reflect_coordinate_with_grad(x, size, align):
    """Backward reflection: (coordinate, sign +1 / -1; 0 on an empty span)."""
    neg, extra, mirrored, low = _reflect_parts(x, size, align)
    one_more = extra > mirrored
    r = tl.where(one_more, mirrored, extra) + low
    d = tl.where(one_more != neg, -1.0, 1.0).to(x.dtype)
    if align:
        r = tl.where(size <= 1, 0.0, r)
        d = tl.where(size <= 1, 0.0, d)
    return r, d


@triton.jit
def grid_coordinate(g, size, align, padding):
    """Pixel coordinate of grid value ``g`` under ``padding`` (forward)."""
    x = unnormalize(g, size, align)
    if padding == 1:
        x = clip_coordinate(x, size)
    elif padding == 2:
        x = clip_coordinate(reflect_coordinate(x, size, align), size)
    return x


@triton.jit
def grid_coordinate_with_grad(g, size, align, padding):
    """(pixel coordinate, d coordinate / d g) for the backward. A NaN coordinate stays NaN."""
    x = unnormalize(g, size, align)
    scale = unnormalize_scale(size, align, g.dtype)
    d = tl.zeros_like(x) + scale
    if padding == 1:
        x, m = clip_coordinate_with_grad(x, size)
        d = tl.where(m != 0.0, d, 0.0)
    elif padding == 2:
        x, sign = reflect_coordinate_with_grad(x, size, align)
        x, m = clip_coordinate_with_grad(x, size)
        d = tl.where(m != 0.0, sign * scale, 0.0)
    return x, d


@triton.jit
def inside(i, size):
    """Whether an integer-valued float index is in [0, size); False for NaN and inf."""
    return (i >= 0.0) & (i < tl.cast(size, i.dtype))


@triton.jit
def bilinear_taps(x, y, W, H):
    """Bilinear taps of pixel coordinate (x, y).

    Returns (x0, y0, fx, fy, in_w, in_e, in_n, in_s): int32 north-west corner (0 where no
    corner on that axis is inside, so it can be used in address arithmetic), the fractional
    offsets (PyTorch's w and n; e = 1 - fx, s = 1 - fy), and which columns / rows are inside.
    Corner weights: nw = (1-fy)(1-fx), ne = (1-fy) fx, sw = fy (1-fx), se = fy fx."""
    xf = tl.floor(x)
    yf = tl.floor(y)
    fx = x - xf
    fy = y - yf
    in_w = inside(xf, W)
    in_e = inside(xf + 1.0, W)
    in_n = inside(yf, H)
    in_s = inside(yf + 1.0, H)
    x0 = tl.where(in_w | in_e, xf, 0.0).to(tl.int32)
    y0 = tl.where(in_n | in_s, yf, 0.0).to(tl.int32)
    return x0, y0, fx, fy, in_w, in_e, in_n, in_s


@triton.jit
def round_half_even(x):
    """Round half to even (PyTorch's nearest) with the 2^23 (2^52) trick; NaN/inf/large pass."""
    if x.dtype == tl.float64:
        big = 4503599627370496.0
    else:
        big = 8388608.0
    a = tl.abs(x)
    r = (a + big) - big
    r = tl.where(x < 0.0, -r, r)
    return tl.where(a < big, r, x)


@triton.jit
def nearest_tap(x, y, W, H):
    """(xi, yi, inside) of the nearest pixel; xi = yi = 0 where it is outside."""
    xr = round_half_even(x)
    yr = round_half_even(y)
    ok = inside(xr, W) & inside(yr, H)
    return tl.where(ok, xr, 0.0).to(tl.int32), tl.where(ok, yr, 0.0).to(tl.int32), ok


__all__ = [
    "PAD_ZEROS", "PAD_BORDER", "PAD_REFLECTION", "PADDING_CODES", "unnormalize_scale", "unnormalize", "clip_coordinate",
    "clip_coordinate_with_grad", "reflect_coordinate", "reflect_coordinate_with_grad", "grid_coordinate",
    "grid_coordinate_with_grad", "inside", "bilinear_taps", "round_half_even", "nearest_tap", "triton",
]
