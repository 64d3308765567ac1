// Coordinate math of the dense-motion warps (compose_flow, shifted_warps, warp_features), shared
// by the CPU and CUDA kernels and mirrored by the Triton kernels in kernels/dense_motion.py.
// No torch includes.
//
// Sampling is grid_sample's bilinear / zeros / align_corners=True. Every coordinate is computed
// in the same order of operations as the PyTorch reference (Monkey-Net's grid, then
// grid_sample's unnormalize), so that the floor() that picks a pixel's taps agrees with the
// reference even at exact integer positions, where the value is continuous but the derivative
// with respect to the coordinate jumps (a zero shift lands there: rounding puts some pixels at
// j - 1 ulp, whose left tap is j - 1).
#pragma once

#include <cmath>
#include <cstdint>

#include "fastmotion/common.h"
#include "fastmotion/sampling.h"  // fm_floor

namespace fastmotion {

// grid_sample's unnormalize for align_corners=True: ((g + 1) / 2) * (size - 1).
template <typename acc_t>
FM_HOST_DEVICE acc_t unnormalize_align_corners(acc_t g, int64_t size) {
  return ((g + acc_t(1)) / acc_t(2)) * acc_t(size - 1);
}

// One axis of a bilinear, zero-padded lookup at unnormalized coordinate c: taps i0 and i0 + 1
// with weights 1 - frac and frac. Coordinates far outside the image are clamped to
// [-2, size + 1] first: both taps stay outside, and the integer conversion stays defined.
// A NaN or infinite coordinate gets frac = NaN (its taps are outside), so the sample is NaN,
// as grid_sample's (whose weights are NaN there).
template <typename acc_t>
struct AxisTaps {
  int64_t i0;
  acc_t frac;
  FM_HOST_DEVICE bool in0(int64_t size) const { return i0 >= 0 && i0 < size; }
  FM_HOST_DEVICE bool in1(int64_t size) const { return i0 + 1 >= 0 && i0 + 1 < size; }
};

template <typename acc_t>
FM_HOST_DEVICE AxisTaps<acc_t> axis_taps(acc_t c, int64_t size) {
  const acc_t lo = acc_t(-2), hi = acc_t(size + 1);
  const acc_t nonfinite = c - c;  // 0, or NaN for NaN / inf
  c = c >= lo ? (c <= hi ? c : hi) : lo;  // NaN -> lo
  const acc_t f = fm_floor(c);
  AxisTaps<acc_t> t;
  t.i0 = static_cast<int64_t>(f);
  t.frac = (c - f) + nonfinite;
  return t;
}

// Taps along one axis of the source for output index j of a block shifted by `shift`
// (normalized units): the coordinate Monkey-Net's grid + shift gives, unnormalized.
template <typename acc_t>
FM_HOST_DEVICE AxisTaps<acc_t> shifted_axis_taps(int64_t j, int64_t size, acc_t shift) {
  return axis_taps<acc_t>(unnormalize_align_corners<acc_t>(grid_coord<acc_t>(j, size) + shift, size), size);
}

// The four bilinear taps of one sample from its two axes' taps: which lie inside the H x W
// plane, their weights, and the offset of the (y0, x0) tap in a plane of strides (sh, sw)
// (valid only where a mask is set).
template <typename acc_t>
struct PlaneTaps {
  AxisTaps<acc_t> x, y;
  bool in00, in01, in10, in11;
  acc_t w00, w01, w10, w11;
  int64_t off00;

  FM_HOST_DEVICE static PlaneTaps make(AxisTaps<acc_t> ax, AxisTaps<acc_t> ay, int64_t H, int64_t W, int64_t sh,
                                       int64_t sw) {
    PlaneTaps t;
    t.x = ax;
    t.y = ay;
    const bool x0 = ax.in0(W), x1 = ax.in1(W), y0 = ay.in0(H), y1 = ay.in1(H);
    t.in00 = y0 && x0;
    t.in01 = y0 && x1;
    t.in10 = y1 && x0;
    t.in11 = y1 && x1;
    const acc_t fx = ax.frac, fy = ay.frac;
    t.w00 = (acc_t(1) - fy) * (acc_t(1) - fx);
    t.w01 = (acc_t(1) - fy) * fx;
    t.w10 = fy * (acc_t(1) - fx);
    t.w11 = fy * fx;
    t.off00 = ay.i0 * sh + ax.i0 * sw;
    return t;
  }
};

// F.interpolate(mode="nearest") source index along one axis: min(floor(dst * (in / out)), in - 1)
// with the scale and the product in float, as PyTorch computes it (also for double tensors).
FM_HOST_DEVICE int64_t nearest_source_index(int64_t dst, int64_t in, int64_t out) {
  if (in == out) return dst;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const int64_t s = static_cast<int64_t>(floorf(static_cast<float>(dst) * scale));
  return s < in - 1 ? s : in - 1;
}

// F.interpolate(mode="bilinear", align_corners=False) along one axis: value = w0 v[i0] + w1 v[i1].
template <typename acc_t>
struct ResizeTaps {
  int64_t i0, i1;
  acc_t w0, w1;
};

template <typename acc_t>
FM_HOST_DEVICE ResizeTaps<acc_t> linear_resize_taps(int64_t dst, int64_t in, int64_t out) {
  ResizeTaps<acc_t> t;
  if (in == out) {  // the reference skips the resize: exact identity
    t.i0 = t.i1 = dst;
    t.w0 = acc_t(1);
    t.w1 = acc_t(0);
    return t;
  }
  const acc_t scale = static_cast<acc_t>(in) / static_cast<acc_t>(out);
  acc_t src = scale * (static_cast<acc_t>(dst) + acc_t(0.5)) - acc_t(0.5);
  src = src < acc_t(0) ? acc_t(0) : src;
  int64_t i0 = static_cast<int64_t>(src);
  i0 = i0 < in - 1 ? i0 : in - 1;
  acc_t l1 = src - static_cast<acc_t>(i0);
  l1 = l1 < acc_t(0) ? acc_t(0) : (l1 > acc_t(1) ? acc_t(1) : l1);
  t.i0 = i0;
  t.i1 = i0 + (i0 < in - 1 ? 1 : 0);
  t.w1 = l1;
  t.w0 = acc_t(1) - l1;
  return t;
}

}  // namespace fastmotion
