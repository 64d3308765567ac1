// Heatmap moments: the math shared by the CPU and CUDA kernels (and mirrored by the Triton
// kernel in kernels/heatmap_moments.py). See fastmotion/reference/heatmap_moments.py for the spec.
//
// Per row (one keypoint's H*W logits l_i), with p = softmax(l / T) and the original's
// w_i = p_i + eps (eps = 1e-7, added to the heatmap without renormalising):
//   mean = sum w_i g_i                      = sum p_i g_i   (sum of the grid is 0)
//   var  = sum w_i (g_i - mean)(g_i - mean)^T
//        = C_p + eps * HW * (D + mean mean^T)
// where C_p = sum p_i (g_i - mean)(g_i - mean)^T and D = diag(E[x^2], E[y^2]) over the grid.
#pragma once

#include <cmath>

#include "fastmotion/common.h"
#include "fastmotion/var_mode.h"

namespace fastmotion {

// The original gaussian2kp adds this to the softmax heatmap "to avoid nan in variance".
constexpr double kHeatmapEps = 1e-7;

// Running statistics of exp-weighted coordinates: weights e_i = exp(l_i - max), their sum,
// weighted mean and centred scatter (unnormalised). Merging two states is Chan's parallel
// update with both weight sets rescaled to the larger max: one pass, no cancellation.
template <typename acc_t>
struct MomentState {
  acc_t max;
  acc_t sum;
  acc_t mx, my;
  acc_t cxx, cxy, cyy;

  FM_HOST_DEVICE static MomentState empty() {
    return MomentState{-INFINITY, acc_t(0), acc_t(0), acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
  }

  // Add one sample (logit already scaled by 1/T) at coordinate (x, y).
  FM_HOST_DEVICE void push(acc_t logit, acc_t x, acc_t y) {
    if (logit == -INFINITY) return;  // zero weight; NaN and +inf fall through and propagate
    if (logit > max) {
      const acc_t scale = sum > acc_t(0) ? fm_exp(max - logit) : acc_t(0);
      sum *= scale;
      cxx *= scale;
      cxy *= scale;
      cyy *= scale;
      max = logit;
    }
    const acc_t e = fm_exp(logit - max);
    const acc_t new_sum = sum + e;
    const acc_t dx = x - mx, dy = y - my;
    const acc_t r = e / new_sum;
    mx += dx * r;
    my += dy * r;
    const acc_t f = sum * r;  // = sum * e / new_sum
    cxx += f * dx * dx;
    cxy += f * dx * dy;
    cyy += f * dy * dy;
    sum = new_sum;
  }

  FM_HOST_DEVICE void merge(const MomentState& o) {
    if (o.sum == acc_t(0)) return;  // empty (NaN sums propagate)
    if (sum == acc_t(0)) {
      *this = o;
      return;
    }
    const acc_t m = max > o.max ? max : o.max;
    const acc_t a = fm_exp(max - m), b = fm_exp(o.max - m);
    const acc_t sa = sum * a, sb = o.sum * b;
    const acc_t s = sa + sb;
    const acc_t dx = o.mx - mx, dy = o.my - my;
    const acc_t rb = sb / s;
    const acc_t f = sa * rb;
    mx += dx * rb;
    my += dy * rb;
    cxx = cxx * a + o.cxx * b + f * dx * dx;
    cxy = cxy * a + o.cxy * b + f * dx * dy;
    cyy = cyy * a + o.cyy * b + f * dy * dy;
    sum = s;
    max = m;
  }
};

// Final outputs of one row: mean (2), var (2x2, row-major) and log-sum-exp of l / T.
template <typename acc_t>
FM_HOST_DEVICE void moments_finish(acc_t sum, acc_t max, acc_t mx, acc_t my, acc_t cxx, acc_t cxy,
                                   acc_t cyy, int64_t H, int64_t W, acc_t* mean, acc_t* var,
                                   acc_t* lse) {
  const acc_t eps_hw = acc_t(kHeatmapEps) * acc_t(H * W);
  const acc_t inv = acc_t(1) / sum;
  mean[0] = mx;
  mean[1] = my;
  const acc_t vxx = cxx * inv + eps_hw * (grid_axis_second_moment<acc_t>(W) + mx * mx);
  const acc_t vxy = cxy * inv + eps_hw * (mx * my);
  const acc_t vyy = cyy * inv + eps_hw * (grid_axis_second_moment<acc_t>(H) + my * my);
  var[0] = vxx;
  var[1] = vxy;
  var[2] = vxy;
  var[3] = vyy;
  *lse = max + fm_log(sum);
}

// Backward: dL/dl_i = (1/T) p_i (f(g_i) - fbar), with f the derivative of the loss with respect
// to p_i (a quadratic in the coordinate) and fbar = sum_i p_i f(g_i), which follows in closed form
// from the forward outputs, so the backward is a single elementwise pass over the logits.
// f is written in coordinates centred on the mean, d_i = g_i - mean (constants cancel in
// f - fbar): with dvar/dw_i = d_i d_i^T + eps HW (g_i mean^T + mean g_i^T),
//   f(d) = (grad_mean + eps HW (G + G^T) mean) . d + d^T G d,   fbar = <G, C_p>,
// G = dL/dvar_raw and C_p = var_raw - eps HW (D + mean mean^T) the softmax's own covariance
// (sum p_i d_i = 0). In raw coordinates f and fbar are each O(|G|) and their difference at a
// near one-hot heatmap cancels to rounding noise, which the 1/T factor then amplifies; centred,
// both are O(|G| |d|^2) and vanish together.
template <typename acc_t>
struct MomentGradRow {
  acc_t cx, cy;          // the centre: the mean
  acc_t ax, ay;          // linear part of f in (x - cx, y - cy)
  acc_t qxx, qxy, qyy;   // quadratic part: qxx dx^2 + qxy dx dy + qyy dy^2
  acc_t fbar;
  acc_t lse;

