"""Triton kernels of the heatmap-moments op (keypoint mean and covariance of a softmax heatmap).

Forward: one program per row (one keypoint's H*W logits). A single pass over the row in
BLOCK-sized chunks keeps a running (max, sum, mean, centred scatter) and merges each chunk
into it with Chan's parallel update, rescaled by exp(old_max - new_max): the online softmax
of flash-attention, extended to first and second moments. Neither the softmax heatmap nor
the (H, W, 2, 2) products of the original are ever written.
Memory traffic: read N*K*H*W logits once, write N*K*(2+4+1) statistics.

The detector's epilogue (clipping the covariance by its smallest singular value, or the
'single' isotropic reduction) runs in the same program on the row's statistics, so a call is
one launch forward and one backward (the unfused epilogue cost ~15 tiny launches each way).

Float scalar arguments are cast to the accumulation type on entry: torch.compile (inductor)
passes Python floats as fp64, which would otherwise turn the loop-carried state fp64. Triton
itself passes Python floats as fp32, so each goes as two fp32 halves (split_float / join_float) that add
up to its fp64 value in a fp64 kernel.

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

from fastmotion.kernels._common import (VAR_FIXED, VAR_MATRIX, VAR_SINGLE, acc_dtype, grid_args, grid_consts,
                                        grid_coord, join_float, split_float, tl_acc)

HEATMAP_EPS = 1e-7
MAX_BLOCK = 4096


@triton.jit
def _smallest_singular(a, b, c, d):
    # The original's formula (radicand clamped at 0); also returns the pieces its gradient needs.
    s1 = a * a + b * b + c * c + d * d
    u = a * a + b * b - c * c - d * d
    w = a * c + b * d
    s2 = tl.sqrt(u * u + 4.0 * w * w)
    sg = tl.sqrt(tl.maximum((s1 - s2) * 0.5, 0.0))
    return sg, u, w, s2


@triton.jit
def _join_scalars(inv_t, inv_t_lo, w_m1, h_m1, x_on, y_on, eps_hw, eps_hw_lo, ex2, ex2_lo, ey2, ey2_lo, clip, clip_lo,
                  ACC: tl.constexpr):
    # the float arguments that _scalars() split, back in ACC
    w_m1, h_m1, x_on, y_on = grid_consts(w_m1, h_m1, x_on, y_on, ACC)
    return (join_float(inv_t, inv_t_lo, ACC), w_m1, h_m1, x_on, y_on, join_float(eps_hw, eps_hw_lo, ACC),
            join_float(ex2, ex2_lo, ACC), join_float(ey2, ey2_lo, ACC), join_float(clip, clip_lo, ACC))


@triton.jit
def heatmap_moments_fwd_kernel(logits_ptr, mean_ptr, var_ptr, raw_ptr, lse_ptr, HW, W, inv_t, inv_t_lo, w_m1, h_m1,
                               x_on, y_on, eps_hw, eps_hw_lo, ex2, ex2_lo, ey2, ey2_lo, clip, clip_lo,
                               BLOCK: tl.constexpr, ACC: tl.constexpr, VAR_MODE: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    inv_t, w_m1, h_m1, x_on, y_on, eps_hw, ex2, ey2, clip = _join_scalars(
        inv_t, inv_t_lo, w_m1, h_m1, x_on, y_on, eps_hw, eps_hw_lo, ex2, ex2_lo, ey2, ey2_lo, clip, clip_lo, ACC)
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
        x = grid_coord((offs % W).to(ACC), w_m1, x_on)
        y = grid_coord((offs // W).to(ACC), h_m1, y_on)
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
    # an all -inf row has no softmax: NaN mean (and var), as the reference's 0/0
    run_mx = tl.where(run_sum == 0.0, float("nan"), run_mx)
    run_my = tl.where(run_sum == 0.0, float("nan"), run_my)
    inv = 1.0 / run_sum
    vxx = run_cxx * inv + eps_hw * (ex2 + run_mx * run_mx)
    vxy = run_cxy * inv + eps_hw * (run_mx * run_my)
    vyy = run_cyy * inv + eps_hw * (ey2 + run_my * run_my)
    tl.store(mean_ptr + row * 2, run_mx)
    tl.store(mean_ptr + row * 2 + 1, run_my)
    tl.store(raw_ptr + row * 4, vxx)
    tl.store(raw_ptr + row * 4 + 1, vxy)
    tl.store(raw_ptr + row * 4 + 2, vxy)
    tl.store(raw_ptr + row * 4 + 3, vyy)
    tl.store(lse_ptr + row, run_max + tl.log(run_sum))
    if VAR_MODE == VAR_MATRIX:  # clip by the smallest singular value
        sg, u, w, s2 = _smallest_singular(vxx, vxy, vxy, vyy)
        scale = tl.where((sg > 0.0) & (sg < clip), clip / tl.where(sg > 0.0, sg, 1.0), 1.0)
        tl.store(var_ptr + row * 4, vxx * scale)
        tl.store(var_ptr + row * 4 + 1, vxy * scale)
        tl.store(var_ptr + row * 4 + 2, vxy * scale)
        tl.store(var_ptr + row * 4 + 3, vyy * scale)
    elif VAR_MODE == VAR_SINGLE:
        tl.store(var_ptr + row, (vxx + vyy) * 0.5)


@triton.jit
def heatmap_moments_bwd_kernel(logits_ptr, grad_ptr, mean_ptr, raw_ptr, lse_ptr, gmean_ptr, gvar_ptr,
                               HW, W, inv_t, inv_t_lo, w_m1, h_m1, x_on, y_on, eps_hw, eps_hw_lo, ex2, ex2_lo, ey2,
                               ey2_lo, clip, clip_lo, BLOCK: tl.constexpr, ACC: tl.constexpr, VAR_MODE: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    chunk = tl.program_id(1)
    inv_t, w_m1, h_m1, x_on, y_on, eps_hw, ex2, ey2, clip = _join_scalars(
        inv_t, inv_t_lo, w_m1, h_m1, x_on, y_on, eps_hw, eps_hw_lo, ex2, ex2_lo, ey2, ey2_lo, clip, clip_lo, ACC)
    mx = tl.load(mean_ptr + row * 2).to(ACC)
    my = tl.load(mean_ptr + row * 2 + 1).to(ACC)
    va = tl.load(raw_ptr + row * 4).to(ACC)
    vb = tl.load(raw_ptr + row * 4 + 1).to(ACC)
    vc = tl.load(raw_ptr + row * 4 + 2).to(ACC)
    vd = tl.load(raw_ptr + row * 4 + 3).to(ACC)
    gmx = tl.load(gmean_ptr + row * 2).to(ACC)
    gmy = tl.load(gmean_ptr + row * 2 + 1).to(ACC)
    lse = tl.load(lse_ptr + row).to(ACC)
    # Gradient with respect to the raw covariance through the epilogue (see moments_var_grad).
    if VAR_MODE == VAR_MATRIX:
        o00 = tl.load(gvar_ptr + row * 4).to(ACC)
        o01 = tl.load(gvar_ptr + row * 4 + 1).to(ACC)
        o10 = tl.load(gvar_ptr + row * 4 + 2).to(ACC)
        o11 = tl.load(gvar_ptr + row * 4 + 3).to(ACC)
        sg, u, w, s2 = _smallest_singular(va, vb, vc, vd)
        active = (sg > 0.0) & (sg < clip)
        sgs = tl.where(sg > 0.0, sg, 1.0)
        scale = tl.where(active, clip / sgs, 1.0)
        g_dot_raw = o00 * va + o01 * vb + o10 * vc + o11 * vd
        inv_s2 = tl.where(s2 > 0.0, 1.0 / tl.where(s2 > 0.0, s2, 1.0), 0.0)
        coef = tl.where(active, -clip / (sgs * sgs) * g_dot_raw / (4.0 * sgs), 0.0)
        g00 = scale * o00 + coef * (2.0 * va - (u * 2.0 * va + 4.0 * w * vc) * inv_s2)
        g01 = scale * o01 + coef * (2.0 * vb - (u * 2.0 * vb + 4.0 * w * vd) * inv_s2)
        g10 = scale * o10 + coef * (2.0 * vc - (-u * 2.0 * vc + 4.0 * w * va) * inv_s2)
        g11 = scale * o11 + coef * (2.0 * vd - (-u * 2.0 * vd + 4.0 * w * vb) * inv_s2)
    elif VAR_MODE == VAR_SINGLE:
        g00 = tl.load(gvar_ptr + row).to(ACC) * 0.5
        g11 = g00
        g01 = g00 * 0.0
        g10 = g01
    else:
        g00 = mx * 0.0
        g01 = g00
        g10 = g00
        g11 = g00
    # f - fbar in coordinates centred on the mean (see MomentGradRow in heatmap_moments.h)
    qxy = g01 + g10
    ax = gmx + eps_hw * (2.0 * g00 * mx + qxy * my)
    ay = gmy + eps_hw * (qxy * mx + 2.0 * g11 * my)
    fbar = (g00 * (va - eps_hw * (ex2 + mx * mx)) + g01 * (vb - eps_hw * (mx * my))
            + g10 * (vc - eps_hw * (mx * my)) + g11 * (vd - eps_hw * (ey2 + my * my)))

    offs = chunk * BLOCK + tl.arange(0, BLOCK)
    valid = offs < HW
    l = tl.load(logits_ptr + row * HW + offs, mask=valid, other=0.0).to(ACC) * inv_t
    x = grid_coord((offs % W).to(ACC), w_m1, x_on)
    y = grid_coord((offs // W).to(ACC), h_m1, y_on)
    p = tl.exp(l - lse)
    dx = x - mx
    dy = y - my
    f = ax * dx + ay * dy + g00 * dx * dx + qxy * dx * dy + g11 * dy * dy
    grad = p * (f - fbar) * inv_t
    tl.store(grad_ptr + row * HW + offs, grad.to(grad_ptr.dtype.element_ty), mask=valid)


def _scalars(h: int, w: int, temperature: float, clip: float, acc: torch.dtype):
    """The kernels' float arguments: grid constants, 1 / temperature and clip."""
    ex2 = (w + 1) / (3.0 * (w - 1)) if w > 1 else 0.0
    ey2 = (h + 1) / (3.0 * (h - 1)) if h > 1 else 0.0
    out = grid_args(h, w)
    for name, value in (("inv_t", 1.0 / temperature), ("eps_hw", HEATMAP_EPS * h * w), ("ex2", ex2), ("ey2", ey2),
                        ("clip", float(clip))):
        out[name], out[name + "_lo"] = split_float(value, acc)
    return out


