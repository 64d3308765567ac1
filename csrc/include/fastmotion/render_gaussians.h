// Gaussian keypoint heatmaps: the math shared by the CPU and CUDA kernels (and mirrored by the
// Triton kernels in kernels/gaussian.py). The spec is fastmotion/reference/gaussian.py.
//
// One keypoint renders G(g) = exp(-0.5 max(q, 0)) with the quadratic form
//   q = pa dx^2 + pb dx dy + pc dy^2,   (dx, dy) = g - mean,
// whose coefficients come from the precision P = adj(var) / max(det(var), kDetEps):
//   pa = P00, pb = P01 + P10, pc = P11   (an isotropic variance v is the matrix v I).
// Per row of pixels dy is fixed, so q = dx (pa dx + pb dy) + pc dy^2: two FMAs per pixel after
// hoisting t = pb dy and u = pc dy^2.
//
// Backward. With s_p = dL/dq_p (zero where q_p < 0, the clamp), every parameter gradient is a
// linear function of five moments of s over the heatmap:
//   Mx = sum s dx, My = sum s dy, Mxx = sum s dx^2, Mxy = sum s dx dy, Myy = sum s dy^2
//   dL/dmean = -(2 pa Mx + pb My, pb Mx + 2 pc My);  dL/d(pa, pb, pc) = (Mxx, Mxy, Myy),
// and the chain rule through P(var) is gaussian_param_grads below.
#pragma once

#include "fastmotion/common.h"
#include "fastmotion/var_mode.h"

namespace fastmotion {

// Smallest determinant used when inverting a covariance (reference: DET_EPS).
constexpr double kGaussianDetEps = 1e-12;

// A quadratic form this large on every pixel makes the heatmap exp(-0.5 q) <= exp(-1000): 0 in
// float and double alike (see far_keypoint_scale).
constexpr double kGaussianFarQuad = 2000.0;

// x < lo ? lo : x, written so that NaN propagates (std::max / fmaxf would drop it).
template <typename acc_t>
FM_HOST_DEVICE acc_t clamp_min_nan(acc_t x, acc_t lo) {
  return x < lo ? lo : x;
}

// One keypoint's mean and quadratic-form coefficients.
template <typename acc_t>
struct GaussQuad {
  acc_t mx, my;
  acc_t pa, pb, pc;

  // v: the variance entries (v[0] for an isotropic variance, v[0..3] row-major for a matrix);
  // fixed_var is used for kVarFixed.
  FM_HOST_DEVICE static GaussQuad make(acc_t mx, acc_t my, int mode, const acc_t* v, acc_t fixed_var) {
    GaussQuad g;
    g.mx = mx;
    g.my = my;
    if (mode == kVarMatrix) {
      const acc_t det = clamp_min_nan(v[0] * v[3] - v[1] * v[2], acc_t(kGaussianDetEps));
      const acc_t inv = acc_t(1) / det;
      g.pa = v[3] * inv;
      g.pb = -(v[1] + v[2]) * inv;
      g.pc = v[0] * inv;
    } else {
      const acc_t s = mode == kVarSingle ? v[0] : fixed_var;
      const acc_t p = s / clamp_min_nan(s * s, acc_t(kGaussianDetEps));
      g.pa = p;
      g.pb = acc_t(0);
      g.pc = p;
    }
    const acc_t s = far_keypoint_scale(mx, my, g.pa, g.pb, g.pc);
    g.mx = mx * s;
    g.my = my * s;
    return g;
  }

  // A finite keypoint so far off the grid that q > kGaussianFarQuad on every pixel renders 0 and
  // has zero gradients, but q itself can overflow (mean 1e19: inf - inf = NaN in the per-pixel
  // sum of terms). Such a keypoint is moved towards the grid, to where q on every pixel is still
  // above kGaussianFarQuad (the heatmap stays exactly 0) but finite: the returned scale of the
  // mean, 1 for every other keypoint. With lmin the smallest eigenvalue of the (symmetrised)
  // precision, q >= lmin |g - mean|^2 and every pixel g lies in [-1, 1]^2, so a mean at
  // Chebyshev radius r >= 2 + sqrt(kGaussianFarQuad / lmin) is far enough. A precision that is
  // not positive definite (lmin <= 0, NaN) keeps its mean.
  FM_HOST_DEVICE static acc_t far_keypoint_scale(acc_t mx, acc_t my, acc_t pa, acc_t pb, acc_t pc) {
    const acc_t ax = mx < acc_t(0) ? -mx : mx, ay = my < acc_t(0) ? -my : my;
    const acc_t far = ax > ay ? ax : ay;
    if (!(far > acc_t(2)) || !(far - far == acc_t(0))) return acc_t(1);  // near, NaN or inf
    const acc_t hb = acc_t(0.5) * pb, hd = acc_t(0.5) * (pa - pc);
    const acc_t lmax = acc_t(0.5) * (pa + pc) + fm_sqrt(hd * hd + hb * hb);
    const acc_t lmin = lmax > acc_t(0) ? (pa * pc - hb * hb) / lmax : acc_t(0);
    if (!(lmin > acc_t(0))) return acc_t(1);
    const acc_t reach = acc_t(2) + fm_sqrt(acc_t(kGaussianFarQuad) / lmin);
    return far > reach ? reach / far : acc_t(1);
  }

