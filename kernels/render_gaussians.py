"""Triton kernels of the Gaussian-heatmap ops (``render_gaussians``, ``keypoint_heatmap_embedding``).

Math (shared with csrc/include/fastmotion/render_gaussians.h): per keypoint the precision
P = adj(var) / max(det var, 1e-12) gives q = pa dx^2 + pb dx dy + pc dy^2, and the heatmap is
G = exp(-0.5 max(q, 0)). Per row of a tile dy is fixed, so q = dx (pa dx + pb dy) + pc dy^2 costs
two FMAs per pixel plus the exp; the embedding evaluates two Gaussians (driving, source) per pixel.

Forward: grid (heatmap, row block); each program inverts its 2x2 covariances once and writes its
tile of ``(G_d - G_s) / n`` straight into the ``(A, B, K+1, H, W)`` output (the background channel's
programs write zeros). Sum normalisation: one program per heatmap, two passes (sum, then write),
recomputing the Gaussians instead of re-reading them.

Backward: the gradient of a keypoint is a function of five moments of dL/dq over its heatmap
(sum s dx, s dy, s dx^2, s dx dy, s dy^2). A program reduces one keypoint's heatmap (or a row
range of it, when there are too few keypoints to fill the GPU) for driving and source together,
recomputing G from the keypoints; when it owns the whole heatmap it also finishes the closed-form
gradient (no second launch), otherwise a tiny epilogue kernel sums the partials.

Memory traffic (fp32, (N, K, H, W) = (32, 10, 64, 64): one heatmap tensor is 5.2 MB). The
original kp2gaussian writes, per Gaussian, the repeated grid and (g - mean) (N, K, H, W, 2), the
first matmul's (N, K, H, W, 1, 2), the quadratic form, -0.5 x and the exp: 9 heatmap-sized
tensors, ~47 MB, each read back by the next op. The difference embedding does that twice, then
two normalisations, the difference and the concatenation with the zero channel: ~115 MB written
and about as much read for a 5.8 MB result; its autograd backward moves as much again. The fused
forward writes the 5.8 MB output once and reads ~15 KB of keypoints; the backward reads
grad_out once (5.8 MB) and writes ~15 KB of gradients. Nothing of size H*W is saved for the backward or materialised in between, so both
passes run at the output's write (read) bandwidth: a ~40x cut in DRAM traffic.
"""
from __future__ import annotations


import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from fastmotion.kernels._common import (VAR_FIXED, VAR_MATRIX, VAR_SINGLE, acc_dtype, grid_args, grid_consts,
                                        grid_coord, join_float, split_float, tl_acc)

DET_EPS = 1e-12  # smallest determinant used when inverting a covariance (reference: DET_EPS)
_DET_EPS = tl.constexpr(DET_EPS)
FAR_QUAD = 2000.0  # a quadratic form above this on every pixel renders exp(-1000) = 0 (render_gaussians.h)
_FAR_QUAD = tl.constexpr(FAR_QUAD)
FWD_BLOCK = 1024  # pixels per forward tile
BWD_BLOCK = 512  # pixels per backward tile (10-24 accumulators per pixel lane)


