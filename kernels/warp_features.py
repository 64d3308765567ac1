"""Triton kernels of ``warp_features``: several feature maps warped by one grid given at another size.

Each feature map (N, C_i, H_i, W_i) is sampled (bilinear, zeros, align_corners=True) at the grid
(N, h, w, 2) resized to (H_i, W_i) - nearest (``floor(dst * in / out)`` in float, as
F.interpolate) or linear with align_corners=False - and the resize is folded into the sampling:
every output element computes its resized grid value from the small grid (which stays in
cache) instead of reading a materialised resized grid.

All maps of a call go through ONE launch per pass (up to MAX_MAPS maps per launch; more are
split): the program id range is cut into one contiguous range per map, and each program runs the
body of its map with that map's pointers and sizes (a runtime branch over a compile-time
unrolled list). Passes:

forward: one lane per output element (n, c, y, x). Traffic: read each feature map (taps mostly
  hit cache), write each output once; the reference also writes and reads a resized grid per map.
backward A: one program per (map, n, channel chunk, block of pixels). The pixels' taps are
  computed once and reused for the chunk's channels: grad_out is scattered into a float32
  feature-gradient scratch with atomics (in deterministic mode fastmotion.ops.warp_features takes
  the feature gradients from grid_sample's gather at materialised resized grids instead), and
  grad_out * d(sample)/d(coordinate) is summed over the chunk's channels in registers and
  written as one partial per (chunk, pixel).
backward B: one program per (n, block of grid cells) gathers, for every map, the output pixels
  whose resized grid value reads that cell (a small window around the cell's image under the
  resize; exact taps decide) and sums their partials over chunks: the transposed resize,
  deterministic, no atomics on the grid.
backward C: the float32 feature-gradient scratch is converted into one tensor per map.
"""
from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from fastmotion.kernels._common import (MODE_NEAREST, acc_dtype, aligned_corners, corner_slopes, div_rn, load_corners,
                                        tl_acc)

MAX_MAPS = 8
_BLOCK = 256
_PIX_BLOCK = 128
_CELL_BLOCK = 128
_CHUNK = 16  # channels per program in backward A


# The per-map sizes, strides and offsets are not specialized: Triton would otherwise compile a
# variant per combination of "equals 1" / "divisible by 16" over ~100 arguments (every new set of
# feature-map shapes), and these gather / scatter kernels gain nothing from aligned vector loads.
def _per_map(*names):
    return [f"{name}{i}" for i in range(MAX_MAPS) for name in names]


_NO_SPECIALIZE_WARP_FEATURES_FWD_KERNEL = ["h", "w"] + _per_map("C", "H", "W", "sn", "sc", "sh", "sw", "T", "b")
_NO_SPECIALIZE_WARP_FEATURES_BWD_KERNEL = ["h", "w"] + _per_map("C", "H", "W", "sn", "sc", "sh", "sw", "nch", "pb",
                                                                "gfo", "gco", "b")
_NO_SPECIALIZE_WARP_FEATURES_GRID_GRAD_KERNEL = ["h", "w", "nblk"] + _per_map("H", "W", "nch", "gco", "ly", "lx")
_NO_SPECIALIZE_WARP_FEATURES_CAST_KERNEL = _per_map("T", "o", "b")


# ------------------------------------------------------------------------------ resize math

@triton.jit
def _nearest_index(dst, size_in, size_out):
    # min(floor(dst * (in / out)), in - 1) with a float32 scale, or dst when in == out
    n_in = tl.cast(size_in, tl.int32)
    n_out = tl.cast(size_out, tl.int32)
    scale = div_rn(tl.cast(n_in, tl.float32), tl.cast(n_out, tl.float32))
    s = tl.floor(dst.to(tl.float32) * scale).to(tl.int32)
    s = tl.minimum(s, n_in - 1)
    return tl.where(n_in == n_out, dst, s)