def _block(hw: int) -> int:
    return min(MAX_BLOCK, triton.next_power_of_2(max(hw, 16)))


def heatmap_moments_forward(logits: torch.Tensor, temperature: float, var_mode: int,
                            clip: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits ``(R, H, W)`` -> mean ``(R, 2)``, var ``(R, v, v)`` (v = 1 for 'single', else 2),
    var_raw ``(R, 2, 2)``, lse ``(R,)``, all in fp32 (fp64 for fp64 logits)."""
    logits = logits.contiguous()
    rows, h, w = logits.shape
    acc = acc_dtype(logits.dtype)
    v = 1 if var_mode == VAR_SINGLE.value else 2
    mean = logits.new_empty((rows, 2), dtype=acc)
    var = (logits.new_zeros if var_mode == VAR_FIXED.value else logits.new_empty)((rows, v, v), dtype=acc)
    var_raw = logits.new_empty((rows, 2, 2), dtype=acc)
    lse = logits.new_empty((rows,), dtype=acc)
    if rows == 0:
        return mean, var, var_raw, lse
    block = _block(h * w)
    wrap_triton(heatmap_moments_fwd_kernel)[(rows,)](
        logits, mean, var, var_raw, lse, h * w, w, **_scalars(h, w, temperature, clip, acc), BLOCK=block,
        ACC=tl_acc(acc), VAR_MODE=var_mode, num_warps=8 if block >= 2048 else 4)
    return mean, var, var_raw, lse


def heatmap_moments_backward(grad_mean: torch.Tensor, grad_var: torch.Tensor, logits: torch.Tensor, mean: torch.Tensor,
                             var_raw: torch.Tensor, lse: torch.Tensor, temperature: float, var_mode: int,
                             clip: float) -> torch.Tensor:
    """Gradient of the logits ``(R, H, W)`` given the forward's statistics and the gradients of
    mean and var (shaped like the forward's var)."""
    logits = logits.contiguous()
    rows, h, w = logits.shape
    grad = torch.empty_like(logits)
    if rows == 0:
        return grad
    hw = h * w
    block = min(1024, triton.next_power_of_2(max(hw, 16)))
    wrap_triton(heatmap_moments_bwd_kernel)[(rows, triton.cdiv(hw, block))](
        logits, grad, mean.contiguous(), var_raw.contiguous(), lse.contiguous(), grad_mean.contiguous(),
        grad_var.contiguous(), hw, w, **_scalars(h, w, temperature, clip, mean.dtype), BLOCK=block,
        ACC=tl_acc(mean.dtype), VAR_MODE=var_mode, num_warps=4)
    return grad