@triton.jit
def _keypoint(mean_ptr, var_ptr, m_off, v_off, fixed_hi, fixed_lo, MODE: tl.constexpr, ACC: tl.constexpr):
    """Mean, quadratic-form coefficients (pa, pb, pc) and variance entries of one keypoint."""
    eps = tl.full([], _DET_EPS, ACC)
    mx = tl.load(mean_ptr + m_off).to(ACC)
    my = tl.load(mean_ptr + m_off + 1).to(ACC)
    if MODE == VAR_MATRIX:
        v00 = tl.load(var_ptr + v_off).to(ACC)
        v01 = tl.load(var_ptr + v_off + 1).to(ACC)
        v10 = tl.load(var_ptr + v_off + 2).to(ACC)
        v11 = tl.load(var_ptr + v_off + 3).to(ACC)
        det = v00 * v11 - v01 * v10
        inv = 1.0 / tl.where(det < eps, eps, det)  # NaN propagates
        pa = v11 * inv
        pb = -(v01 + v10) * inv
        pc = v00 * inv
    else:
        if MODE == VAR_SINGLE:
            v00 = tl.load(var_ptr + v_off).to(ACC)
        else:
            # a Python float arrives as fp32: hi + lo restores it in float64
            v00 = tl.cast(fixed_hi, ACC) + tl.cast(fixed_lo, ACC)
        v01 = v00 * 0.0
        v10 = v01
        v11 = v00
        s2 = v00 * v00
        pa = v00 / tl.where(s2 < eps, eps, s2)
        pb = v01
        pc = pa
    # A finite keypoint so far off the grid that its heatmap is 0 is moved to where it still is 0
    # but the quadratic form does not overflow (GaussQuad::far_keypoint_scale in render_gaussians.h).
    far = tl.maximum(tl.abs(mx), tl.abs(my))
    hb = 0.5 * pb
    hd = 0.5 * (pa - pc)
    lmax = 0.5 * (pa + pc) + tl.sqrt(hd * hd + hb * hb)
    lmin = tl.where(lmax > 0.0, (pa * pc - hb * hb) / tl.where(lmax > 0.0, lmax, 1.0), 0.0)
    reach = 2.0 + tl.sqrt(tl.full([], _FAR_QUAD, ACC) / tl.where(lmin > 0.0, lmin, 1.0))
    move = (far > 2.0) & (far - far == 0.0) & (lmin > 0.0) & (far > reach)
    scale = tl.where(move, reach / tl.where(move, far, 1.0), 1.0)
    return mx * scale, my * scale, pa, pb, pc, v00, v01, v10, v11


@triton.jit
def _gauss_tile(x, y, mx, my, pa, pb, pc):
    """G over a tile (rows y[:, None], columns x[None, :]) and whether q < 0 (clamped)."""
    dx = (x - mx)[None, :]
    dy = (y - my)[:, None]
    q = dx * (pa * dx + pb * dy) + pc * dy * dy
    neg = q < 0.0
    return tl.exp(-0.5 * tl.where(neg, 0.0, q)), neg, dx, dy


@triton.jit
def _gauss_value(x, y, mx, my, pa, pb, pc):
    g, _neg, _dx, _dy = _gauss_tile(x, y, mx, my, pa, pb, pc)
    return g


@triton.jit
def _gaussians(r0, row1, c0, W, w_m1, h_m1, x_on, y_on, mxd, myd, pad, pbd, pcd, mxs, mys, pas, pbs, pcs,
               HAS_SRC: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, ACC: tl.constexpr):
    # the tile at (r0 + ..., c0 + ...) of the driving and the source Gaussians (the source's only
    # with HAS_SRC), with its rows, columns and in-bounds mask
    rows = r0 + tl.arange(0, BLOCK_H)
    y = grid_coord(rows.to(ACC), h_m1, y_on)
    cols = c0 + tl.arange(0, BLOCK_W)
    x = grid_coord(cols.to(ACC), w_m1, x_on)
    mask = (rows < row1)[:, None] & (cols < W)[None, :]
    gd = _gauss_value(x, y, mxd, myd, pad, pbd, pcd)
    gs = gd
    if HAS_SRC:
        gs = _gauss_value(x, y, mxs, mys, pas, pbs, pcs)
    return rows, cols, mask, gd, gs