  FM_HOST_DEVICE static MomentGradRow make(const acc_t* mean, const acc_t* var, acc_t lse,
                                           const acc_t* grad_mean, const acc_t* grad_var,
                                           int64_t H, int64_t W) {
    const acc_t eps_hw = acc_t(kHeatmapEps) * acc_t(H * W);
    const acc_t mx = mean[0], my = mean[1];
    const acc_t g00 = grad_var[0], g01 = grad_var[1], g10 = grad_var[2], g11 = grad_var[3];
    MomentGradRow r;
    r.cx = mx;
    r.cy = my;
    r.qxx = g00;
    r.qxy = g01 + g10;
    r.qyy = g11;
    r.ax = grad_mean[0] + eps_hw * (acc_t(2) * g00 * mx + r.qxy * my);
    r.ay = grad_mean[1] + eps_hw * (r.qxy * mx + acc_t(2) * g11 * my);
    const acc_t cpxx = var[0] - eps_hw * (grid_axis_second_moment<acc_t>(W) + mx * mx);
    const acc_t cpxy = var[1] - eps_hw * (mx * my);
    const acc_t cpyx = var[2] - eps_hw * (mx * my);
    const acc_t cpyy = var[3] - eps_hw * (grid_axis_second_moment<acc_t>(H) + my * my);
    r.fbar = g00 * cpxx + g01 * cpxy + g10 * cpyx + g11 * cpyy;
    r.lse = lse;
    return r;
  }

