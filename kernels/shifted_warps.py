"""Triton kernels of ``shifted_warps`` (source (N, C, H, W), shifts (N, K1, 2)) -> (N, K1, C, H, W).

forward: one program per (n, k, block of pixels), looping over channels; per pixel the
  coordinate is computed exactly as the reference does (Monkey-Net grid + shift, then
  grid_sample's unnormalize) and the four taps are loaded with zero padding. Traffic: read the
  source (cached K1 times), write the output once; no repeated source, no grid.
backward, kp_shift: one program per (n, k, block of pixels) reduces grad_out * d(sample)/d(shift)
  over its pixels and all channels into a partial (summed by the launcher).
backward, source: one program per (n, c, block of source pixels) gathers, for every k, the
  <= 3x3 output pixels whose taps can reach it (a constant shift moves every pixel by the same
  offset, up to rounding) and keeps those whose exact taps do: the transposed stencil, no atomics.
Launches: forward 1; backward 1 per requested gradient + the partial sum.

Coordinates are computed per pixel in the reference's order of operations (Monkey-Net grid +
shift, then grid_sample's unnormalize), not as a constant pixel offset: the value is the same up
to rounding, but at exact integer positions (a zero shift) the floor() that picks the taps, and
with it the kp_shift gradient, must agree with the reference's.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from fastmotion.kernels._common import (acc_dtype, aligned_corners, aligned_taps, corner_slopes, grid_args, grid_consts,
                                        grid_coord, load_corners, tl_acc)


@triton.jit
def _shifted_taps(shift_ptr, nk, p, H, W, w_m1, h_m1, x_on, y_on, pmask, ACC: tl.constexpr):
    # aligned_corners of pixels p of the map shifted by keypoint nk, its coordinate computed as
    # the reference's: Monkey-Net grid + shift
    sx = tl.load(shift_ptr + nk * 2).to(ACC)
    sy = tl.load(shift_ptr + nk * 2 + 1).to(ACC)
    return aligned_corners(grid_coord((p % W).to(ACC), w_m1, x_on) + sx, grid_coord((p // W).to(ACC), h_m1, y_on) + sy,
                           W, H, pmask)


@triton.jit
def shifted_warps_fwd_kernel(src_ptr, shift_ptr, out_ptr, C, H, W, K1, s_n, s_c, s_h, s_w, w_m1, h_m1, x_on, y_on,
                             NBLK, BLOCK: tl.constexpr, ACC: tl.constexpr):
    w_m1, h_m1, x_on, y_on = grid_consts(w_m1, h_m1, x_on, y_on, ACC)
    pid = tl.program_id(0)
    nk = (pid // NBLK).to(tl.int64)
    n = nk // K1
    p = (pid % NBLK) * BLOCK + tl.arange(0, BLOCK)
    HW = H * W
    pmask = p < HW
    x0, y0, fx, fy, m00, m01, m10, m11 = _shifted_taps(shift_ptr, nk, p, H, W, w_m1, h_m1, x_on, y_on, pmask, ACC)
    nw = y0.to(tl.int64) * s_h + x0.to(tl.int64) * s_w
    w00 = (1.0 - fy) * (1.0 - fx)
    w01 = (1.0 - fy) * fx
    w10 = fy * (1.0 - fx)
    w11 = fy * fx
    src_n = src_ptr + n * s_n + nw
    out = out_ptr + nk * C * HW + p
    for c in range(0, C):
        v00, v01, v10, v11 = load_corners(src_n + c * s_c, s_h, s_w, m00, m01, m10, m11, ACC)
        v = w00 * v00 + w01 * v01 + w10 * v10 + w11 * v11
        tl.store(out + c * HW, v.to(out_ptr.dtype.element_ty), mask=pmask)


@triton.jit
def shifted_warps_bwd_shift_kernel(grad_ptr, src_ptr, shift_ptr, partial_ptr, C, H, W, K1, s_n, s_c, s_h, s_w, w_m1,
                                   h_m1, x_on, y_on, NBLK, BLOCK: tl.constexpr, ACC: tl.constexpr):
    w_m1, h_m1, x_on, y_on = grid_consts(w_m1, h_m1, x_on, y_on, ACC)
    pid = tl.program_id(0)
    nk = (pid // NBLK).to(tl.int64)
    blk = pid % NBLK
    n = nk // K1
    p = blk * BLOCK + tl.arange(0, BLOCK)
    HW = H * W
    pmask = p < HW
    x0, y0, fx, fy, m00, m01, m10, m11 = _shifted_taps(shift_ptr, nk, p, H, W, w_m1, h_m1, x_on, y_on, pmask, ACC)
    src_n = src_ptr + n * s_n + y0.to(tl.int64) * s_h + x0.to(tl.int64) * s_w
    g_nk = grad_ptr + nk * C * HW + p
    acc_x = tl.zeros([BLOCK], dtype=ACC)
    acc_y = tl.zeros([BLOCK], dtype=ACC)
    for c in range(0, C):
        v00, v01, v10, v11 = load_corners(src_n + c * s_c, s_h, s_w, m00, m01, m10, m11, ACC)
        g = tl.load(g_nk + c * HW, mask=pmask, other=0.0).to(ACC)
        dx, dy = corner_slopes(v00, v01, v10, v11, fx, fy)
        acc_x += g * dx
        acc_y += g * dy
    out = partial_ptr + (nk * NBLK + blk) * 2
    tl.store(out, tl.sum(acc_x, 0) * (0.5 * w_m1 * x_on))
    tl.store(out + 1, tl.sum(acc_y, 0) * (0.5 * h_m1 * y_on))


@triton.jit
def _transposed_weight(q, size, shift, size_m1, on, ACC: tl.constexpr, D: tl.constexpr):
    # For source index q, the D-th of three candidate output indices t (around q minus the
    # shift in pixels) and the weight with which t's exact taps reach q (0 if they don't).
    jc = tl.floor(q.to(ACC) - shift * 0.5 * size_m1 * on + 0.5).to(tl.int32)
    t = jc + (D - 1)
    t0, ft = aligned_taps(grid_coord(t.to(ACC), size_m1, on) + shift, size)
    w = tl.where(t0 == q, 1.0 - ft, tl.where(t0 + 1 == q, ft, 0.0))
    valid = (t >= 0) & (t < size)
    return t, tl.where(valid, w, 0.0), valid


@triton.jit
def shifted_warps_bwd_source_kernel(grad_ptr, shift_ptr, gsrc_ptr, C, H, W, K1, w_m1, h_m1, x_on, y_on,
                                    NBLK, BLOCK: tl.constexpr, ACC: tl.constexpr):
    w_m1, h_m1, x_on, y_on = grid_consts(w_m1, h_m1, x_on, y_on, ACC)
    pid = tl.program_id(0)
    nc = (pid // NBLK).to(tl.int64)
    n = nc // C
    c = nc % C
    p = (pid % NBLK) * BLOCK + tl.arange(0, BLOCK)
    HW = H * W
    pmask = p < HW
    r = p // W
    q = p % W
    acc = tl.zeros([BLOCK], dtype=ACC)
    for k in range(0, K1):
        nk = n * K1 + k
        sx = tl.load(shift_ptr + nk * 2).to(ACC)
        sy = tl.load(shift_ptr + nk * 2 + 1).to(ACC)
        g_base = grad_ptr + (nk * C + c) * HW
        ty0, wy0, vy0 = _transposed_weight(r, H, sy, h_m1, y_on, ACC, 0)
        ty1, wy1, vy1 = _transposed_weight(r, H, sy, h_m1, y_on, ACC, 1)
        ty2, wy2, vy2 = _transposed_weight(r, H, sy, h_m1, y_on, ACC, 2)
        tx0, wx0, vx0 = _transposed_weight(q, W, sx, w_m1, x_on, ACC, 0)
        tx1, wx1, vx1 = _transposed_weight(q, W, sx, w_m1, x_on, ACC, 1)
        tx2, wx2, vx2 = _transposed_weight(q, W, sx, w_m1, x_on, ACC, 2)
        for a in tl.static_range(3):
            if a == 0:
                ty, wy = ty0, wy0
            elif a == 1:
                ty, wy = ty1, wy1
            else:
                ty, wy = ty2, wy2
            row = g_base + ty.to(tl.int64) * W
            mrow = pmask & (wy != 0.0)
            acc += wy * (wx0 * tl.load(row + tx0, mask=mrow & (wx0 != 0.0), other=0.0).to(ACC)
                         + wx1 * tl.load(row + tx1, mask=mrow & (wx1 != 0.0), other=0.0).to(ACC)
                         + wx2 * tl.load(row + tx2, mask=mrow & (wx2 != 0.0), other=0.0).to(ACC))
    tl.store(gsrc_ptr + nc * HW + p, acc.to(gsrc_ptr.dtype.element_ty), mask=pmask)


_SW_BLOCK = 256


def shifted_warps_forward(source: torch.Tensor, kp_shift: torch.Tensor) -> torch.Tensor:
    n, c, h, w = source.shape
    k1 = kp_shift.shape[1]
    out = source.new_empty((n, k1, c, h, w))
    if out.numel() == 0:
        return out
    w_m1, h_m1, x_on, y_on = grid_args(h, w).values()
    nblk = triton.cdiv(h * w, _SW_BLOCK)
    wrap_triton(shifted_warps_fwd_kernel)[(nblk * n * k1,)](
        source, kp_shift.contiguous(), out, c, h, w, k1, *source.stride(), w_m1, h_m1, x_on, y_on, nblk,
        BLOCK=_SW_BLOCK, ACC=tl_acc(source.dtype), num_warps=4)
    return out


def shifted_warps_backward(grad_out: torch.Tensor, source: torch.Tensor, kp_shift: torch.Tensor,
                           source_requires_grad: bool,
                           kp_shift_requires_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    n, c, h, w = source.shape
    k1 = kp_shift.shape[1]
    acc = acc_dtype(source.dtype)
    grad_out = grad_out.contiguous()
    shift = kp_shift.contiguous()
    w_m1, h_m1, x_on, y_on = grid_args(h, w).values()
    empty = grad_out.numel() == 0
    nblk = triton.cdiv(h * w, _SW_BLOCK)
    if source_requires_grad:
        grad_source = torch.empty((n, c, h, w), dtype=source.dtype, device=source.device)
        if empty:
            grad_source.zero_()
        else:
            wrap_triton(shifted_warps_bwd_source_kernel)[(nblk * n * c,)](
                grad_out, shift, grad_source, c, h, w, k1, w_m1, h_m1, x_on, y_on, nblk,
                BLOCK=_SW_BLOCK, ACC=tl_acc(source.dtype), num_warps=4)
    else:
        grad_source = source.new_empty((0,))
    if kp_shift_requires_grad:
        if empty:
            grad_shift = shift.new_zeros((n, k1, 2))
        else:
            partial = shift.new_empty((n * k1, nblk, 2), dtype=acc)
            wrap_triton(shifted_warps_bwd_shift_kernel)[(nblk * n * k1,)](
                grad_out, source, shift, partial, c, h, w, k1, *source.stride(), w_m1, h_m1, x_on, y_on, nblk,
                BLOCK=_SW_BLOCK, ACC=tl_acc(source.dtype), num_warps=4)
            grad_shift = partial.sum(dim=1).view(n, k1, 2)
    else:
        grad_shift = shift.new_empty((0,))
    return grad_source, grad_shift
