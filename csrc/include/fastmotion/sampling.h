// grid_sample's sampling math, shared by host (CPU) and device (CUDA) kernels and mirrored by
// the Triton helpers in kernels/sampling.py. Torch-free.
//
// It follows PyTorch's vectorized CPU grid sampler (aten/src/ATen/native/cpu/GridSamplerKernel.cpp)
// operation by operation, so results match F.grid_sample on CPU bit for bit wherever the
// order of operations decides the result (which pixel `nearest` picks, NaN/inf handling):
//
//   unnormalize   align_corners: (g + 1) * ((size - 1) / 2)            == (g + 1) / 2 * (size - 1)
//                 otherwise:     (g + 1) * (size / 2) - 0.5             == ((g + 1) * size - 1) / 2
//                 (the pairs are equal in floating point: halving is exact)
//   border        clip to [0, size - 1]; NaN -> 0 (forward)
//   reflection    reflect about low = 0 | -0.5 with period 2 * span, then clip
//   bilinear      x0 = floor(x), fx = x - x0, weights (1 - fy)(1 - fx), (1 - fy) fx, fy (1 - fx), fy fx;
//                 a tap outside the image reads 0 but keeps its weight, so a NaN weight
//                 (NaN / inf coordinate with zeros padding) makes the output NaN, as in PyTorch
//   nearest       round half to even; a NaN / out-of-range coordinate reads 0
//
// Rounding: PyTorch's AVX2/AVX512 CPU kernels are built with FMA contraction, so the official
// wheels compute the unnormalize, the reflection's remainder and the interpolation with fused
// multiply-adds. These helpers make exactly those operations explicit fma's (fm_fma) and round
// every other product and sum separately (the host build passes -ffp-contract=off; device code
// uses the _rn intrinsics), so forward results equal F.grid_sample's on CPU bit for bit on any
// ISA. (PyTorch's own CUDA kernel rounds differently; ours follow the CPU kernel on the GPU too.)
//
// Backward (d coordinate / d grid): the unnormalize scale, times the reflection's sign
// (+1 / -1), times the clip's mask (0 on and beyond the borders). In the backward a NaN
// coordinate stays NaN through the clip (PyTorch's clip_coordinates_get_grad), so the grid
// gradient is NaN there and the input gradient gets nothing.
#pragma once

#include "fastmotion/common.h"

namespace fastmotion {

enum GridSamplePadding : int { kPadZeros = 0, kPadBorder = 1, kPadReflection = 2 };
enum GridSampleMode : int { kModeBilinear = 0, kModeNearest = 1 };

// Correctly rounded add / sub / mul that the compiler may not fuse into an FMA.
#if defined(__CUDA_ARCH__)
FM_HOST_DEVICE float fm_add(float a, float b) { return __fadd_rn(a, b); }
FM_HOST_DEVICE float fm_sub(float a, float b) { return __fsub_rn(a, b); }
FM_HOST_DEVICE float fm_mul(float a, float b) { return __fmul_rn(a, b); }
FM_HOST_DEVICE double fm_add(double a, double b) { return __dadd_rn(a, b); }
FM_HOST_DEVICE double fm_sub(double a, double b) { return __dsub_rn(a, b); }
FM_HOST_DEVICE double fm_mul(double a, double b) { return __dmul_rn(a, b); }
FM_HOST_DEVICE float fm_fma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
FM_HOST_DEVICE double fm_fma(double a, double b, double c) { return __fma_rn(a, b, c); }
#else
template <typename T> FM_HOST_DEVICE T fm_add(T a, T b) { return a + b; }
template <typename T> FM_HOST_DEVICE T fm_sub(T a, T b) { return a - b; }
template <typename T> FM_HOST_DEVICE T fm_mul(T a, T b) { return a * b; }
// One rounding: an instruction where the target has FMA, glibc's exact fma() otherwise.
FM_HOST_DEVICE float fm_fma(float a, float b, float c) { return std::fma(a, b, c); }
FM_HOST_DEVICE double fm_fma(double a, double b, double c) { return std::fma(a, b, c); }
#endif

// Round half to even (what PyTorch's nearest mode does with _mm256_round_ps / nearbyint),
// without libm or the FP environment: adding and removing 2^23 (2^52) rounds |x| to an
// integer in the default rounding mode; larger |x| (and inf) are integers already, NaN stays NaN.
FM_HOST_DEVICE float round_half_even(float x) {
  const float big = 8388608.0f;  // 2^23
  const float a = fm_abs(x);
  const float r = fm_sub(fm_add(a, big), big);
  return a < big ? copysignf(r, x) : x;
}
FM_HOST_DEVICE double round_half_even(double x) {
  const double big = 4503599627370496.0;  // 2^52
  const double a = fm_abs(x);
  const double r = fm_sub(fm_add(a, big), big);
  return a < big ? ::copysign(r, x) : x;
}

// Per-axis constants of the map from the normalized grid coordinate to a pixel coordinate.
template <typename acc_t>
struct SampleAxis {
  acc_t scale;       // (size - 1) / 2 with align_corners, size / 2 without: d pixel / d grid
  acc_t shift;       // 0 with align_corners, 0.5 without
  acc_t max_coord;   // size - 1: the clip's upper bound
  acc_t low;         // reflection's lower mirror: 0 | -0.5
  acc_t twice_span;  // reflection period: 2 (size - 1) | 2 size
  bool reflect_empty;  // align_corners and size == 1: every reflected coordinate is 0
  int64_t size;

