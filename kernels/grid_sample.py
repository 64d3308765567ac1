"""Triton kernels of grid_sample (F.grid_sample for 4-D input), forward and backward.

Layout: a program owns BLOCK_P output pixels of one image (a run of the flattened Ho*Wo
pixels) and a range of channels. It computes the pixels' taps once (sampling math in
kernels/sampling.py, which mirrors csrc/include/fastmotion/sampling.h) and then walks its
channels BLOCK_C at a time on [BLOCK_P, BLOCK_C] tiles. Strides are arguments, so NCHW
(pixel-contiguous: lanes run along pixels, output stores are coalesced and the taps of
neighbouring pixels hit neighbouring addresses) and channels-last inputs (channel-contiguous:
vectorized loads along channels) share one kernel; Triton specializes the unit strides.

Memory traffic (what must move, per call; B = bytes per element, P = Ho*Wo):
  forward:  read input N*C*H*W*B (each element ~once for a smooth flow; taps shared by
            neighbours hit L1/L2) + grid N*P*2*B, write output N*C*P*B.
            (32, 64, 64, 64) fp32: 32 + 1 + 32 MiB = 65 MiB.
  backward: read grad_out N*C*P*B, input N*C*H*W*B, grid N*P*2*B; write grad_input
            N*C*H*W*B and grad_grid N*P*2*B (plus zero-filling grad_input: N*C*H*W*4).
            (32, 64, 64, 64) fp32: 96 + 2 MiB. Input gradients are scattered with relaxed
            float atomics into a zero-filled float32 buffer (the tap positions are
            data-dependent, so no program owns an input pixel; see fastmotion/ops/grid_sample.py
            for the measured alternatives); in deterministic mode they are gathered instead
            (grid_sample_gather_kernel below). The grid gradient needs all channels of a pixel: the
            program sums over its channel range in registers (no atomics); when channels are
            split over several programs (small batches), each writes its partial sum to its own
            slot and the slots are added in a fixed order afterwards.

Status on GPU (H200, one run): the scatter kernels pass all tests on CUDA tensors. Their speed
is not known: the one timing taken called these launchers directly with torch's wrap_triton
switch on, so every launch went through its tracing higher-order op, whose eager cost is in
those numbers. The public op now launches them with the switch off (fastmotion/ops/_eager.py);
bench/test_grid_sample.py measures them (providers triton, triton-gather). The gather kernels
have run only under TRITON_INTERPRET=1 so far.

Rounding follows PyTorch's CPU kernel (fma where its AVX2 build has one); kernels are
launched with enable_fp_fusion=False so the compiler adds no other fused operations.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from fastmotion.kernels._common import acc_dtype, load_corners, tl_acc
from fastmotion.kernels.sampling import bilinear_taps, grid_coordinate, grid_coordinate_with_grad, nearest_tap

MODE_BILINEAR = 0
MODE_NEAREST = 1


@triton.jit
def _px(v, CL: tl.constexpr):
    """A per-pixel vector as a column of the [pixels, channels] tile (channels-last) or a row
    of the [channels, pixels] tile (NCHW): the contiguous dimension is always the last one, so
    Triton's default layout puts consecutive lanes on consecutive addresses."""
    if CL:
        return v[:, None]
    else:
        return v[None, :]


@triton.jit
def _ch(v, CL: tl.constexpr):
    """A per-channel vector in the tile orientation of _px."""
    if CL:
        return v[None, :]
    else:
        return v[:, None]


