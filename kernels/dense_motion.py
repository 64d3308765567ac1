"""Triton kernels of the dense-motion ops: ``compose_flow`` and ``shifted_warps``.

compose_flow (mask logits (N, K1, H, W), shifts (N, K1, 2), correction (N, 2, H, W)):
  forward: one program per (n, block of pixels) holds the block's K1 x BLOCK_P logits tile,
  takes the softmax down the K1 axis and the shift-weighted sum, adds the correction and the
  identity grid and stores (x, y) pairs. Memory traffic: read N*K1*HW logits (+ 2*N*HW
  correction), write 2*N*HW; the reference also writes and re-reads the softmax, a
  (N, K1, 2, H, W) product and the flow before the permute.
  backward: the same tile, softmax recomputed; writes grad_logits (N*K1*HW) and one
  (K1, 2) partial kp_shift gradient per program, summed by the launcher (a tiny torch
  reduction: deterministic, no atomics). The correction's gradient is grad_grid itself (a view).
  Launches: forward 1; backward 1 + the partial sum.

shifted_warps (source (N, C, H, W), shifts (N, K1, 2)) -> (N, K1, C, H, W):
  forward: one program per (n, k, block of pixels), looping over channels; per pixel the
  coordinate is computed exactly as the reference does (Monkey-Net grid + shift, then
  grid_sample's unnormalize) and the four taps are loaded with zero padding. Traffic: read the
  source (cached K1 times), write the output once; no repeated source, no grid.
  backward, kp_shift: one program per (n, k, block of pixels) reduces
  grad_out * d(sample)/d(shift) over its pixels and all channels into a partial (summed by the
  launcher). backward, source: one program per (n, c, block of source pixels) gathers, for every
  k, the <= 3x3 output pixels whose taps can reach it (a constant shift moves every pixel by the
  same offset, up to rounding) and keeps those whose exact taps do: the transposed stencil,
  no atomics. Launches: forward 1; backward 1 per requested gradient + the partial sum.

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

from fastmotion.kernels._common import (acc_dtype, aligned_corners, aligned_taps, corner_slopes, grid_consts,
                                         grid_coord, load_corners, tl_acc)


@triton.jit
def compose_flow_fwd_kernel(logits_ptr, shift_ptr, corr_ptr, out_ptr, K1, HW, W, w_m1, h_m1, x_on, y_on,
                            NBLK, HAS_CORR: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr,
                            ACC: tl.constexpr):
    w_m1, h_m1, x_on, y_on = grid_consts(w_m1, h_m1, x_on, y_on, ACC)
    pid = tl.program_id(0)
    n = (pid // NBLK).to(tl.int64)
    p = (pid % NBLK) * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < HW
    k = tl.arange(0, BLOCK_K)
    kmask = k < K1
    m2 = kmask[:, None] & pmask[None, :]
    l = tl.load(logits_ptr + n * K1 * HW + k[:, None] * HW + p[None, :], mask=m2, other=float("-inf")).to(ACC)
    sx = tl.load(shift_ptr + (n * K1 + k) * 2, mask=kmask, other=0.0).to(ACC)
    sy = tl.load(shift_ptr + (n * K1 + k) * 2 + 1, mask=kmask, other=0.0).to(ACC)
    mx = tl.max(l, 0)
    e = tl.exp(l - mx[None, :])
    e = tl.where(m2, e, 0.0)
    inv = 1.0 / tl.sum(e, 0)
    fx = tl.sum(e * sx[:, None], 0) * inv
    fy = tl.sum(e * sy[:, None], 0) * inv
    if HAS_CORR:
        fx = fx + tl.load(corr_ptr + n * 2 * HW + p, mask=pmask, other=0.0).to(ACC)
        fy = fy + tl.load(corr_ptr + n * 2 * HW + HW + p, mask=pmask, other=0.0).to(ACC)
    i = (p // W).to(ACC)
    j = (p % W).to(ACC)
    ox = fx + grid_coord(j, w_m1, x_on)
    oy = fy + grid_coord(i, h_m1, y_on)
    pair = tl.join(ox, oy).to(out_ptr.dtype.element_ty)  # (BLOCK_P, 2): x, y interleaved
    offs = (n * HW + p)[:, None] * 2 + tl.arange(0, 2)[None, :]
    tl.store(out_ptr + offs, pair, mask=pmask[:, None])


@triton.jit
def compose_flow_bwd_kernel(grad_ptr, logits_ptr, shift_ptr, glogits_ptr, partial_ptr, K1, HW, NBLK,
                            BLOCK_K: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr):
    pid = tl.program_id(0)
    n = (pid // NBLK).to(tl.int64)
    blk = pid % NBLK
    p = blk * BLOCK_P + tl.arange(0, BLOCK_P)
    pmask = p < HW
    k = tl.arange(0, BLOCK_K)
    kmask = k < K1
    m2 = kmask[:, None] & pmask[None, :]
    base = n * K1 * HW + k[:, None] * HW + p[None, :]
    l = tl.load(logits_ptr + base, mask=m2, other=float("-inf")).to(ACC)
    sx = tl.load(shift_ptr + (n * K1 + k) * 2, mask=kmask, other=0.0).to(ACC)
    sy = tl.load(shift_ptr + (n * K1 + k) * 2 + 1, mask=kmask, other=0.0).to(ACC)
    gx = tl.load(grad_ptr + (n * HW + p) * 2, mask=pmask, other=0.0).to(ACC)
    gy = tl.load(grad_ptr + (n * HW + p) * 2 + 1, mask=pmask, other=0.0).to(ACC)
    mx = tl.max(l, 0)
    e = tl.where(m2, tl.exp(l - mx[None, :]), 0.0)
    prob = e / tl.sum(e, 0)[None, :]
    prob = tl.where(m2, prob, 0.0)
    d = gx[None, :] * sx[:, None] + gy[None, :] * sy[:, None]  # dL/dp_k
    t = tl.sum(prob * d, 0)
    gl = prob * (d - t[None, :])
    tl.store(glogits_ptr + base, gl.to(glogits_ptr.dtype.element_ty), mask=m2)
    psx = tl.sum(prob * gx[None, :], 1)
    psy = tl.sum(prob * gy[None, :], 1)
    out = partial_ptr + ((n * NBLK + blk) * K1 + k) * 2
    tl.store(out, psx, mask=kmask)
    tl.store(out + 1, psy, mask=kmask)


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


def _axis(size: int):
    """(size - 1 as a float, 1.0 or 0.0 for a single-pixel axis) for grid_coord."""
    return float(max(size - 1, 1)), 1.0 if size > 1 else 0.0


def _compose_blocks(k1: int):
    block_k = max(2, triton.next_power_of_2(k1))  # >= 2: no size-1 tile axis
    block_p = max(16, min(256, 4096 // block_k))
    return block_k, block_p


def compose_flow_forward(mask_logits: torch.Tensor, kp_shift: torch.Tensor,
                         correction: torch.Tensor | None) -> torch.Tensor:
    """grid (N, H, W, 2) in mask_logits' dtype; kp_shift in the accumulation dtype."""
    logits = mask_logits.contiguous()
    n, k1, h, w = logits.shape
    out = logits.new_empty((n, h, w, 2))
    if out.numel() == 0:
        return out
    corr = correction.contiguous() if correction is not None else logits  # dummy pointer when absent
    block_k, block_p = _compose_blocks(k1)
    w_m1, x_on = _axis(w)
    h_m1, y_on = _axis(h)
    nblk = triton.cdiv(h * w, block_p)
    wrap_triton(compose_flow_fwd_kernel)[(nblk * n,)](
        logits, kp_shift.contiguous(), corr, out, k1, h * w, w, w_m1, h_m1, x_on, y_on, nblk,
        HAS_CORR=correction is not None, BLOCK_K=block_k, BLOCK_P=block_p, ACC=tl_acc(logits.dtype),
        num_warps=4)
    return out