  FM_HOST_DEVICE static SampleAxis make(int64_t size, bool align_corners) {
    SampleAxis a;
    a.size = size;
    a.max_coord = acc_t(size - 1);
    if (align_corners) {
      a.scale = acc_t(size - 1) / acc_t(2);
      a.shift = acc_t(0);
      a.low = acc_t(0);
      a.twice_span = acc_t(size - 1) * acc_t(2);
      a.reflect_empty = size <= 1;
    } else {
      a.scale = acc_t(size) / acc_t(2);
      a.shift = acc_t(0.5);
      a.low = acc_t(-0.5);
      a.twice_span = acc_t(size) * acc_t(2);
      a.reflect_empty = false;
    }
    return a;
  }

  // fma(g + 1, scale, -shift): with shift == 0 it is the plain product.
  FM_HOST_DEVICE acc_t unnormalize(acc_t g) const { return fm_fma(fm_add(g, acc_t(1)), scale, -shift); }

  // Forward clip: [0, size - 1], NaN -> 0.
  FM_HOST_DEVICE acc_t clip(acc_t x) const {
    return x > acc_t(0) ? (x < max_coord ? x : max_coord) : acc_t(0);
  }

  // Backward clip: NaN stays NaN with multiplier 1; on or beyond a border the multiplier is 0.
  FM_HOST_DEVICE acc_t clip_with_grad(acc_t x, acc_t* d) const {
    if (fm_isnan(x)) {
      *d = acc_t(1);
      return x;
    }
    if (x > acc_t(0)) {
      if (x < max_coord) {
        *d = acc_t(1);
        return x;
      }
      *d = acc_t(0);
      return max_coord;
    }
    *d = acc_t(0);
    return acc_t(0);
  }

  // Distance into the current period of the reflection and whether it runs backwards.
  FM_HOST_DEVICE acc_t reflect_extra(acc_t x, bool* negative) const {
    const acc_t in = fm_sub(x, low);
    *negative = in < acc_t(0);
    const acc_t a = fm_abs(in);
    const acc_t flips = fm_trunc(a / twice_span);
    return fm_fma(-flips, twice_span, a);
  }

  // Forward reflection (before the clip). NaN propagates (PyTorch's `minimum`).
  FM_HOST_DEVICE acc_t reflect(acc_t x) const {
    if (reflect_empty) return acc_t(0);
    bool negative;
    const acc_t extra = reflect_extra(x, &negative);
    const acc_t mirrored = fm_sub(twice_span, extra);
    const acc_t m = fm_isnan(extra) ? extra : (extra > mirrored ? mirrored : extra);
    return fm_add(m, low);
  }

  FM_HOST_DEVICE acc_t reflect_with_grad(acc_t x, acc_t* d) const {
    if (reflect_empty) {
      *d = acc_t(0);
      return acc_t(0);
    }
    bool negative;
    const acc_t extra = reflect_extra(x, &negative);
    const acc_t mirrored = fm_sub(twice_span, extra);
    const bool one_more = extra > mirrored;
    *d = (one_more != negative) ? acc_t(-1) : acc_t(1);
    return fm_add(one_more ? mirrored : extra, low);
  }

  // Pixel coordinate of grid value g under `padding` (forward).
  FM_HOST_DEVICE acc_t coordinate(acc_t g, int padding) const {
    const acc_t x = unnormalize(g);
    if (padding == kPadBorder) return clip(x);
    if (padding == kPadReflection) return clip(reflect(x));
    return x;
  }

