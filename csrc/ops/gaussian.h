// Shared argument checks and layout helpers of the Gaussian-heatmap ops (CPU and CUDA bindings).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cstdint>

namespace fastmotion {

// Sizes and variance mode of one call, after the checks.
struct GaussianShape {
  int64_t A, B, K, C, H, W;
  int mode;  // GaussianVarMode
  bool has_source;
};

// mean_d (A, B, K, 2); var_d (A, B, K, 2, 2) | (A, B, K, 1, 1) | none (fixed_var); mean_s, var_s:
// the source keypoints with the same shapes (or both none). H, W >= 1. Returns the sizes.
GaussianShape check_gaussian_forward(const at::Tensor& mean_d, const c10::optional<at::Tensor>& var_d,
                                     const c10::optional<at::Tensor>& mean_s,
                                     const c10::optional<at::Tensor>& var_s, double fixed_var, int64_t H,
                                     int64_t W, double norm_const, bool norm_sum, bool background);

// As above, plus grad_out (A, B, K + background, H, W) (any strides).
GaussianShape check_gaussian_backward(const at::Tensor& grad_out, const at::Tensor& mean_d,
                                      const c10::optional<at::Tensor>& var_d,
                                      const c10::optional<at::Tensor>& mean_s,
                                      const c10::optional<at::Tensor>& var_s, double fixed_var,
                                      double norm_const, bool norm_sum, bool background);

// The kernels index keypoint tensors as base + a * stride(0) + b * stride(1) + k * block + i, so
// dims 2.. must form one contiguous block; leading strides may be anything (0 for broadcast).
// Returns t itself when it already does, else a contiguous copy.
at::Tensor keypoint_block_contiguous(const at::Tensor& t);

}  // namespace fastmotion