@triton.jit
def _linear_taps(dst, size_in, size_out, ACC: tl.constexpr):
    # F.interpolate linear, align_corners=False: (i0, i1, w0, w1); identity when in == out
    n_in = tl.cast(size_in, tl.int32)
    n_out = tl.cast(size_out, tl.int32)
    scale = div_rn(tl.cast(n_in, ACC), tl.cast(n_out, ACC))
    src = scale * (dst.to(ACC) + 0.5) - 0.5
    src = tl.maximum(src, 0.0)
    i0 = tl.minimum(src.to(tl.int32), n_in - 1)
    l1 = tl.minimum(tl.maximum(src - i0.to(ACC), 0.0), 1.0)
    i1 = i0 + tl.where(i0 < n_in - 1, 1, 0)
    same = n_in == n_out
    i0 = tl.where(same, dst, i0)
    i1 = tl.where(same, dst, i1)
    l1 = tl.where(same, 0.0, l1)
    return i0, i1, 1.0 - l1, l1


@triton.jit
def _resized_grid(grid_n, h, w, Hf, Wf, y, x, mask, NEAREST: tl.constexpr, ACC: tl.constexpr):
    if NEAREST:
        g = grid_n + (_nearest_index(y, h, Hf) * w + _nearest_index(x, w, Wf)).to(tl.int64) * 2
        gx = tl.load(g, mask=mask, other=0.0).to(ACC)
        gy = tl.load(g + 1, mask=mask, other=0.0).to(ACC)
    else:
        y0, y1, wy0, wy1 = _linear_taps(y, h, Hf, ACC)
        x0, x1, wx0, wx1 = _linear_taps(x, w, Wf, ACC)
        g00 = grid_n + (y0 * w + x0).to(tl.int64) * 2
        g01 = grid_n + (y0 * w + x1).to(tl.int64) * 2
        g10 = grid_n + (y1 * w + x0).to(tl.int64) * 2
        g11 = grid_n + (y1 * w + x1).to(tl.int64) * 2
        gx = (wy0 * (wx0 * tl.load(g00, mask=mask, other=0.0).to(ACC) + wx1 * tl.load(g01, mask=mask, other=0.0).to(ACC))
              + wy1 * (wx0 * tl.load(g10, mask=mask, other=0.0).to(ACC) + wx1 * tl.load(g11, mask=mask, other=0.0).to(ACC)))
        gy = (wy0 * (wx0 * tl.load(g00 + 1, mask=mask, other=0.0).to(ACC)
                     + wx1 * tl.load(g01 + 1, mask=mask, other=0.0).to(ACC))
              + wy1 * (wx0 * tl.load(g10 + 1, mask=mask, other=0.0).to(ACC)
                       + wx1 * tl.load(g11 + 1, mask=mask, other=0.0).to(ACC)))
    return gx, gy


@triton.jit
def _which_map(pid, starts, NUM: tl.constexpr):
    # index of the map whose program range holds pid (starts[i]: first program of map i)
    m = pid * 0
    for i in tl.static_range(1, NUM):
        m += tl.where(pid >= starts[i], 1, 0)
    return m


# ------------------------------------------------------------------------------ forward