  // Pixel coordinate and d coordinate / d g (backward).
  FM_HOST_DEVICE acc_t coordinate_with_grad(acc_t g, int padding, acc_t* d) const {
    const acc_t x = unnormalize(g);
    if (padding == kPadBorder) {
      acc_t m;
      const acc_t c = clip_with_grad(x, &m);
      *d = m != acc_t(0) ? scale : acc_t(0);
      return c;
    }
    if (padding == kPadReflection) {
      acc_t sign, m;
      const acc_t c = clip_with_grad(reflect_with_grad(x, &sign), &m);
      *d = m != acc_t(0) ? fm_mul(sign, scale) : acc_t(0);
      return c;
    }
    *d = scale;
    return x;
  }

  // Whether an integer-valued pixel index (as a float: floor / rounded coordinate) is inside
  // the image. False for NaN and +-inf.
  FM_HOST_DEVICE bool inside(acc_t i) const { return i >= acc_t(0) && i < acc_t(size); }
};

// The four bilinear taps of pixel coordinate (x, y): the north-west corner, the distances to
// the sides, the corner weights (nw, ne, sw, se) and which corners lie inside the image.
template <typename acc_t>
struct BilinearTaps {
  int64_t x0, y0;        // north-west corner (valid only where the masks say so)
  acc_t fx, fy;          // x - floor(x), y - floor(y)  (PyTorch's w and n)
  acc_t ex, sy;          // 1 - fx, 1 - fy              (PyTorch's e and s)
  acc_t w_nw, w_ne, w_sw, w_se;
  bool in_nw, in_ne, in_sw, in_se;

  FM_HOST_DEVICE static BilinearTaps make(acc_t x, acc_t y, const SampleAxis<acc_t>& ax,
                                          const SampleAxis<acc_t>& ay) {
    BilinearTaps t;
    const acc_t xf = fm_floor(x), yf = fm_floor(y);
    t.fx = fm_sub(x, xf);
    t.ex = fm_sub(acc_t(1), t.fx);
    t.fy = fm_sub(y, yf);
    t.sy = fm_sub(acc_t(1), t.fy);
    t.w_nw = fm_mul(t.sy, t.ex);
    t.w_ne = fm_mul(t.sy, t.fx);
    t.w_sw = fm_mul(t.fy, t.ex);
    t.w_se = fm_mul(t.fy, t.fx);
    const bool w_in = ax.inside(xf), e_in = ax.inside(fm_add(xf, acc_t(1)));
    const bool n_in = ay.inside(yf), s_in = ay.inside(fm_add(yf, acc_t(1)));
    t.in_nw = w_in && n_in;
    t.in_ne = e_in && n_in;
    t.in_sw = w_in && s_in;
    t.in_se = e_in && s_in;
    // Only convert finite, in-range floors (anything else is never dereferenced).
    t.x0 = (w_in || e_in) ? static_cast<int64_t>(xf) : 0;
    t.y0 = (n_in || s_in) ? static_cast<int64_t>(yf) : 0;
    return t;
  }

  // Interpolate from the four corner values (0 for corners outside the image), in PyTorch's
  // order of summation: ((nw + ne) + sw) + se, each addition fused with its product.
  FM_HOST_DEVICE acc_t interpolate(acc_t v_nw, acc_t v_ne, acc_t v_sw, acc_t v_se) const {
    return fm_fma(v_se, w_se, fm_fma(v_sw, w_sw, fm_fma(v_ne, w_ne, fm_mul(v_nw, w_nw))));
  }

  // This channel's contribution to d out / d x and d out / d y (before the coordinate's
  // own derivative), times the output gradient g.
  FM_HOST_DEVICE void grad_coord(acc_t v_nw, acc_t v_ne, acc_t v_sw, acc_t v_se, acc_t g, acc_t* gx,
                                 acc_t* gy) const {
    *gx = fm_mul(fm_fma(fm_sub(v_ne, v_nw), sy, fm_mul(fm_sub(v_se, v_sw), fy)), g);
    *gy = fm_mul(fm_fma(fm_sub(v_sw, v_nw), ex, fm_mul(fm_sub(v_se, v_ne), fx)), g);
  }
};

// Nearest tap of pixel coordinate (x, y): index and whether it is inside the image.
template <typename acc_t>
struct NearestTap {
  int64_t x, y;
  bool inside;

  FM_HOST_DEVICE static NearestTap make(acc_t x, acc_t y, const SampleAxis<acc_t>& ax,
                                        const SampleAxis<acc_t>& ay) {
    NearestTap t;
    const acc_t xr = round_half_even(x), yr = round_half_even(y);
    t.inside = ax.inside(xr) && ay.inside(yr);
    t.x = t.inside ? static_cast<int64_t>(xr) : 0;
    t.y = t.inside ? static_cast<int64_t>(yr) : 0;
    return t;
  }
};

}  // namespace fastmotion