@triton.jit
def gaussian_fwd_kernel(out_ptr, md_ptr, vd_ptr, ms_ptr, vs_ptr, B, C, H, W, rows_per_prog,
                        md_sa, md_sb, vd_sa, vd_sb, ms_sa, ms_sb, vs_sa, vs_sb,
                        fixed_hi, fixed_lo, norm_hi, norm_lo, w_m1, h_m1, x_on, y_on,
                        MODE: tl.constexpr, HAS_SRC: tl.constexpr, BG: tl.constexpr, NORM_SUM: tl.constexpr,
                        BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, ACC: tl.constexpr):
    w_m1, h_m1, x_on, y_on = grid_consts(w_m1, h_m1, x_on, y_on, ACC)
    hm = tl.program_id(0).to(tl.int64)
    c = hm % C
    ab = hm // C
    a = ab // B
    b = ab % B
    k = c - BG
    out_base = out_ptr + hm * H * W
    row0 = tl.program_id(1) * rows_per_prog
    row1 = tl.minimum(row0 + rows_per_prog, H)
    NV: tl.constexpr = 4 if MODE == VAR_MATRIX else 1
    if k < 0:  # the background channel
        for r0 in range(row0, row1, BLOCK_H):
            rows = r0 + tl.arange(0, BLOCK_H)
            for c0 in range(0, W, BLOCK_W):
                cols = c0 + tl.arange(0, BLOCK_W)
                mask = (rows < row1)[:, None] & (cols < W)[None, :]
                zero = tl.zeros([BLOCK_H, BLOCK_W], dtype=out_ptr.dtype.element_ty)
                tl.store(out_base + rows[:, None] * W + cols[None, :], zero, mask=mask)
    else:
        mxd, myd, pad, pbd, pcd, _vd0, _vd1, _vd2, _vd3 = _keypoint(md_ptr, vd_ptr, a * md_sa + b * md_sb + k * 2,
                                                        a * vd_sa + b * vd_sb + k * NV, fixed_hi, fixed_lo,
                                                        MODE, ACC)
        mxs = mxd
        mys = myd
        pas = pad
        pbs = pbd
        pcs = pcd
        if HAS_SRC:
            mxs, mys, pas, pbs, pcs, _vs0, _vs1, _vs2, _vs3 = _keypoint(ms_ptr, vs_ptr, a * ms_sa + b * ms_sb + k * 2,
                                                            a * vs_sa + b * vs_sb + k * NV, fixed_hi, fixed_lo,
                                                            MODE, ACC)
        scale_d = 1.0 / join_float(norm_hi, norm_lo, ACC)
        scale_s = scale_d
        if NORM_SUM:
            acc_d = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
            acc_s = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
            for r0 in range(row0, row1, BLOCK_H):
                for c0 in range(0, W, BLOCK_W):
                    rows, cols, mask, gd, gs = _gaussians(r0, row1, c0, W, w_m1, h_m1, x_on, y_on, mxd, myd, pad, pbd,
                                                          pcd, mxs, mys, pas, pbs, pcs, HAS_SRC, BLOCK_H, BLOCK_W, ACC)
                    acc_d += tl.where(mask, gd, 0.0)
                    if HAS_SRC:
                        acc_s += tl.where(mask, gs, 0.0)
            sum_d = tl.sum(tl.sum(acc_d, 1), 0)
            sum_s = tl.sum(tl.sum(acc_s, 1), 0)
            scale_d = 1.0 / tl.where(sum_d == 0.0, 1.0, sum_d)  # an empty heatmap stays 0
            scale_s = 1.0 / tl.where(sum_s == 0.0, 1.0, sum_s)
        for r0 in range(row0, row1, BLOCK_H):
            for c0 in range(0, W, BLOCK_W):
                rows, cols, mask, gd, gs = _gaussians(r0, row1, c0, W, w_m1, h_m1, x_on, y_on, mxd, myd, pad, pbd, pcd,
                                                      mxs, mys, pas, pbs, pcs, HAS_SRC, BLOCK_H, BLOCK_W, ACC)
                val = gd * scale_d
                if HAS_SRC:
                    val = val - gs * scale_s
                tl.store(out_base + rows[:, None] * W + cols[None, :], val.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _finish_keypoint(gm_ptr, gv_ptr, row, mx, my, pa, pb, pc, v00, v01, v10, v11, wg_x, wg_y, wg_xx, wg_xy,
                     wg_yy, w_x, w_y, w_xx, w_xy, w_yy, total, dot, scale, sign,
                     MODE: tl.constexpr, NORM_SUM: tl.constexpr, ACC: tl.constexpr):
    """Mean and variance gradients of one keypoint from its heatmap moments (render_gaussians.h)."""
    eps = tl.full([], _DET_EPS, ACC)
    if NORM_SUM:
        inv_s = 1.0 / tl.where(total == 0.0, 1.0, total)  # an empty heatmap has zero gradient
        cbar = dot * inv_s
        f = -0.5 * sign * inv_s
        m_x = f * (wg_x - cbar * w_x)
        m_y = f * (wg_y - cbar * w_y)
        m_xx = f * (wg_xx - cbar * w_xx)
        m_xy = f * (wg_xy - cbar * w_xy)
        m_yy = f * (wg_yy - cbar * w_yy)
    else:
        f = -0.5 * sign * scale
        m_x = f * wg_x
        m_y = f * wg_y
        m_xx = f * wg_xx
        m_xy = f * wg_xy
        m_yy = f * wg_yy
    tl.store(gm_ptr + row * 2, (-(2.0 * pa * m_x + pb * m_y)).to(gm_ptr.dtype.element_ty))
    tl.store(gm_ptr + row * 2 + 1, (-(pb * m_x + 2.0 * pc * m_y)).to(gm_ptr.dtype.element_ty))
    if MODE == VAR_MATRIX:
        det = v00 * v11 - v01 * v10
        inv = 1.0 / tl.where(det < eps, eps, det)
        t = tl.where(det >= eps, pa * m_xx + pb * m_xy + pc * m_yy, 0.0)
        tl.store(gv_ptr + row * 4, ((m_yy - t * v11) * inv).to(gv_ptr.dtype.element_ty))
        tl.store(gv_ptr + row * 4 + 1, ((t * v10 - m_xy) * inv).to(gv_ptr.dtype.element_ty))
        tl.store(gv_ptr + row * 4 + 2, ((t * v01 - m_xy) * inv).to(gv_ptr.dtype.element_ty))
        tl.store(gv_ptr + row * 4 + 3, ((m_xx - t * v00) * inv).to(gv_ptr.dtype.element_ty))
    elif MODE == VAR_SINGLE:
        s2 = v00 * v00
        dc = tl.where(s2 < eps, eps, s2)
        dp = (1.0 - tl.where(s2 >= eps, 2.0 * s2 / dc, 0.0)) / dc
        tl.store(gv_ptr + row, ((m_xx + m_yy) * dp).to(gv_ptr.dtype.element_ty))


@triton.jit
def _nearest(c, n_m1, on):
    """Index of the grid pixel nearest to coordinate c (clamped; 0 for NaN or a 1-pixel axis)."""
    f = (c + 1.0) * 0.5 * n_m1
    f = tl.where(f != f, 0.0, f)
    f = tl.minimum(tl.maximum(f, 0.0), n_m1)
    return tl.where(on == 0.0, 0, (f + 0.5).to(tl.int32))


@triton.jit
def _sum2(x):
    return tl.sum(tl.sum(x, 1), 0)


@triton.jit
def _add_weighted(wt, dx, dy, s_x, s_y, s_xx, s_xy, s_yy):
    # the wt-weighted first and second moments of (dx, dy), added to s_*
    wx = wt * dx
    wy = wt * dy
    return s_x + wx, s_y + wy, s_xx + wx * dx, s_xy + wx * dy, s_yy + wy * dy


@triton.jit
def _add_moments(x, y, g, g0, mask, mx, my, pa, pb, pc, w_x, w_y, w_xx, w_xy, w_yy, n_x, n_y, n_xx, n_xy, n_yy, n_g,
                 n_dot, NORM_SUM: tl.constexpr):
    """One tile's share of a keypoint's heatmap moments, g = gout - g0: the g-weighted (w_*)
    moments of dL/dq and, for sum normalisation, the G-weighted ones (n_*), sum G and sum g G."""
    e, neg, dx, dy = _gauss_tile(x, y, mx, my, pa, pb, pc)
    m = tl.where(neg | (mask == 0), 0.0, e)
    g = g - g0
    w_x, w_y, w_xx, w_xy, w_yy = _add_weighted(g * m, dx, dy, w_x, w_y, w_xx, w_xy, w_yy)
    if NORM_SUM:
        n_x, n_y, n_xx, n_xy, n_yy = _add_weighted(m, dx, dy, n_x, n_y, n_xx, n_xy, n_yy)
        eg = tl.where(mask, e, 0.0)
        n_g += eg
        n_dot += g * eg
    return w_x, w_y, w_xx, w_xy, w_yy, n_x, n_y, n_xx, n_xy, n_yy, n_g, n_dot


@triton.jit
def gaussian_bwd_kernel(gout_ptr, md_ptr, vd_ptr, ms_ptr, vs_ptr, gmd_ptr, gvd_ptr, gms_ptr, gvs_ptr, part_ptr,
                        B, K, H, W, rows_per_prog, n_split,
                        g_sa, g_sb, g_sc, g_sh, g_sw,
                        md_sa, md_sb, vd_sa, vd_sb, ms_sa, ms_sb, vs_sa, vs_sb,
                        fixed_hi, fixed_lo, norm_hi, norm_lo, w_m1, h_m1, x_on, y_on,
                        MODE: tl.constexpr, HAS_SRC: tl.constexpr, BG: tl.constexpr, NORM_SUM: tl.constexpr,
                        FUSED: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, ACC: tl.constexpr):
    w_m1, h_m1, x_on, y_on = grid_consts(w_m1, h_m1, x_on, y_on, ACC)
    r = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    k = r % K
    ab = r // K
    a = ab // B
    b = ab % B
    NV: tl.constexpr = 4 if MODE == VAR_MATRIX else 1
    mxd, myd, pad, pbd, pcd, vd00, vd01, vd10, vd11 = _keypoint(
        md_ptr, vd_ptr, a * md_sa + b * md_sb + k * 2, a * vd_sa + b * vd_sb + k * NV, fixed_hi, fixed_lo, MODE, ACC)
    mxs = mxd
    mys = myd
    pas = pad
    pbs = pbd
    pcs = pcd
    vs00 = vd00
    vs01 = vd01
    vs10 = vd10
    vs11 = vd11
    if HAS_SRC:
        mxs, mys, pas, pbs, pcs, vs00, vs01, vs10, vs11 = _keypoint(
            ms_ptr, vs_ptr, a * ms_sa + b * ms_sb + k * 2, a * vs_sa + b * vs_sb + k * NV, fixed_hi, fixed_lo,
            MODE, ACC)
    g_base = gout_ptr + a * g_sa + b * g_sb + (k + BG) * g_sc
    row0 = split * rows_per_prog
    row1 = tl.minimum(row0 + rows_per_prog, H)
    # sum normalisation: gout shifted by its value nearest each keypoint (see render_gaussians.h,
    # gaussian_moments_to_dq): avoids cancellation when gout is nearly constant over a heatmap
    g0d = tl.zeros([], dtype=ACC)
    g0s = g0d
    if NORM_SUM:
        g0d = tl.load(g_base + _nearest(myd, h_m1, y_on).to(tl.int64) * g_sh
                      + _nearest(mxd, w_m1, x_on) * g_sw).to(ACC)
        if HAS_SRC:
            g0s = tl.load(g_base + _nearest(mys, h_m1, y_on).to(tl.int64) * g_sh
                          + _nearest(mxs, w_m1, x_on) * g_sw).to(ACC)
    z = tl.zeros([BLOCK_H, BLOCK_W], dtype=ACC)
    # driving: gout-weighted moments (d_*), G-weighted moments and sums (u_*); source: s_*, t_*
    d_x, d_y, d_xx, d_xy, d_yy = z, z, z, z, z
    u_x, u_y, u_xx, u_xy, u_yy, u_g, u_dot = z, z, z, z, z, z, z
    s_x, s_y, s_xx, s_xy, s_yy = z, z, z, z, z
    t_x, t_y, t_xx, t_xy, t_yy, t_g, t_dot = z, z, z, z, z, z, z
    for r0 in range(row0, row1, BLOCK_H):
        rows = r0 + tl.arange(0, BLOCK_H)
        y = grid_coord(rows.to(ACC), h_m1, y_on)
        for c0 in range(0, W, BLOCK_W):
            cols = c0 + tl.arange(0, BLOCK_W)
            x = grid_coord(cols.to(ACC), w_m1, x_on)
            mask = (rows < row1)[:, None] & (cols < W)[None, :]
            g = tl.load(g_base + rows[:, None].to(tl.int64) * g_sh + cols[None, :] * g_sw, mask=mask,
                        other=0.0).to(ACC)
            d_x, d_y, d_xx, d_xy, d_yy, u_x, u_y, u_xx, u_xy, u_yy, u_g, u_dot = _add_moments(
                x, y, g, g0d, mask, mxd, myd, pad, pbd, pcd, d_x, d_y, d_xx, d_xy, d_yy, u_x, u_y, u_xx, u_xy, u_yy,
                u_g, u_dot, NORM_SUM)
            if HAS_SRC:
                s_x, s_y, s_xx, s_xy, s_yy, t_x, t_y, t_xx, t_xy, t_yy, t_g, t_dot = _add_moments(
                    x, y, g, g0s, mask, mxs, mys, pas, pbs, pcs, s_x, s_y, s_xx, s_xy, s_yy, t_x, t_y, t_xx, t_xy,
                    t_yy, t_g, t_dot, NORM_SUM)
    scale = 1.0 / join_float(norm_hi, norm_lo, ACC)
    if FUSED:
        _finish_keypoint(gmd_ptr, gvd_ptr, r, mxd, myd, pad, pbd, pcd, vd00, vd01, vd10, vd11,
                         _sum2(d_x), _sum2(d_y), _sum2(d_xx), _sum2(d_xy), _sum2(d_yy),
                         _sum2(u_x), _sum2(u_y), _sum2(u_xx), _sum2(u_xy), _sum2(u_yy), _sum2(u_g), _sum2(u_dot),
                         scale, 1.0, MODE, NORM_SUM, ACC)
        if HAS_SRC:
            _finish_keypoint(gms_ptr, gvs_ptr, r, mxs, mys, pas, pbs, pcs, vs00, vs01, vs10, vs11,
                             _sum2(s_x), _sum2(s_y), _sum2(s_xx), _sum2(s_xy), _sum2(s_yy),
                             _sum2(t_x), _sum2(t_y), _sum2(t_xx), _sum2(t_xy), _sum2(t_yy), _sum2(t_g),
                             _sum2(t_dot), scale, -1.0, MODE, NORM_SUM, ACC)
    else:
        # partials[r, split, map, 12]: 5 gout-weighted moments, 5 G-weighted moments, sum G, sum gout G
        p = part_ptr + (r * n_split + split) * 24
        moments = (d_x, d_y, d_xx, d_xy, d_yy, u_x, u_y, u_xx, u_xy, u_yy, u_g, u_dot,
                   s_x, s_y, s_xx, s_xy, s_yy, t_x, t_y, t_xx, t_xy, t_yy, t_g, t_dot)
        for i in tl.static_range(24):
            tl.store(p + i, _sum2(moments[i]))


@triton.jit
def _summed_partials(p, first: tl.constexpr, smask):
    # the 12 moments of one map (first: 0 driving, 12 source) summed over the row splits
    out = ()
    for i in tl.static_range(12):
        out = out + (tl.sum(tl.load(p + first + i, mask=smask, other=0.0), 0), )
    return out


@triton.jit
def gaussian_bwd_epilogue_kernel(part_ptr, md_ptr, vd_ptr, ms_ptr, vs_ptr, gmd_ptr, gvd_ptr, gms_ptr, gvs_ptr,
                                 B, K, n_split, md_sa, md_sb, vd_sa, vd_sb, ms_sa, ms_sb, vs_sa, vs_sb,
                                 fixed_hi, fixed_lo, norm_hi, norm_lo,
                                 MODE: tl.constexpr, HAS_SRC: tl.constexpr, NORM_SUM: tl.constexpr,
                                 SPLIT_BLOCK: tl.constexpr, ACC: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    k = r % K
    ab = r // K
    a = ab // B
    b = ab % B
    NV: tl.constexpr = 4 if MODE == VAR_MATRIX else 1
    splits = tl.arange(0, SPLIT_BLOCK)
    smask = splits < n_split
    p = part_ptr + (r * n_split + splits) * 24
    scale = 1.0 / join_float(norm_hi, norm_lo, ACC)
    mx, my, pa, pb, pc, v00, v01, v10, v11 = _keypoint(
        md_ptr, vd_ptr, a * md_sa + b * md_sb + k * 2, a * vd_sa + b * vd_sb + k * NV, fixed_hi, fixed_lo, MODE, ACC)
    _finish_keypoint(gmd_ptr, gvd_ptr, r, mx, my, pa, pb, pc, v00, v01, v10, v11, *_summed_partials(p, 0, smask),
                     scale, 1.0, MODE, NORM_SUM, ACC)
    if HAS_SRC:
        mx, my, pa, pb, pc, v00, v01, v10, v11 = _keypoint(
            ms_ptr, vs_ptr, a * ms_sa + b * ms_sb + k * 2, a * vs_sa + b * vs_sb + k * NV, fixed_hi, fixed_lo,
            MODE, ACC)
        _finish_keypoint(gms_ptr, gvs_ptr, r, mx, my, pa, pb, pc, v00, v01, v10, v11,
                         *_summed_partials(p, 12, smask), scale, -1.0, MODE, NORM_SUM, ACC)


# ---- launchers ----

def _mode(var):
    if var is None:
        return VAR_FIXED.value
    return VAR_MATRIX.value if var.shape[-1] == 2 else VAR_SINGLE.value


def _block_contiguous(t, lead):
    """The kernels index keypoints as a * sa + b * sb + k * block + i: the dims after the ``lead``
    leading ones must be one contiguous block (leading strides may be anything, 0 included)."""
    if t is None:
        return None
    expected = 1
    for d in range(t.dim() - 1, lead - 1, -1):
        if t.shape[d] != 1 and t.stride(d) != expected:
            return t.contiguous()
        expected *= t.shape[d]
    return t


def _strides(t, lead):
    """Element strides along (A, B); one leading dim means A = 1 (stride 0)."""
    if t is None:
        return 0, 0
    return (t.stride(0), t.stride(1)) if lead == 2 else (0, t.stride(0))


def _ab(mean):
    """(A, B, K, lead) of keypoints (A, B, K, 2) or (B, K, 2)."""
    if mean.dim() == 4:
        return mean.shape[0], mean.shape[1], mean.shape[2], 2
    return 1, mean.shape[0], mean.shape[1], 1


def _tile(h: int, w: int, block: int):
    bw = min(triton.next_power_of_2(w), 256)
    bh = max(1, min(block // bw, triton.next_power_of_2(h)))
    return bh, bw


def _target_programs(device: torch.device) -> int:
    """Programs that fill the GPU (two per SM); few under the interpreter."""
    if device.type != "cuda":
        return 4
    return 2 * torch.cuda.get_device_properties(device).multi_processor_count


def _common(mean_d, var_d, mean_s, var_s, fixed_var, norm_const, norm_sum, lead):
    mean_d, var_d, mean_s, var_s = (_block_contiguous(t, lead) for t in (mean_d, var_d, mean_s, var_s))
    fixed_hi, fixed_lo = split_float(float(fixed_var) if var_d is None else 1.0)
    norm_hi, norm_lo = split_float(1.0 if norm_sum else float(norm_const))
    strides = (*_strides(mean_d, lead), *_strides(var_d, lead), *_strides(mean_s, lead), *_strides(var_s, lead))
    consts = dict(fixed_hi=fixed_hi, fixed_lo=fixed_lo, norm_hi=norm_hi, norm_lo=norm_lo)
    return mean_d, var_d, mean_s, var_s, strides, consts


def render_gaussians_forward(mean_d: torch.Tensor, var_d: torch.Tensor | None, mean_s: torch.Tensor | None,
                             var_s: torch.Tensor | None, fixed_var: float, height: int, width: int, norm_const: float,
                             norm_sum: bool, background: bool) -> torch.Tensor:
    """Keypoints ``(A, B, K, 2)`` or ``(B, K, 2)`` (+ var ``(..., K, c, c)``) -> heatmaps
    ``(A, B, K + bg, H, W)`` or ``(B, K + bg, H, W)``."""
    a, b, k, lead = _ab(mean_d)
    c = k + int(background)
    out = mean_d.new_empty(tuple(mean_d.shape[:lead]) + (c, height, width))
    if out.numel() == 0:
        return out
    mean_d, var_d, mean_s, var_s, strides, consts = _common(mean_d, var_d, mean_s, var_s, fixed_var, norm_const,
                                                            norm_sum, lead)
    bh, bw = _tile(height, width, FWD_BLOCK)
    rows_per_prog = height if norm_sum else bh
    n_split = triton.cdiv(height, rows_per_prog)
    wrap_triton(gaussian_fwd_kernel)[(a * b * c, n_split)](
        out, mean_d, var_d if var_d is not None else mean_d, mean_s if mean_s is not None else mean_d,
        var_s if var_s is not None else mean_d, b, c, height, width, rows_per_prog, *strides, **consts,
        **grid_args(height, width), MODE=_mode(var_d), HAS_SRC=mean_s is not None, BG=int(background),
        NORM_SUM=bool(norm_sum), BLOCK_H=bh, BLOCK_W=bw, ACC=tl_acc(acc_dtype(mean_d.dtype)), num_warps=4)
    return out


def render_gaussians_backward(grad_out: torch.Tensor, mean_d: torch.Tensor, var_d: torch.Tensor | None,
                              mean_s: torch.Tensor | None, var_s: torch.Tensor | None, fixed_var: float,
                              norm_const: float, norm_sum: bool, background: bool, split: int | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the keypoints (dense, in their dtype; ``(0,)`` for absent inputs).

    ``split``: row ranges per heatmap (default: enough programs to fill the GPU); > 1 adds a tiny
    epilogue kernel that sums the partial moments.
    """
    a, b, k, lead = _ab(mean_d)
    height, width = grad_out.shape[-2:]
    gmd = mean_d.new_empty(mean_d.shape)
    gvd = mean_d.new_empty((0,) if var_d is None else var_d.shape)  # outputs must not alias
    gms = mean_d.new_empty((0,) if mean_s is None else mean_s.shape)
    gvs = mean_d.new_empty((0,) if var_s is None else var_s.shape)
    rows = a * b * k
    if rows == 0:
        return gmd, gvd, gms, gvs
    mean_d, var_d, mean_s, var_s, strides, consts = _common(mean_d, var_d, mean_s, var_s, fixed_var, norm_const,
                                                            norm_sum, lead)
    g_strides = (*_strides(grad_out, lead), *grad_out.stride()[lead:])
    bh, bw = _tile(height, width, BWD_BLOCK)
    n_rb = triton.cdiv(height, bh)
    if split is None:
        split = min(n_rb, max(1, triton.cdiv(_target_programs(grad_out.device), rows)))
    split = max(1, min(int(split), n_rb))
    rows_per_prog = triton.cdiv(n_rb, split) * bh
    split = triton.cdiv(height, rows_per_prog)
    acc = acc_dtype(mean_d.dtype)
    fused = split == 1
    part = mean_d.new_empty((rows * split * 24,) if not fused else (1,), dtype=acc)
    mode = _mode(var_d)
    has_src = mean_s is not None
    kp_ptrs = (mean_d, var_d if var_d is not None else mean_d, mean_s if has_src else mean_d,
               var_s if var_s is not None else mean_d)
    out_ptrs = (gmd, gvd if gvd.numel() else gmd, gms if gms.numel() else gmd, gvs if gvs.numel() else gmd)
    wrap_triton(gaussian_bwd_kernel)[(rows, split)](
        grad_out, *kp_ptrs, *out_ptrs, part, b, k, height, width, rows_per_prog, split, *g_strides,
        *strides, **consts, **grid_args(height, width), MODE=mode, HAS_SRC=has_src, BG=int(background),
        NORM_SUM=bool(norm_sum), FUSED=fused, BLOCK_H=bh, BLOCK_W=bw, ACC=tl_acc(acc),
        num_warps=8 if norm_sum and has_src else 4)
    if not fused:
        wrap_triton(gaussian_bwd_epilogue_kernel)[(rows,)](
            part, *kp_ptrs, *out_ptrs, b, k, split, *strides, **consts, MODE=mode, HAS_SRC=has_src,
            NORM_SUM=bool(norm_sum), SPLIT_BLOCK=max(2, triton.next_power_of_2(split)), ACC=tl_acc(acc),
            num_warps=1)
    return gmd, gvd, gms, gvs
