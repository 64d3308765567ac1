"""Triton kernels of the heatmap-moments op (keypoint mean and covariance of a softmax heatmap).

Forward: one program per row (one keypoint's H*W logits). A single pass over the row in
BLOCK-sized chunks keeps a running (max, sum, mean, centred scatter) and merges each chunk
into it with Chan's parallel update, rescaled by exp(old_max - new_max): the online softmax
of flash-attention, extended to first and second moments. Neither the softmax heatmap nor
the (H, W, 2, 2) products of the original are ever written.
Memory traffic: read N*K*H*W logits once, write N*K*(2+4+1) statistics.

Backward: dL/dl_i = (1/T) p_i (f(g_i) - fbar) where f is a quadratic in the pixel coordinate
and fbar follows from the forward's outputs (see csrc/include/fastmotion/heatmap_moments.h),
so it is one elementwise pass: read the logits once, write the gradient once, with p_i
recomputed from the saved log-sum-exp (nothing of size H*W saved).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

HEATMAP_EPS = 1e-7
MAX_BLOCK = 4096


@triton.jit
def _axis_coord(idx, size_m1, on):
    # 2 * (i / (n - 1)) - 1, or 0 on a single-pixel axis (on == 0, size_m1 == 1).
    return (2.0 * (idx / size_m1) - 1.0) * on


@triton.jit
def heatmap_moments_fwd_kernel(logits_ptr, mean_ptr, var_ptr, lse_ptr, HW, W, inv_t, w_m1, h_m1,
                               x_on, y_on, eps_hw, ex2, ey2, BLOCK: tl.constexpr, ACC: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * HW
    neg_inf = float("-inf")
    zero = tl.zeros([BLOCK], dtype=ACC)
    run_max = tl.max(zero, 0) + neg_inf
    run_sum = tl.sum(zero, 0)
    run_mx = run_sum
    run_my = run_sum
    run_cxx = run_sum
    run_cxy = run_sum
    run_cyy = run_sum
    for start in range(0, HW, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        valid = offs < HW
        l = tl.load(base + offs, mask=valid, other=neg_inf).to(ACC) * inv_t
        x = _axis_coord((offs % W).to(ACC), w_m1, x_on)
        y = _axis_coord((offs // W).to(ACC), h_m1, y_on)
        blk_max = tl.max(l, 0)
        blk_ref = tl.where(blk_max == neg_inf, 0.0, blk_max)
        e = tl.exp(l - blk_ref)
        blk_sum = tl.sum(e, 0)
        blk_div = tl.where(blk_sum == 0.0, 1.0, blk_sum)
        blk_mx = tl.sum(e * x, 0) / blk_div
        blk_my = tl.sum(e * y, 0) / blk_div
        dx = x - blk_mx
        dy = y - blk_my
        blk_cxx = tl.sum(e * dx * dx, 0)
        blk_cxy = tl.sum(e * dx * dy, 0)
        blk_cyy = tl.sum(e * dy * dy, 0)
        # Chan's merge of (run_*) and (blk_*), both rescaled to the larger max.
        # An empty state (sum 0: only -inf logits so far) takes no part in the max.
        new_max = tl.where(blk_sum == 0.0, run_max, tl.where(run_sum == 0.0, blk_ref, tl.maximum(run_max, blk_ref)))
        a = tl.where(run_sum == 0.0, 0.0, tl.exp(run_max - new_max))
        b = tl.where(blk_sum == 0.0, 0.0, tl.exp(blk_ref - new_max))
        sa = run_sum * a
        sb = blk_sum * b
        tot = sa + sb
        rb = sb / tl.where(tot == 0.0, 1.0, tot)
        ddx = blk_mx - run_mx
        ddy = blk_my - run_my
        f = sa * rb
        run_mx = run_mx + ddx * rb
        run_my = run_my + ddy * rb
        run_cxx = run_cxx * a + blk_cxx * b + f * ddx * ddx
        run_cxy = run_cxy * a + blk_cxy * b + f * ddx * ddy
        run_cyy = run_cyy * a + blk_cyy * b + f * ddy * ddy
        run_sum = tot
        run_max = new_max
    inv = 1.0 / run_sum
    vxx = run_cxx * inv + eps_hw * (ex2 + run_mx * run_mx)
    vxy = run_cxy * inv + eps_hw * (run_mx * run_my)
    vyy = run_cyy * inv + eps_hw * (ey2 + run_my * run_my)
    tl.store(mean_ptr + row * 2, run_mx)
    tl.store(mean_ptr + row * 2 + 1, run_my)
    tl.store(var_ptr + row * 4, vxx)
    tl.store(var_ptr + row * 4 + 1, vxy)
    tl.store(var_ptr + row * 4 + 2, vxy)
    tl.store(var_ptr + row * 4 + 3, vyy)
    tl.store(lse_ptr + row, run_max + tl.log(run_sum))


@triton.jit
def heatmap_moments_bwd_kernel(logits_ptr, grad_ptr, mean_ptr, var_ptr, lse_ptr, gmean_ptr, gvar_ptr,
                               HW, W, inv_t, w_m1, h_m1, x_on, y_on, eps_hw, ex2, ey2,
                               BLOCK: tl.constexpr, ACC: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    mx = tl.load(mean_ptr + row * 2).to(ACC)
    my = tl.load(mean_ptr + row * 2 + 1).to(ACC)
    g00 = tl.load(gvar_ptr + row * 4).to(ACC)
    g01 = tl.load(gvar_ptr + row * 4 + 1).to(ACC)
    g10 = tl.load(gvar_ptr + row * 4 + 2).to(ACC)
    g11 = tl.load(gvar_ptr + row * 4 + 3).to(ACC)
    gmx = tl.load(gmean_ptr + row * 2).to(ACC)
    gmy = tl.load(gmean_ptr + row * 2 + 1).to(ACC)
    lse = tl.load(lse_ptr + row).to(ACC)
    gv_var = (g00 * tl.load(var_ptr + row * 4) + g01 * tl.load(var_ptr + row * 4 + 1)
              + g10 * tl.load(var_ptr + row * 4 + 2) + g11 * tl.load(var_ptr + row * 4 + 3))
    c = 1.0 - eps_hw
    qxy = g01 + g10
    ax = gmx - c * (2.0 * g00 * mx + qxy * my)
    ay = gmy - c * (qxy * mx + 2.0 * g11 * my)
    m_gv_m = g00 * mx * mx + qxy * mx * my + g11 * my * my
    fbar = gmx * mx + gmy * my + gv_var - c * m_gv_m - eps_hw * (g00 * ex2 + g11 * ey2)

    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    valid = offs < HW
    l = tl.load(logits_ptr + row * HW + offs, mask=valid, other=0.0).to(ACC) * inv_t
    x = _axis_coord((offs % W).to(ACC), w_m1, x_on)
    y = _axis_coord((offs // W).to(ACC), h_m1, y_on)
    p = tl.exp(l - lse)
    f = ax * x + ay * y + g00 * x * x + qxy * x * y + g11 * y * y
    grad = p * (f - fbar) * inv_t
    tl.store(grad_ptr + row * HW + offs, grad.to(grad_ptr.dtype.element_ty), mask=valid)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _grid_constants(h: int, w: int):
    ex2 = (w + 1) / (3.0 * (w - 1)) if w > 1 else 0.0
    ey2 = (h + 1) / (3.0 * (h - 1)) if h > 1 else 0.0
    return dict(w_m1=float(max(w - 1, 1)), h_m1=float(max(h - 1, 1)), x_on=1.0 if w > 1 else 0.0,
                y_on=1.0 if h > 1 else 0.0, eps_hw=HEATMAP_EPS * h * w, ex2=ex2, ey2=ey2)


def _block(hw: int) -> int:
    return min(MAX_BLOCK, triton.next_power_of_2(max(hw, 16)))


def _tl_acc(acc: torch.dtype):
    return tl.float64 if acc == torch.float64 else tl.float32


def heatmap_moments_forward(logits: torch.Tensor, temperature: float):
    """logits ``(R, H, W)`` -> mean ``(R, 2)``, var ``(R, 2, 2)``, lse ``(R,)`` in fp32 (fp64 for fp64)."""
    logits = logits.contiguous()
    rows, h, w = logits.shape
    acc = _acc_dtype(logits.dtype)
    mean = logits.new_empty((rows, 2), dtype=acc)
    var = logits.new_empty((rows, 2, 2), dtype=acc)
    lse = logits.new_empty((rows,), dtype=acc)
    if rows == 0:
        return mean, var, lse
    block = _block(h * w)
    wrap_triton(heatmap_moments_fwd_kernel)[(rows,)](
        logits, mean, var, lse, h * w, w, 1.0 / temperature, **_grid_constants(h, w),
        BLOCK=block, ACC=_tl_acc(acc), num_warps=8 if block >= 2048 else 4)
    return mean, var, lse


def heatmap_moments_backward(grad_mean, grad_var, logits, mean, var, lse, temperature: float):
    """Gradient of the logits ``(R, H, W)`` given the forward's statistics and their gradients."""
    logits = logits.contiguous()
    rows, h, w = logits.shape
    grad = torch.empty_like(logits)
    if rows == 0:
        return grad
    hw = h * w
    block = min(1024, triton.next_power_of_2(max(hw, 16)))
    wrap_triton(heatmap_moments_bwd_kernel)[(rows, triton.cdiv(hw, block))](
        logits, grad, mean.contiguous(), var.contiguous(), lse.contiguous(), grad_mean.contiguous(),
        grad_var.contiguous(), hw, w, 1.0 / temperature, **_grid_constants(h, w),
        BLOCK=block, ACC=_tl_acc(mean.dtype), num_warps=4)
    return grad