  // Gradient of one logit (already scaled by 1/T), before the final 1/T factor.
  FM_HOST_DEVICE acc_t grad(acc_t scaled_logit, acc_t x, acc_t y) const {
    const acc_t p = fm_exp(scaled_logit - lse);
    const acc_t dx = x - cx, dy = y - cy;
    const acc_t f = ax * dx + ay * dy + qxx * dx * dx + qxy * dx * dy + qyy * dy * dy;
    return p * (f - fbar);
  }
};

// ---- the detector's variance epilogue: clipping ('matrix') or isotropic reduction ('single') ----

// Smallest singular value of [[a, b], [c, d]] by the original's formula, the radicand clamped at 0.
template <typename acc_t>
FM_HOST_DEVICE acc_t smallest_singular(acc_t a, acc_t b, acc_t c, acc_t d) {
  const acc_t s1 = a * a + b * b + c * c + d * d;
  const acc_t u = a * a + b * b - c * c - d * d;
  const acc_t w = a * c + b * d;
  const acc_t s2 = fm_sqrt(u * u + acc_t(4) * w * w);
  const acc_t q = (s1 - s2) / acc_t(2);
  return q > acc_t(0) ? fm_sqrt(q) : acc_t(0);
}

// var_out from the raw covariance (row-major 2x2): 'matrix' scales it by clip / sg when its
// smallest singular value sg is in (0, clip) (the original's max(clip, sg) * var / sg; a
// singular matrix is left as is), 'single' writes (vxx + vyy) / 2 to out[0].
template <typename acc_t>
FM_HOST_DEVICE void moments_var_out(const acc_t* raw, int mode, acc_t clip, acc_t* out) {
  if (mode == kVarSingle) {
    out[0] = (raw[0] + raw[3]) / acc_t(2);
    return;
  }
  acc_t scale = acc_t(1);
  if (clip > acc_t(0)) {
    const acc_t sg = smallest_singular(raw[0], raw[1], raw[2], raw[3]);
    if (sg > acc_t(0) && sg < clip) scale = clip / sg;
  }
  for (int i = 0; i < 4; ++i) out[i] = raw[i] * scale;
}

// Gradient with respect to the raw covariance given the gradient of var_out.
template <typename acc_t>
FM_HOST_DEVICE void moments_var_grad(const acc_t* raw, int mode, acc_t clip, const acc_t* g_out, acc_t* g_raw) {
  if (mode == kVarSingle) {
    g_raw[0] = g_raw[3] = g_out[0] / acc_t(2);
    g_raw[1] = g_raw[2] = acc_t(0);
    return;
  }
  if (mode == kVarFixed) {
    for (int i = 0; i < 4; ++i) g_raw[i] = acc_t(0);
    return;
  }
  const acc_t a = raw[0], b = raw[1], c = raw[2], d = raw[3];
  const acc_t sg = clip > acc_t(0) ? smallest_singular(a, b, c, d) : acc_t(0);
  if (!(sg > acc_t(0) && sg < clip)) {
    for (int i = 0; i < 4; ++i) g_raw[i] = g_out[i];
    return;
  }
  // out = (clip / sg) * raw:  d out / d raw_ij = scale * e_ij - (clip / sg^2) * raw * d sg / d raw_ij
  const acc_t scale = clip / sg;
  const acc_t g_dot_raw = g_out[0] * a + g_out[1] * b + g_out[2] * c + g_out[3] * d;
  const acc_t u = a * a + b * b - c * c - d * d;
  const acc_t w = a * c + b * d;
  const acc_t s2 = fm_sqrt(u * u + acc_t(4) * w * w);
  const acc_t inv_s2 = s2 > acc_t(0) ? acc_t(1) / s2 : acc_t(0);
  // d sg = (d s1 - d s2) / (4 sg), d s1 = 2 raw, d s2 = (u du + 4 w dw) / s2
  const acc_t du[4] = {acc_t(2) * a, acc_t(2) * b, acc_t(-2) * c, acc_t(-2) * d};
  const acc_t dw[4] = {c, d, a, b};
  const acc_t coef = -clip / (sg * sg) * g_dot_raw / (acc_t(4) * sg);
  for (int i = 0; i < 4; ++i) {
    const acc_t ds2 = (u * du[i] + acc_t(4) * w * dw[i]) * inv_s2;
    g_raw[i] = scale * g_out[i] + coef * (acc_t(2) * raw[i] - ds2);
  }
}

}  // namespace fastmotion