  // The quadratic form, with the per-row terms t = pb dy and u = pc dy^2 hoisted.
  FM_HOST_DEVICE acc_t q(acc_t dx, acc_t t, acc_t u) const { return dx * (pa * dx + t) + u; }

  FM_HOST_DEVICE acc_t value(acc_t x, acc_t y) const {
    const acc_t dx = x - mx, dy = y - my;
    const acc_t qq = q(dx, pb * dy, pc * dy * dy);
    return fm_exp(acc_t(-0.5) * (qq < acc_t(0) ? acc_t(0) : qq));
  }
};

// Gradients of one keypoint's mean (gm[2]) and variance (gv[var_mode_numel(mode)]) from the
// five moments M = (Mx, My, Mxx, Mxy, Myy) of dL/dq. v: the variance entries as in make().
template <typename acc_t>
FM_HOST_DEVICE void gaussian_param_grads(const GaussQuad<acc_t>& g, int mode, const acc_t* v, const acc_t* M,
                                         acc_t* gm, acc_t* gv) {
  const acc_t Mx = M[0], My = M[1], Mxx = M[2], Mxy = M[3], Myy = M[4];
  gm[0] = -(acc_t(2) * g.pa * Mx + g.pb * My);
  gm[1] = -(g.pb * Mx + acc_t(2) * g.pc * My);
  if (mode == kVarMatrix) {
    // P = adj(V) / dc, dc = max(det V, eps): dL/dV = (dN/dV - [det >= eps] T ddet/dV) / dc with
    // N = <(Mxx, Mxy, Myy), adj-coefficients> and T = N / dc = pa Mxx + pb Mxy + pc Myy.
    const acc_t det = v[0] * v[3] - v[1] * v[2];
    const acc_t dc = clamp_min_nan(det, acc_t(kGaussianDetEps));
    const acc_t inv = acc_t(1) / dc;
    const acc_t t = det >= acc_t(kGaussianDetEps) ? g.pa * Mxx + g.pb * Mxy + g.pc * Myy : acc_t(0);
    gv[0] = (Myy - t * v[3]) * inv;
    gv[1] = (t * v[2] - Mxy) * inv;
    gv[2] = (t * v[1] - Mxy) * inv;
    gv[3] = (Mxx - t * v[0]) * inv;
  } else if (mode == kVarSingle) {
    // p = v / max(v^2, eps): dp/dv = (1 - [v^2 >= eps] 2 v^2 / dc) / dc.
    const acc_t s = v[0];
    const acc_t s2 = s * s;
    const acc_t dc = clamp_min_nan(s2, acc_t(kGaussianDetEps));
    const acc_t dp = (acc_t(1) - (s2 >= acc_t(kGaussianDetEps) ? acc_t(2) * s2 / dc : acc_t(0))) / dc;
    gv[0] = (Mxx + Myy) * dp;
  }
}

// Index of the grid pixel nearest to coordinate c on an axis of n pixels (clamped; 0 for NaN).
template <typename acc_t>
FM_HOST_DEVICE int64_t nearest_pixel(acc_t c, int64_t n) {
  if (n <= 1 || !(c == c)) return 0;
  const acc_t f = (c + acc_t(1)) * acc_t(0.5) * acc_t(n - 1);
  if (f <= acc_t(0)) return 0;
  if (f >= acc_t(n - 1)) return n - 1;
  return static_cast<int64_t>(f + acc_t(0.5));
}

// Scale of a heatmap's moments into dL/dq moments. Per pixel dL/dG = sign * (gout - c) / S for
// sum normalisation (c = sum gout G / S) and sign * gout * scale for a constant norm; dL/dq =
// -0.5 G dL/dG. `wg`: the five moments weighted by gout G, `w`: weighted by G (both masked
// where q < 0); `sum`, `dot`: sum G and sum gout G (unmasked).
// Sum normalisation subtracts two sums that cancel when gout is nearly constant over the heatmap
// (exactly, for a loss like out.sum()). The kernels therefore accumulate wg and dot with gout
// shifted by g0, its value at the pixel nearest the keypoint (nearest_pixel): the result is
// unchanged in exact arithmetic and the cancellation is gone.
template <typename acc_t>
FM_HOST_DEVICE void gaussian_moments_to_dq(bool norm_sum, acc_t scale, acc_t sign, const acc_t* wg, const acc_t* w,
                                           acc_t sum, acc_t dot, acc_t* M) {
  if (norm_sum) {
    const acc_t inv_s = sum == acc_t(0) ? acc_t(1) : acc_t(1) / sum;  // an empty heatmap has zero gradient
    const acc_t c = dot * inv_s;
    const acc_t f = acc_t(-0.5) * sign * inv_s;
    for (int i = 0; i < 5; ++i) M[i] = f * (wg[i] - c * w[i]);
  } else {
    const acc_t f = acc_t(-0.5) * sign * scale;
    for (int i = 0; i < 5; ++i) M[i] = f * wg[i];
  }
}

}  // namespace fastmotion
