// CUDA launchers of the Gaussian-heatmap ops. Torch-free: raw pointers, sizes and a stream, so
// TensorRT plugins can reuse them. scalar_t: float, double, __half, __nv_bfloat16 (math in
// acc_type_t<scalar_t>: float, or double for double). Math: csrc/include/fastmotion/render_gaussians.h.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "fastmotion/cuda_types.h"
#include "fastmotion/var_mode.h"

namespace fastmotion {

// One input's keypoints: mean (A, B, K, 2) and var (A, B, K, c, c) (c = 2 matrix, 1 isotropic;
// null for a fixed variance). Leading strides in elements (0 for a broadcast dimension); the
// (K, ...) block of each tensor is contiguous.
template <typename scalar_t>
struct GaussianKeypoints {
  const scalar_t* mean = nullptr;
  const scalar_t* var = nullptr;
  int64_t m_sa = 0, m_sb = 0, v_sa = 0, v_sb = 0;
};

struct GaussianDims {
  int64_t A = 0, B = 0, K = 0, H = 0, W = 0;
  int mode = kVarFixed;     // VarMode
  bool has_source = false;  // difference heatmaps (driving - source)
  bool background = false;  // a zero channel first
  bool norm_sum = false;    // divide by each heatmap's sum (else by norm_const)
  double fixed_var = 1.0;   // the variance when mode == kVarFixed
  double norm_const = 1.0;
};

// Element strides of grad_out (A, B, C, H, W).
struct GaussianGradStrides {
  int64_t s[5];
};

// Per-keypoint partial moments the backward writes when it splits a heatmap over several blocks.
constexpr int kGaussianPartials = 24;

// out (A, B, K + background, H, W), contiguous.
template <typename scalar_t>
cudaError_t render_gaussians_forward_cuda(const GaussianKeypoints<scalar_t>& driving,
                                          const GaussianKeypoints<scalar_t>& source, const GaussianDims& dims,
                                          scalar_t* out, cudaStream_t stream);

// Row ranges per keypoint heatmap the backward uses on `device` (1 = no partials needed).
int gaussian_backward_split(const GaussianDims& dims, int device);

// Dense gradients (A, B, K, 2) / (A, B, K, c, c) of driving and source keypoints (gv*, gms null
// when absent). `partials`: A * B * K * split * kGaussianPartials accumulators (unused if split == 1).
template <typename scalar_t>
cudaError_t render_gaussians_backward_cuda(const scalar_t* grad_out, const GaussianGradStrides& grad_strides,
                                           const GaussianKeypoints<scalar_t>& driving,
                                           const GaussianKeypoints<scalar_t>& source, const GaussianDims& dims,
                                           int split, acc_type_t<scalar_t>* partials, scalar_t* grad_mean_d,
                                           scalar_t* grad_var_d, scalar_t* grad_mean_s, scalar_t* grad_var_s,
                                           cudaStream_t stream);

}  // namespace fastmotion
