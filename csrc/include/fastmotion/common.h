// Math shared by host (CPU) and device (CUDA) kernels. No torch includes: the CUDA kernel
// files that use it are compiled by nvcc without torch and reused by TensorRT plugins.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FM_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FM_HOST_DEVICE inline
#endif

namespace fastmotion {

// Math functions that pick the single- or double-precision routine on host and device alike.
FM_HOST_DEVICE float fm_exp(float x) { return expf(x); }
FM_HOST_DEVICE double fm_exp(double x) { return ::exp(x); }
FM_HOST_DEVICE float fm_log(float x) { return logf(x); }
FM_HOST_DEVICE double fm_log(double x) { return ::log(x); }
FM_HOST_DEVICE float fm_sqrt(float x) { return sqrtf(x); }
FM_HOST_DEVICE double fm_sqrt(double x) { return ::sqrt(x); }
FM_HOST_DEVICE float fm_floor(float x) { return floorf(x); }
FM_HOST_DEVICE double fm_floor(double x) { return ::floor(x); }
FM_HOST_DEVICE float fm_trunc(float x) { return truncf(x); }
FM_HOST_DEVICE double fm_trunc(double x) { return ::trunc(x); }
FM_HOST_DEVICE float fm_abs(float x) { return fabsf(x); }
FM_HOST_DEVICE double fm_abs(double x) { return ::fabs(x); }
FM_HOST_DEVICE bool fm_isnan(float x) { return x != x; }
FM_HOST_DEVICE bool fm_isnan(double x) { return x != x; }

// Monkey-Net's normalized coordinate of pixel `i` on an axis of `size` pixels:
// 2 * (i / (size - 1)) - 1, endpoints included. A single-pixel axis sits at 0.
template <typename acc_t>
FM_HOST_DEVICE acc_t grid_coord(int64_t i, int64_t size) {
  return size > 1 ? acc_t(2) * (acc_t(i) / acc_t(size - 1)) - acc_t(1) : acc_t(0);
}

// Mean of the squared coordinate over one axis of the grid: (n + 1) / (3 (n - 1)), 0 for n = 1.
template <typename acc_t>
FM_HOST_DEVICE acc_t grid_axis_second_moment(int64_t size) {
  return size > 1 ? acc_t(size + 1) / (acc_t(3) * acc_t(size - 1)) : acc_t(0);
}

}  // namespace fastmotion