@triton.jit
def _program_pixels(grid_ptr, C, P, c_per_prog, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    # this program's sample n, channel split and range, and block of output pixels with their grid values
    pid_p = tl.program_id(0)
    n = tl.program_id(1).to(tl.int64)
    split = tl.program_id(2)
    c_begin = split * c_per_prog
    c_end = tl.minimum(c_begin + c_per_prog, C)
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = offs_p < P
    g_base = grid_ptr + n * P * 2
    gx = tl.load(g_base + offs_p * 2, mask=pmask, other=0.0).to(ACC)
    gy = tl.load(g_base + offs_p * 2 + 1, mask=pmask, other=0.0).to(ACC)
    return n, split, c_begin, c_end, offs_p, pmask, gx, gy


@triton.jit
def _bilinear_px(x, y, W, H, s_in_h, s_in_w, pmask, CL: tl.constexpr):
    """bilinear_taps of the block's pixels, in the tile orientation: the north-west tap's offset,
    the four taps' masks and weights (nw, ne, sw, se); and fx, fy, 1 - fx, 1 - fy."""
    x0, y0, fx, fy, in_w, in_e, in_n, in_s = bilinear_taps(x, y, W, H)
    ex = 1.0 - fx
    sy = 1.0 - fy
    return (_px(y0 * s_in_h + x0 * s_in_w, CL), _px(pmask & in_w & in_n, CL), _px(pmask & in_e & in_n, CL),
            _px(pmask & in_w & in_s, CL), _px(pmask & in_e & in_s, CL), _px(sy * ex, CL), _px(sy * fx, CL),
            _px(fy * ex, CL), _px(fy * fx, CL), fx, fy, ex, sy)


@triton.jit
def _nearest_px(x, y, W, H, s_in_h, s_in_w, pmask, CL: tl.constexpr):
    """nearest_tap of the block's pixels, in the tile orientation: its offset and mask."""
    xi, yi, ok = nearest_tap(x, y, W, H)
    return _px(yi * s_in_h + xi * s_in_w, CL), _px(pmask & ok, CL)


@triton.jit
def grid_sample_fwd_kernel(in_ptr, grid_ptr, out_ptr, C, H, W, P, c_per_prog,
                           s_in_n, s_in_c, s_in_h, s_in_w, s_out_n, s_out_c, s_out_p,
                           align, padding,
                           MODE: tl.constexpr, CL: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr,
                           ACC: tl.constexpr):
    n, split, c_begin, c_end, offs_p, pmask, gx, gy = _program_pixels(grid_ptr, C, P, c_per_prog, BLOCK_P, ACC)
    x = grid_coordinate(gx, W, align, padding)
    y = grid_coordinate(gy, H, align, padding)
    in_base = in_ptr + n * s_in_n
    out_base = out_ptr + n * s_out_n
    out_p = _px(offs_p * s_out_p, CL)
    pm = _px(pmask, CL)
    if MODE == 0:
        off, m_nw, m_ne, m_sw, m_se, w_nw, w_ne, w_sw, w_se, fx, fy, ex, sy = _bilinear_px(x, y, W, H, s_in_h, s_in_w,
                                                                                          pmask, CL)
        for c0 in range(c_begin, c_end, BLOCK_C):
            cc = c0 + tl.arange(0, BLOCK_C)
            cmask = _ch(cc < c_end, CL)
            v_nw, v_ne, v_sw, v_se = load_corners(in_base + off + _ch(cc * s_in_c, CL), s_in_h, s_in_w, m_nw & cmask,
                                                  m_ne & cmask, m_sw & cmask, m_se & cmask, ACC)
            # PyTorch's order: ((nw + ne) + sw) + se, each sum fused with its product
            o = tl.fma(v_se, w_se + tl.zeros_like(v_se),
                       tl.fma(v_sw, w_sw + tl.zeros_like(v_sw), tl.fma(v_ne, w_ne + tl.zeros_like(v_ne), v_nw * w_nw)))
            tl.store(out_base + out_p + _ch(cc * s_out_c, CL), o.to(out_ptr.dtype.element_ty), mask=pm & cmask)
    else:
        off, m = _nearest_px(x, y, W, H, s_in_h, s_in_w, pmask, CL)
        for c0 in range(c_begin, c_end, BLOCK_C):
            cc = c0 + tl.arange(0, BLOCK_C)
            cmask = _ch(cc < c_end, CL)
            v = tl.load(in_base + off + _ch(cc * s_in_c, CL), mask=m & cmask, other=0.0)
            tl.store(out_base + out_p + _ch(cc * s_out_c, CL), v.to(out_ptr.dtype.element_ty), mask=pm & cmask)


@triton.jit
def grid_sample_bwd_kernel(gout_ptr, in_ptr, grid_ptr, gin_ptr, ggrid_ptr, C, H, W, P, c_per_prog,
                           s_in_n, s_in_c, s_in_h, s_in_w, s_out_n, s_out_c, s_out_p, ggrid_split_stride,
                           align, padding,
                           MODE: tl.constexpr, CL: tl.constexpr, INPUT_GRAD: tl.constexpr, GRID_GRAD: tl.constexpr,
                           BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """grad_input (float32/float64 buffer with the input's strides, zero-filled) += scatter;
    ggrid slot program_id(2) (N*P*2, ACC) = this channel range's share of d loss / d grid."""
    n, split, c_begin, c_end, offs_p, pmask, gx, gy = _program_pixels(grid_ptr, C, P, c_per_prog, BLOCK_P, ACC)
    in_base = in_ptr + n * s_in_n
    gin_base = gin_ptr + n * s_in_n
    gout_base = gout_ptr + n * s_out_n
    out_p = _px(offs_p * s_out_p, CL)
    pm = _px(pmask, CL)
    if MODE == 0:
        x, dx = grid_coordinate_with_grad(gx, W, align, padding)
        y, dy = grid_coordinate_with_grad(gy, H, align, padding)
        off, m_nw, m_ne, m_sw, m_se, w_nw, w_ne, w_sw, w_se, fx, fy, ex, sy = _bilinear_px(x, y, W, H, s_in_h, s_in_w,
                                                                                          pmask, CL)
        fx2 = _px(fx, CL)
        fy2 = _px(fy, CL)
        ex2 = _px(ex, CL)
        sy2 = _px(sy, CL)
        if CL:
            acc_x = tl.zeros([BLOCK_P, BLOCK_C], dtype=ACC)
        else:
            acc_x = tl.zeros([BLOCK_C, BLOCK_P], dtype=ACC)
        acc_y = tl.zeros_like(acc_x)
        for c0 in range(c_begin, c_end, BLOCK_C):
            cc = c0 + tl.arange(0, BLOCK_C)
            cmask = _ch(cc < c_end, CL)
            g = tl.load(gout_base + out_p + _ch(cc * s_out_c, CL), mask=pm & cmask, other=0.0).to(ACC)
            ptr_off = off + _ch(cc * s_in_c, CL)
            if GRID_GRAD:
                v_nw, v_ne, v_sw, v_se = load_corners(in_base + ptr_off, s_in_h, s_in_w, m_nw & cmask, m_ne & cmask,
                                                      m_sw & cmask, m_se & cmask, ACC)
                acc_x += ((v_ne - v_nw) * sy2 + (v_se - v_sw) * fy2) * g
                acc_y += ((v_sw - v_nw) * ex2 + (v_se - v_ne) * fx2) * g
            if INPUT_GRAD:
                gptr = gin_base + ptr_off
                tl.atomic_add(gptr, w_nw * g, mask=m_nw & cmask, sem="relaxed")
                tl.atomic_add(gptr + s_in_w, w_ne * g, mask=m_ne & cmask, sem="relaxed")
                tl.atomic_add(gptr + s_in_h, w_sw * g, mask=m_sw & cmask, sem="relaxed")
                tl.atomic_add(gptr + s_in_h + s_in_w, w_se * g, mask=m_se & cmask, sem="relaxed")
        if GRID_GRAD:
            if CL:
                sx = tl.sum(acc_x, axis=1) * dx
                sy_ = tl.sum(acc_y, axis=1) * dy
            else:
                sx = tl.sum(acc_x, axis=0) * dx
                sy_ = tl.sum(acc_y, axis=0) * dy
            gg_base = ggrid_ptr + split.to(tl.int64) * ggrid_split_stride + n * P * 2
            tl.store(gg_base + offs_p * 2, sx, mask=pmask)
            tl.store(gg_base + offs_p * 2 + 1, sy_, mask=pmask)
    else:
        x = grid_coordinate(gx, W, align, padding)
        y = grid_coordinate(gy, H, align, padding)
        off, m = _nearest_px(x, y, W, H, s_in_h, s_in_w, pmask, CL)
        for c0 in range(c_begin, c_end, BLOCK_C):
            cc = c0 + tl.arange(0, BLOCK_C)
            cmask = _ch(cc < c_end, CL)
            g = tl.load(gout_base + out_p + _ch(cc * s_out_c, CL), mask=pm & cmask, other=0.0).to(ACC)
            tl.atomic_add(gin_base + off + _ch(cc * s_in_c, CL), g, mask=m & cmask, sem="relaxed")


# ----------------------------------------------------------------------------------------------
# Deterministic input gradient: a gather, no atomics.
#
# No program owns an input pixel in the scatter above, because the taps depend on the data. The
# gather makes the ownership explicit: (1) per output pixel, its sampling coordinate and the key
# of the input cell its taps touch (bilinear: the north-west tap, one of (H+1) x (W+1) cells
# including the row and column -1; nearest: its pixel); (2) a stable sort of each image's output
# pixels by key and the start of every cell in that order (torch.sort / torch.searchsorted);
# (3) per input pixel, the output pixels of the (up to) four cells whose taps include it, in that
# fixed order: each weight is recomputed from the stored coordinate exactly as the scatter
# computes it, and the sums go straight into grad_input in the input's dtype (no zero fill, no
# float32 scratch). The same input always gives the same bits.
# Traffic, (32, 64, 64, 64) fp32: grad_out 32 MiB read (each output pixel by up to four input
# pixels, mostly from cache for a smooth flow: the sort keeps neighbours together), grad_input
# 32 MiB written once, plus ~16 bytes per output pixel of keys, order and coordinates.


@triton.jit
def grid_sample_cells_kernel(grid_ptr, coord_ptr, key_ptr, H, W, P, align, padding,
                             MODE: tl.constexpr, BLOCK: tl.constexpr, ACC: tl.constexpr):
    """Per output pixel: its sampling coordinate as the backward uses it, and its cell key
    (the number of cells when no tap is inside: out of range, NaN, inf)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    n = tl.program_id(1).to(tl.int64)
    m = offs < P
    g_base = grid_ptr + n * P * 2
    gx = tl.load(g_base + offs * 2, mask=m, other=0.0).to(ACC)
    gy = tl.load(g_base + offs * 2 + 1, mask=m, other=0.0).to(ACC)
    if MODE == 0:
        x, dx = grid_coordinate_with_grad(gx, W, align, padding)
        y, dy = grid_coordinate_with_grad(gy, H, align, padding)
        x0, y0, fx, fy, in_w, in_e, in_n, in_s = bilinear_taps(x, y, W, H)
        ok = (in_w | in_e) & (in_n | in_s)  # then (x0, y0) = floor(x, y), in [-1, W-1] x [-1, H-1]
        key = tl.where(ok, (y0 + 1) * (W + 1) + (x0 + 1), (H + 1) * (W + 1))
    else:
        x = grid_coordinate(gx, W, align, padding)
        y = grid_coordinate(gy, H, align, padding)
        xi, yi, ok = nearest_tap(x, y, W, H)
        key = tl.where(ok, yi * W + xi, H * W)
    if MODE == 0:  # nearest: weight 1, the gather needs no coordinate
        c_base = coord_ptr + n * P * 2
        tl.store(c_base + offs * 2, x, mask=m)
        tl.store(c_base + offs * 2 + 1, y, mask=m)
    tl.store(key_ptr + n * P + offs, key.to(tl.int32), mask=m)


@triton.jit
def _gather_cell(acc, cc, cmask, qmask, key, start_base, order_base, coord_base, gout_base, s_out_c, s_out_p,
                 EAST: tl.constexpr, SOUTH: tl.constexpr, MODE: tl.constexpr):
    """acc [BLOCK_C, BLOCK_Q] += the contributions of the output pixels of cell ``key`` (one per
    input pixel) to the corner (EAST, SOUTH) of their taps, in sorted order."""
    s = tl.load(start_base + key, mask=qmask, other=0)
    cnt = tl.load(start_base + key + 1, mask=qmask, other=0) - s
    for j in range(0, tl.max(cnt, axis=0)):
        valid = qmask & (j < cnt)
        p = tl.load(order_base + s + j, mask=valid, other=0)
        g = tl.load(gout_base + cc[:, None] * s_out_c + p[None, :] * s_out_p, mask=cmask[:, None] & valid[None, :],
                    other=0.0).to(acc.dtype)
        if MODE == 0:
            x = tl.load(coord_base + p * 2, mask=valid, other=0.0)
            y = tl.load(coord_base + p * 2 + 1, mask=valid, other=0.0)
            fx = x - tl.floor(x)
            fy = y - tl.floor(y)
            if EAST:
                wx = fx
            else:
                wx = 1.0 - fx
            if SOUTH:
                wy = fy
            else:
                wy = 1.0 - fy
            acc += (wy * wx)[None, :] * g  # the scatter's weights: nw = (1-fy)(1-fx), ne = (1-fy) fx, ...
        else:
            acc += g
    return acc


@triton.jit
def grid_sample_gather_kernel(gout_ptr, coord_ptr, order_ptr, start_ptr, gin_ptr, C, H, W, P, n_cells, c_per_prog,
                              s_gin_n, s_gin_c, s_gin_h, s_gin_w, s_out_n, s_out_c, s_out_p,
                              MODE: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, ACC: tl.constexpr):
    """grad_input[n, c, y, x] for a block of input pixels q = y * W + x and a channel range."""
    q = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    n = tl.program_id(1).to(tl.int64)
    c_begin = tl.program_id(2) * c_per_prog
    c_end = tl.minimum(c_begin + c_per_prog, C)
    qmask = q < H * W
    yq = q // W
    xq = q % W
    start_base = start_ptr + n * (n_cells + 1)
    order_base = order_ptr + n * P
    coord_base = coord_ptr + n * P * 2
    gout_base = gout_ptr + n * s_out_n
    gin_off = yq.to(tl.int64) * s_gin_h + xq.to(tl.int64) * s_gin_w
    for c0 in range(c_begin, c_end, BLOCK_C):
        cc = c0 + tl.arange(0, BLOCK_C)
        cmask = cc < c_end
        acc = tl.zeros([BLOCK_C, BLOCK_Q], dtype=ACC)
        if MODE == 0:
            # the cells whose north-west / north-east / south-west / south-east tap is (yq, xq)
            row = (yq + 1) * (W + 1)
            acc = _gather_cell(acc, cc, cmask, qmask, row + xq + 1, start_base, order_base, coord_base, gout_base,
                               s_out_c, s_out_p, False, False, MODE)
            acc = _gather_cell(acc, cc, cmask, qmask, row + xq, start_base, order_base, coord_base, gout_base,
                               s_out_c, s_out_p, True, False, MODE)
            row = yq * (W + 1)
            acc = _gather_cell(acc, cc, cmask, qmask, row + xq + 1, start_base, order_base, coord_base, gout_base,
                               s_out_c, s_out_p, False, True, MODE)
            acc = _gather_cell(acc, cc, cmask, qmask, row + xq, start_base, order_base, coord_base, gout_base,
                               s_out_c, s_out_p, True, True, MODE)
        else:
            acc = _gather_cell(acc, cc, cmask, qmask, q, start_base, order_base, coord_base, gout_base,
                               s_out_c, s_out_p, False, False, MODE)
        tl.store(gin_ptr + n * s_gin_n + cc[:, None].to(tl.int64) * s_gin_c + gin_off[None, :],
                 acc.to(gin_ptr.dtype.element_ty), mask=cmask[:, None] & qmask[None, :])


def gather_input_grad() -> bool:
    """Whether the backward computes the input gradient by the gather: always under
    torch.use_deterministic_algorithms(True), or when FASTMOTION_GRID_SAMPLE_SCATTER=gather."""
    return torch.are_deterministic_algorithms_enabled() or os.environ.get("FASTMOTION_GRID_SAMPLE_SCATTER") == "gather"


def input_grad_by_gather(gout: torch.Tensor, input: torch.Tensor, grid: torch.Tensor, mode: int, padding_mode: int,
                         align_corners: bool, fmt) -> torch.Tensor:
    """d loss / d input (input's shape, dtype and memory format ``fmt``) of grid_sample by the
    gather above; ``gout`` in ``fmt``, ``grid`` contiguous (any float dtype: used in ACC)."""
    N, C, H, W = input.shape
    P = grid.shape[1] * grid.shape[2]
    acc_t, acc_tl = acc_dtype(input.dtype), tl_acc(input.dtype)
    coords = torch.empty((N, P, 2), device=input.device, dtype=acc_t)
    keys = torch.empty((N, P), device=input.device, dtype=torch.int32)
    block = 256
    wrap_triton(grid_sample_cells_kernel)[(triton.cdiv(P, block), N)](
        grid, coords, keys, H, W, P, int(bool(align_corners)), int(padding_mode),
        MODE=int(mode), BLOCK=block, ACC=acc_tl, enable_fp_fusion=False)
    n_cells = (H + 1) * (W + 1) if int(mode) == MODE_BILINEAR else H * W
    sorted_keys, order = torch.sort(keys, dim=1, stable=True)
    bounds = torch.arange(n_cells + 1, device=input.device, dtype=torch.int32).expand(N, n_cells + 1).contiguous()
    starts = torch.searchsorted(sorted_keys, bounds)
    gin = torch.empty(input.shape, device=input.device, dtype=input.dtype).contiguous(memory_format=fmt)
    block_q, block_c = 128, min(8, triton.next_power_of_2(max(C, 1)))
    split = _channel_split(N, H * W, C, block_q, block_c)
    cpp = _c_per_prog(C, split, block_c)
    split = triton.cdiv(C, cpp)
    o_n, o_c, o_p = _out_strides(gout)
    wrap_triton(grid_sample_gather_kernel)[(triton.cdiv(H * W, block_q), N, split)](
        gout, coords, order, starts, gin, C, H, W, P, n_cells, cpp,
        gin.stride(0), gin.stride(1), gin.stride(2), gin.stride(3), o_n, o_c, o_p,
        MODE=int(mode), BLOCK_Q=block_q, BLOCK_C=block_c, ACC=acc_tl, enable_fp_fusion=False)
    return gin


def _blocks(C: int, channels_last: bool):
    """(BLOCK_P, BLOCK_C): NCHW tiles are [BLOCK_C, BLOCK_P] with a warp's lanes on 32 consecutive
    pixels; channels-last tiles are [BLOCK_P, BLOCK_C] with lanes on consecutive channels."""
    if channels_last:
        block_c = min(32, triton.next_power_of_2(max(C, 1)))
        return max(16, 1024 // block_c), block_c
    block_c = min(8, triton.next_power_of_2(max(C, 1)))
    return (128 if block_c > 2 else 256), block_c


def _channel_split(N: int, P: int, C: int, block_p: int, block_c: int, target: int = 2048) -> int:
    """How many programs share one pixel block's channels: enough programs to fill the GPU when
    the batch is small, never less than one BLOCK_C per program."""
    programs = N * triton.cdiv(P, block_p)
    most = triton.cdiv(C, block_c)
    split = 1
    while split < most and programs * split < target:
        split *= 2
    return min(split, most)


def _c_per_prog(C: int, split: int, block_c: int) -> int:
    return triton.cdiv(triton.cdiv(C, split), block_c) * block_c


def _check_extent(input: torch.Tensor):
    per_image = 1
    for s, st in zip(input.shape[1:], input.stride()[1:]):
        per_image += (s - 1) * st
    if per_image >= 2**31:
        raise ValueError(f"grid_sample (triton): one image of input spans {per_image} elements; "
                         "the Triton kernels address an image with 32-bit offsets (use backend='cuda' or 'cpu')")


def _layout(input: torch.Tensor):
    """(input to use, channels_last) as the C++ kernels decide it."""
    cl = (not input.is_contiguous()) and input.is_contiguous(memory_format=torch.channels_last)
    return (input if cl else input.contiguous()), cl


def _out_strides(out: torch.Tensor):
    return out.stride(0), out.stride(1), out.stride(3)  # n, c, pixel (p = i * Wo + j, Wo-stride = stride(3))


def grid_sample_forward(input: torch.Tensor, grid: torch.Tensor, mode: int, padding_mode: int,
                        align_corners: bool, *, block_p: int | None = None, block_c: int | None = None,
                        num_warps: int = 4) -> torch.Tensor:
    """Forward launcher; the keyword-only block sizes override the defaults (for tuning)."""
    input, cl = _layout(input)
    _check_extent(input)
    grid = grid.contiguous()
    N, C, H, W = input.shape
    Ho, Wo = grid.shape[1], grid.shape[2]
    fmt = torch.channels_last if cl else torch.contiguous_format
    out = torch.empty((N, C, Ho, Wo), device=input.device, dtype=input.dtype, memory_format=fmt)
    P = Ho * Wo
    if out.numel() == 0:
        return out
    acc_tl = tl_acc(input.dtype)
    default_p, default_c = _blocks(C, cl)
    block_p, block_c = block_p or default_p, block_c or default_c
    split = _channel_split(N, P, C, block_p, block_c)
    cpp = _c_per_prog(C, split, block_c)
    split = triton.cdiv(C, cpp)
    o_n, o_c, o_p = _out_strides(out)
    wrap_triton(grid_sample_fwd_kernel)[(triton.cdiv(P, block_p), N, split)](
        input, grid, out, C, H, W, P, cpp, input.stride(0), input.stride(1), input.stride(2), input.stride(3),
        o_n, o_c, o_p, int(bool(align_corners)), int(padding_mode),
        MODE=int(mode), CL=cl, BLOCK_P=block_p, BLOCK_C=block_c, ACC=acc_tl, num_warps=num_warps,
        enable_fp_fusion=False)
    return out


def grid_sample_backward(grad_output: torch.Tensor, input: torch.Tensor, grid: torch.Tensor, mode: int,
                         padding_mode: int, align_corners: bool, input_requires_grad: bool,
                         grid_requires_grad: bool, *, block_p: int | None = None, block_c: int | None = None,
                         num_warps: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_input, grad_grid); a gradient that is not required is an empty tensor. The
    keyword-only block sizes override the defaults (for tuning)."""
    input, cl = _layout(input)
    _check_extent(input)
    grid = grid.contiguous()
    N, C, H, W = input.shape
    Ho, Wo = grid.shape[1], grid.shape[2]
    P = Ho * Wo
    fmt = torch.channels_last if cl else torch.contiguous_format
    gout = grad_output.contiguous(memory_format=fmt)
    acc_t, acc_tl = acc_dtype(input.dtype), tl_acc(input.dtype)
    grid_grad = bool(grid_requires_grad) and int(mode) == MODE_BILINEAR
    gathered = None
    if input_requires_grad and N * P and C and gather_input_grad():
        gathered = input_grad_by_gather(gout, input, grid, mode, padding_mode, align_corners, fmt)
        input_requires_grad = False  # the scatter below computes only the grid gradient
    gin = (torch.zeros(input.shape, device=input.device, dtype=acc_t).contiguous(memory_format=fmt)
           if input_requires_grad else input.new_empty((0,)))
    if not (N * P and C) or not (input_requires_grad or grid_grad):
        ggrid = torch.zeros_like(grid) if grid_requires_grad else grid.new_empty((0,))
        if gathered is not None:
            return gathered, ggrid
        return (gin.to(input.dtype) if input_requires_grad else gin), ggrid
    default_p, default_c = _blocks(C, cl)
    block_p, block_c = block_p or default_p, block_c or default_c
    split = _channel_split(N, P, C, block_p, block_c)
    cpp = _c_per_prog(C, split, block_c)
    split = triton.cdiv(C, cpp)
    slots = torch.empty((split, N, P, 2), device=input.device, dtype=acc_t) if grid_grad else gin
    o_n, o_c, o_p = _out_strides(gout)
    wrap_triton(grid_sample_bwd_kernel)[(triton.cdiv(P, block_p), N, split)](
        gout, input, grid, gin, slots, C, H, W, P, cpp, input.stride(0), input.stride(1), input.stride(2),
        input.stride(3), o_n, o_c, o_p, N * P * 2, int(bool(align_corners)), int(padding_mode),
        MODE=int(mode), CL=cl, INPUT_GRAD=bool(input_requires_grad), GRID_GRAD=grid_grad,
        BLOCK_P=block_p, BLOCK_C=block_c, ACC=acc_tl, num_warps=num_warps, enable_fp_fusion=False)
    if grid_requires_grad:
        ggrid = ((slots[0] if split == 1 else slots.sum(0)).to(grid.dtype).view(grid.shape) if grid_grad
                 else torch.zeros_like(grid))
    else:
        ggrid = grid.new_empty((0,))
    if gathered is not None:
        return gathered, ggrid
    if input_requires_grad and gin.dtype != input.dtype:
        gin = gin.to(input.dtype)
    return gin, ggrid