@triton.jit
def _fwd_map(f_ptr, o_ptr, grid_ptr, lp, C, Hf, Wf, s_n, s_c, s_h, s_w, total, h, w,
             NEAREST: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr, IDX64: tl.constexpr):
    # one lane per output element (n, c, y, x); 32-bit index arithmetic unless a map is huge
    # (64-bit division costs more than the element's memory traffic)
    if IDX64:
        e = lp.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    else:
        e = lp * BLOCK + tl.arange(0, BLOCK)
    mask = e < total
    hw_f = Hf * Wf
    p = (e % hw_f).to(tl.int32)
    nc = e // hw_f
    c = nc % C
    n = (nc // C).to(tl.int64)
    y = p // Wf
    x = p % Wf
    gx, gy = _resized_grid(grid_ptr + n * h * w * 2, h, w, Hf, Wf, y, x, mask, NEAREST, ACC)
    x0, y0, fx, fy, m00, m01, m10, m11 = aligned_corners(gx, gy, Wf, Hf, mask)
    base = f_ptr + n * s_n + c.to(tl.int64) * s_c + y0.to(tl.int64) * s_h + x0.to(tl.int64) * s_w
    v00, v01, v10, v11 = load_corners(base, s_h, s_w, m00, m01, m10, m11, ACC)
    v = (1.0 - fy) * ((1.0 - fx) * v00 + fx * v01) + fy * ((1.0 - fx) * v10 + fx * v11)
    tl.store(o_ptr + e, v.to(o_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=_NO_SPECIALIZE_WARP_FEATURES_FWD_KERNEL)
def warp_features_fwd_kernel(
        grid_ptr, h, w,
        f0, o0, C0, H0, W0, sn0, sc0, sh0, sw0, T0, b0,
        f1, o1, C1, H1, W1, sn1, sc1, sh1, sw1, T1, b1,
        f2, o2, C2, H2, W2, sn2, sc2, sh2, sw2, T2, b2,
        f3, o3, C3, H3, W3, sn3, sc3, sh3, sw3, T3, b3,
        f4, o4, C4, H4, W4, sn4, sc4, sh4, sw4, T4, b4,
        f5, o5, C5, H5, W5, sn5, sc5, sh5, sw5, T5, b5,
        f6, o6, C6, H6, W6, sn6, sc6, sh6, sw6, T6, b6,
        f7, o7, C7, H7, W7, sn7, sc7, sh7, sw7, T7, b7,
        NUM: tl.constexpr, NEAREST: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr, IDX64: tl.constexpr):
    pid = tl.program_id(0)
    # Triton has no arrays of pointers: the maps' arguments are gathered into tuples that an
    # unrolled loop indexes with compile-time constants
    maps = ((f0, o0, C0, H0, W0, sn0, sc0, sh0, sw0, T0), (f1, o1, C1, H1, W1, sn1, sc1, sh1, sw1, T1),
            (f2, o2, C2, H2, W2, sn2, sc2, sh2, sw2, T2), (f3, o3, C3, H3, W3, sn3, sc3, sh3, sw3, T3),
            (f4, o4, C4, H4, W4, sn4, sc4, sh4, sw4, T4), (f5, o5, C5, H5, W5, sn5, sc5, sh5, sw5, T5),
            (f6, o6, C6, H6, W6, sn6, sc6, sh6, sw6, T6), (f7, o7, C7, H7, W7, sn7, sc7, sh7, sw7, T7))
    starts = (b0, b1, b2, b3, b4, b5, b6, b7)
    m = _which_map(pid, starts, NUM)
    for i in tl.static_range(NUM):
        if m == i:
            f, o, C, Hf, Wf, s_n, s_c, s_h, s_w, total = maps[i]
            _fwd_map(f, o, grid_ptr, pid - starts[i], C, Hf, Wf, s_n, s_c, s_h, s_w, total, h, w, NEAREST, BLOCK, ACC,
                     IDX64)


# ------------------------------------------------------------------------------ backward A

@triton.jit
def _bwd_map(f_ptr, g_ptr, gf_ptr, gc_ptr, grid_ptr, lp, C, Hf, Wf, s_n, s_c, s_h, s_w, nchunk, pblk, h, w,
             FEAT_GRAD: tl.constexpr, GRID_GRAD: tl.constexpr, NEAREST: tl.constexpr, CHUNK: tl.constexpr,
             BLOCK: tl.constexpr, ACC: tl.constexpr):
    pb = lp % pblk
    rest = lp // pblk
    chunk = rest % nchunk
    n = (rest // nchunk).to(tl.int64)
    hw_f = Hf * Wf
    p = pb * BLOCK + tl.arange(0, BLOCK)
    mask = p < hw_f
    y = p // Wf
    x = p % Wf
    gx, gy = _resized_grid(grid_ptr + n * h * w * 2, h, w, Hf, Wf, y, x, mask, NEAREST, ACC)
    x0, y0, fx, fy, m00, m01, m10, m11 = aligned_corners(gx, gy, Wf, Hf, mask)
    src_off = y0.to(tl.int64) * s_h + x0.to(tl.int64) * s_w
    dst_off = y0.to(tl.int64) * Wf + x0  # contiguous layout of the gradient scratch
    acc_x = tl.zeros([BLOCK], dtype=ACC)
    acc_y = tl.zeros([BLOCK], dtype=ACC)
    c_start = chunk * CHUNK
    c_end = tl.minimum(tl.cast(C, tl.int32), c_start + CHUNK)
    for c in range(c_start, c_end):
        nc = n * C + c
        g = tl.load(g_ptr + nc * hw_f + p, mask=mask, other=0.0).to(ACC)
        if GRID_GRAD:
            v00, v01, v10, v11 = load_corners(f_ptr + n * s_n + c * s_c + src_off, s_h, s_w, m00, m01, m10, m11, ACC)
            dx, dy = corner_slopes(v00, v01, v10, v11, fx, fy)
            acc_x += g * dx
            acc_y += g * dy
        if FEAT_GRAD:
            d = gf_ptr + nc * hw_f + dst_off
            tl.atomic_add(d, ((1.0 - fy) * (1.0 - fx) * g).to(gf_ptr.dtype.element_ty), mask=m00, sem="relaxed")
            tl.atomic_add(d + 1, ((1.0 - fy) * fx * g).to(gf_ptr.dtype.element_ty), mask=m01, sem="relaxed")
            tl.atomic_add(d + Wf, (fy * (1.0 - fx) * g).to(gf_ptr.dtype.element_ty), mask=m10, sem="relaxed")
            tl.atomic_add(d + Wf + 1, (fy * fx * g).to(gf_ptr.dtype.element_ty), mask=m11, sem="relaxed")
    if GRID_GRAD:
        # d(coordinate)/d(grid) of align_corners=True: (size - 1) / 2
        out = gc_ptr + ((n * nchunk + chunk) * hw_f + p) * 2
        tl.store(out, acc_x * (0.5 * tl.cast(Wf - 1, ACC)), mask=mask)
        tl.store(out + 1, acc_y * (0.5 * tl.cast(Hf - 1, ACC)), mask=mask)


@triton.jit(do_not_specialize=_NO_SPECIALIZE_WARP_FEATURES_BWD_KERNEL)
def warp_features_bwd_kernel(
        grid_ptr, gf_ptr, gc_ptr, h, w,
        f0, g0, C0, H0, W0, sn0, sc0, sh0, sw0, nch0, pb0, gfo0, gco0, b0,
        f1, g1, C1, H1, W1, sn1, sc1, sh1, sw1, nch1, pb1, gfo1, gco1, b1,
        f2, g2, C2, H2, W2, sn2, sc2, sh2, sw2, nch2, pb2, gfo2, gco2, b2,
        f3, g3, C3, H3, W3, sn3, sc3, sh3, sw3, nch3, pb3, gfo3, gco3, b3,
        f4, g4, C4, H4, W4, sn4, sc4, sh4, sw4, nch4, pb4, gfo4, gco4, b4,
        f5, g5, C5, H5, W5, sn5, sc5, sh5, sw5, nch5, pb5, gfo5, gco5, b5,
        f6, g6, C6, H6, W6, sn6, sc6, sh6, sw6, nch6, pb6, gfo6, gco6, b6,
        f7, g7, C7, H7, W7, sn7, sc7, sh7, sw7, nch7, pb7, gfo7, gco7, b7,
        NUM: tl.constexpr, FEAT_GRAD: tl.constexpr, GRID_GRAD: tl.constexpr, NEAREST: tl.constexpr,
        CHUNK: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    pid = tl.program_id(0)
    maps = ((f0, g0, C0, H0, W0, sn0, sc0, sh0, sw0, nch0, pb0, gfo0, gco0),
            (f1, g1, C1, H1, W1, sn1, sc1, sh1, sw1, nch1, pb1, gfo1, gco1),
            (f2, g2, C2, H2, W2, sn2, sc2, sh2, sw2, nch2, pb2, gfo2, gco2),
            (f3, g3, C3, H3, W3, sn3, sc3, sh3, sw3, nch3, pb3, gfo3, gco3),
            (f4, g4, C4, H4, W4, sn4, sc4, sh4, sw4, nch4, pb4, gfo4, gco4),
            (f5, g5, C5, H5, W5, sn5, sc5, sh5, sw5, nch5, pb5, gfo5, gco5),
            (f6, g6, C6, H6, W6, sn6, sc6, sh6, sw6, nch6, pb6, gfo6, gco6),
            (f7, g7, C7, H7, W7, sn7, sc7, sh7, sw7, nch7, pb7, gfo7, gco7))
    starts = (b0, b1, b2, b3, b4, b5, b6, b7)
    m = _which_map(pid, starts, NUM)
    for i in tl.static_range(NUM):
        if m == i:
            f, g, C, Hf, Wf, s_n, s_c, s_h, s_w, nch, pb, gfo, gco = maps[i]
            _bwd_map(f, g, gf_ptr + gfo, gc_ptr + gco, grid_ptr, pid - starts[i], C, Hf, Wf, s_n, s_c, s_h, s_w, nch,
                     pb, h, w, FEAT_GRAD, GRID_GRAD, NEAREST, CHUNK, BLOCK, ACC)


# ------------------------------------------------------------------------------ backward B

@triton.jit
def _axis_window_weight(d, a, size_grid, size_map, NEAREST: tl.constexpr, ACC: tl.constexpr):
    # weight with which map index d's resized value reads grid index a along one axis
    if NEAREST:
        wt = tl.where(_nearest_index(d, size_grid, size_map) == a, 1.0, 0.0)
    else:
        i0, i1, w0, w1 = _linear_taps(d, size_grid, size_map, ACC)
        wt = tl.where(i0 == a, w0, 0.0) + tl.where(i1 == a, w1, 0.0)
    return tl.where((d >= 0) & (d < size_map), wt, 0.0)


@triton.jit
def _window_start(a, size_grid, size_map, NEAREST: tl.constexpr):
    # first map index whose resize may read grid index a (a window of _window_len from here)
    r = tl.cast(size_map, tl.float32) / tl.cast(size_grid, tl.float32)  # map pixels per grid cell
    if NEAREST:
        lo = tl.floor(a.to(tl.float32) * r) - 1.0
    else:
        lo = tl.floor((a.to(tl.float32) - 0.5) * r - 0.5) - 1.0
    return lo.to(tl.int32)


@triton.jit
def _gather_map(gc_ptr, n, nchunk, Hf, Wf, h, w, ay, ax, mask, wy_len, wx_len, NEAREST: tl.constexpr,
                ACC: tl.constexpr, BLOCK: tl.constexpr):
    acc_x = tl.zeros([BLOCK], dtype=ACC)
    acc_y = tl.zeros([BLOCK], dtype=ACC)
    ys = _window_start(ay, h, Hf, NEAREST)
    xs = _window_start(ax, w, Wf, NEAREST)
    hw_f = Hf * Wf
    for dy in range(0, wy_len):
        yy = ys + dy
        wy = _axis_window_weight(yy, ay, h, Hf, NEAREST, ACC)
        for dx in range(0, wx_len):
            xx = xs + dx
            wgt = wy * _axis_window_weight(xx, ax, w, Wf, NEAREST, ACC)
            live = mask & (wgt != 0.0)
            pix = (yy * Wf + xx).to(tl.int64)
            sx = tl.zeros([BLOCK], dtype=ACC)
            sy = tl.zeros([BLOCK], dtype=ACC)
            for ch in range(0, nchunk):
                src = gc_ptr + ((n * nchunk + ch) * hw_f + pix) * 2
                sx += tl.load(src, mask=live, other=0.0)
                sy += tl.load(src + 1, mask=live, other=0.0)
            acc_x += wgt * sx
            acc_y += wgt * sy
    return acc_x, acc_y


@triton.jit(do_not_specialize=_NO_SPECIALIZE_WARP_FEATURES_GRID_GRAD_KERNEL)
def warp_features_grid_grad_kernel(
        gc_ptr, out_ptr, h, w, nblk,
        H0, W0, nch0, gco0, ly0, lx0, H1, W1, nch1, gco1, ly1, lx1,
        H2, W2, nch2, gco2, ly2, lx2, H3, W3, nch3, gco3, ly3, lx3,
        H4, W4, nch4, gco4, ly4, lx4, H5, W5, nch5, gco5, ly5, lx5,
        H6, W6, nch6, gco6, ly6, lx6, H7, W7, nch7, gco7, ly7, lx7,
        NUM: tl.constexpr, ACCUMULATE: tl.constexpr, NEAREST: tl.constexpr, BLOCK: tl.constexpr,
        ACC: tl.constexpr):
    pid = tl.program_id(0)
    n = (pid // nblk).to(tl.int64)
    a = (pid % nblk) * BLOCK + tl.arange(0, BLOCK)
    mask = a < h * w
    ay = a // w
    ax = a % w
    maps = ((H0, W0, nch0, gco0, ly0, lx0), (H1, W1, nch1, gco1, ly1, lx1), (H2, W2, nch2, gco2, ly2, lx2),
            (H3, W3, nch3, gco3, ly3, lx3), (H4, W4, nch4, gco4, ly4, lx4), (H5, W5, nch5, gco5, ly5, lx5),
            (H6, W6, nch6, gco6, ly6, lx6), (H7, W7, nch7, gco7, ly7, lx7))
    for i in tl.static_range(NUM):
        Hf, Wf, nch, gco, ly, lx = maps[i]
        tx, ty = _gather_map(gc_ptr + gco, n, nch, Hf, Wf, h, w, ay, ax, mask, ly, lx, NEAREST, ACC, BLOCK)
        if i == 0:
            gx = tx
            gy = ty
        else:
            gx += tx
            gy += ty
    out = out_ptr + (n * h * w + a) * 2
    if ACCUMULATE:  # a later group of maps adds to the earlier groups' sum
        gx += tl.load(out, mask=mask, other=0.0)
        gy += tl.load(out + 1, mask=mask, other=0.0)
    tl.store(out, gx, mask=mask)
    tl.store(out + 1, gy, mask=mask)


# ------------------------------------------------------------------------------ backward C

@triton.jit
def _cast_map(src_ptr, dst_ptr, lp, total, BLOCK: tl.constexpr):
    e = lp.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = e < total
    tl.store(dst_ptr + e, tl.load(src_ptr + e, mask=mask).to(dst_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=_NO_SPECIALIZE_WARP_FEATURES_CAST_KERNEL)
def warp_features_cast_kernel(
        src_ptr, d0, T0, o0, b0, d1, T1, o1, b1, d2, T2, o2, b2, d3, T3, o3, b3,
        d4, T4, o4, b4, d5, T5, o5, b5, d6, T6, o6, b6, d7, T7, o7, b7,
        NUM: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    maps = ((d0, T0, o0), (d1, T1, o1), (d2, T2, o2), (d3, T3, o3), (d4, T4, o4), (d5, T5, o5), (d6, T6, o6),
            (d7, T7, o7))
    starts = (b0, b1, b2, b3, b4, b5, b6, b7)
    m = _which_map(pid, starts, NUM)
    for i in tl.static_range(NUM):
        if m == i:
            d, total, offset = maps[i]
            _cast_map(src_ptr + offset, d, pid - starts[i], total, BLOCK)


# ------------------------------------------------------------------------------ launchers

def _groups(items):
    return [items[i:i + MAX_MAPS] for i in range(0, len(items), MAX_MAPS)]


def _pad(per_map, filler):
    """Flatten per-map argument tuples, padding to MAX_MAPS with `filler` (never selected)."""
    args = []
    for i in range(MAX_MAPS):
        args.extend(per_map[i] if i < len(per_map) else filler)
    return args


def warp_features_forward(features: list[torch.Tensor], grid: torch.Tensor, mode: int) -> list[torch.Tensor]:
    nearest = mode == MODE_NEAREST
    grid = grid.contiguous()
    n, h, w, _ = grid.shape
    outs = [f.new_empty((n,) + tuple(f.shape[1:])) for f in features]
    live = [(f, o) for f, o in zip(features, outs) if o.numel() > 0]
    for group in _groups(live):
        per_map, start = [], 0
        for f, o in group:
            total = o.numel()
            per_map.append((f, o, f.shape[1], f.shape[2], f.shape[3], *f.stride(), total, start))
            start += triton.cdiv(total, _BLOCK)
        filler = per_map[0][:-1] + (start,)
        idx64 = max(o.numel() for _, o in group) + _BLOCK >= 2 ** 31
        wrap_triton(warp_features_fwd_kernel)[(start,)](
            grid, h, w, *_pad(per_map, filler), NUM=len(group), NEAREST=nearest, BLOCK=_BLOCK,
            ACC=tl_acc(group[0][0].dtype), IDX64=idx64, num_warps=4)
    return outs


def _window_len(size_grid: int, size_map: int, nearest: bool) -> int:
    r = size_map / size_grid
    return int(math.ceil(r)) + 3 if nearest else int(math.ceil(2 * r)) + 4


def warp_features_backward(grad_outs: list[torch.Tensor], features: list[torch.Tensor], grid: torch.Tensor, mode: int,
                           features_requires_grad: bool,
                           grid_requires_grad: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Feature gradients scattered with atomics (fastmotion.ops.warp_features gathers them in
    deterministic mode) and the grid gradient; ``mode``: nearest (MODE_NEAREST) or linear resize."""
    nearest = mode == MODE_NEAREST
    grid = grid.contiguous()
    n, h, w, _ = grid.shape
    acc = acc_dtype(grid.dtype)
    device = grid.device
    grad_outs = [g.contiguous() for g in grad_outs]
    # scratch layout: float32 feature gradients (contiguous per map) and coordinate-gradient
    # partials (N, chunks, H_i * W_i, 2) per map, each map at an offset
    info, gf_size, gc_size = [], 0, 0
    for f in features:
        c, hf, wf = f.shape[1], f.shape[2], f.shape[3]
        nchunk = max(1, triton.cdiv(c, _CHUNK))
        pblk = triton.cdiv(hf * wf, _PIX_BLOCK)
        info.append(dict(c=c, hf=hf, wf=wf, nchunk=nchunk, pblk=pblk, gfo=gf_size, gco=gc_size,
                         programs=n * nchunk * pblk if n * c > 0 else 0))
        gf_size += n * c * hf * wf
        gc_size += n * nchunk * hf * wf * 2
    gf = torch.zeros((gf_size if features_requires_grad else 1,), dtype=acc, device=device)
    gc = torch.empty((gc_size if grid_requires_grad else 1,), dtype=acc, device=device)  # every partial is written
    live = [i for i, d in enumerate(info) if d["programs"] > 0]
    for group in _groups(live):
        per_map, start = [], 0
        for i in group:
            d, f = info[i], features[i]
            per_map.append((f, grad_outs[i], d["c"], d["hf"], d["wf"], *f.stride(), d["nchunk"], d["pblk"], d["gfo"],
                            d["gco"], start))
            start += d["programs"]
        filler = per_map[0][:-1] + (start,)
        wrap_triton(warp_features_bwd_kernel)[(start,)](
            grid, gf, gc, h, w, *_pad(per_map, filler), NUM=len(group), FEAT_GRAD=features_requires_grad,
            GRID_GRAD=grid_requires_grad, NEAREST=nearest, CHUNK=_CHUNK, BLOCK=_PIX_BLOCK, ACC=tl_acc(grid.dtype),
            num_warps=4)
    grad_grid = grid.new_empty((0,))
    if grid_requires_grad:
        grad_grid = torch.zeros((n, h, w, 2), dtype=acc, device=device) if not live else \
            torch.empty((n, h, w, 2), dtype=acc, device=device)
        nblk = triton.cdiv(h * w, _CELL_BLOCK)
        for gi, group in enumerate(_groups(live)):
            per_map = []
            for i in group:
                d = info[i]
                per_map.append((d["hf"], d["wf"], d["nchunk"], d["gco"], _window_len(h, d["hf"], nearest),
                                _window_len(w, d["wf"], nearest)))
            wrap_triton(warp_features_grid_grad_kernel)[(n * nblk,)](
                gc, grad_grid, h, w, nblk, *_pad(per_map, per_map[0]), NUM=len(group), ACCUMULATE=gi > 0,
                NEAREST=nearest, BLOCK=_CELL_BLOCK, ACC=tl_acc(grid.dtype), num_warps=4)
    grad_features = []
    if features_requires_grad:
        grad_features = [f.new_empty((n,) + tuple(f.shape[1:]))
                         for f in features]
        live_out = [i for i in range(len(features)) if grad_features[i].numel() > 0]
        for group in _groups(live_out):
            per_map, start = [], 0
            for i in group:
                total = grad_features[i].numel()
                per_map.append((grad_features[i], total, info[i]["gfo"], start))
                start += triton.cdiv(total, _BLOCK)
            filler = per_map[0][:-1] + (start,)
            wrap_triton(warp_features_cast_kernel)[(start,)](gf, *_pad(per_map, filler), NUM=len(group),
                                                             BLOCK=_BLOCK, num_warps=4)
    return grad_features, grad_grid