def compose_flow_backward(grad_grid: torch.Tensor, mask_logits: torch.Tensor,
                          kp_shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_logits like mask_logits, grad_shift (N, K1, 2) in the accumulation dtype)."""
    logits = mask_logits.contiguous()
    n, k1, h, w = logits.shape
    acc = acc_dtype(logits.dtype)
    grad_logits = torch.empty_like(logits)
    if logits.numel() == 0:
        return grad_logits, kp_shift.new_zeros((n, k1, 2))
    block_k, block_p = _compose_blocks(k1)
    nblk = triton.cdiv(h * w, block_p)
    partial = logits.new_empty((n, nblk, k1, 2), dtype=acc)
    wrap_triton(compose_flow_bwd_kernel)[(nblk * n,)](
        grad_grid.contiguous(), logits, kp_shift.contiguous(), grad_logits, partial, k1, h * w, nblk,
        BLOCK_K=block_k, BLOCK_P=block_p, ACC=tl_acc(logits.dtype), num_warps=4)
    return grad_logits, partial.sum(dim=1)


_SW_BLOCK = 256


def shifted_warps_forward(source: torch.Tensor, kp_shift: torch.Tensor) -> torch.Tensor:
    n, c, h, w = source.shape
    k1 = kp_shift.shape[1]
    out = source.new_empty((n, k1, c, h, w))
    if out.numel() == 0:
        return out
    w_m1, x_on = _axis(w)
    h_m1, y_on = _axis(h)
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
    w_m1, x_on = _axis(w)
    h_m1, y_on = _axis(h)
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
