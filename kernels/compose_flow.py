"""Triton kernels of ``compose_flow`` (mask logits (N, K1, H, W), shifts (N, K1, 2), correction
(N, 2, H, W)) -> the sampling grid (N, H, W, 2).

forward: one program per (n, block of pixels) holds the block's K1 x BLOCK_P logits tile, takes
  the softmax down the K1 axis and the shift-weighted sum, adds the correction and the identity
  grid and stores (x, y) pairs. Memory traffic: read N*K1*HW logits (+ 2*N*HW correction), write
  2*N*HW; the reference also writes and re-reads the softmax, a (N, K1, 2, H, W) product and the
  flow before the permute.
backward: the same tile, softmax recomputed; writes grad_logits (N*K1*HW) and one (K1, 2)
  partial kp_shift gradient per program, summed by the launcher (a tiny torch reduction:
  deterministic, no atomics). The correction's gradient is grad_grid itself (a view).
Launches: forward 1; backward 1 + the partial sum.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from fastmotion.kernels._common import acc_dtype, grid_args, grid_consts, grid_coord, tl_acc


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
    w_m1, h_m1, x_on, y_on = grid_args(h, w).values()
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
