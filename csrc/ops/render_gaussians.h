// Shared argument checks and layout helpers of the Gaussian-heatmap ops (CPU and CUDA bindings).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace fastmotion {

// Sizes and variance mode of one call, after the checks. The keypoints have one or two leading
// dims, (B, K, ...) or (A, B, K, ...); with one, A = 1.
struct GaussianShape {
  int64_t A, B, K, C, H, W;
  int lead;  // number of leading dims: 1 or 2
  int mode;  // VarMode (fastmotion/var_mode.h)
  bool has_source;
};

// Element strides of a keypoint tensor (or grad_out) along A and B (A's is 0 with one leading dim).
struct LeadStrides {
  int64_t a, b;
};
LeadStrides lead_strides(const at::Tensor& t, int lead);

// Sizes of an output with the keypoints' leading dims followed by `rest`.
std::vector<int64_t> lead_sizes(const at::Tensor& mean, int lead, std::initializer_list<int64_t> rest);

// mean_d (A, B, K, 2) or (B, K, 2); var_d (..., K, 2, 2) | (..., K, 1, 1) | none (fixed_var);
// mean_s, var_s: the source keypoints with the same shapes (or both none). H, W >= 1.
GaussianShape check_gaussian_forward(const at::Tensor& mean_d, const c10::optional<at::Tensor>& var_d,
                                     const c10::optional<at::Tensor>& mean_s,
                                     const c10::optional<at::Tensor>& var_s, double fixed_var, int64_t H,
                                     int64_t W, double norm_const, bool norm_sum, bool background);

// As above, plus grad_out (A, B, K + background, H, W) or (B, K + background, H, W) (any strides).
GaussianShape check_gaussian_backward(const at::Tensor& grad_out, const at::Tensor& mean_d,
                                      const c10::optional<at::Tensor>& var_d,
                                      const c10::optional<at::Tensor>& mean_s,
                                      const c10::optional<at::Tensor>& var_s, double fixed_var,
                                      double norm_const, bool norm_sum, bool background);

// The kernels index keypoint tensors as base + a * sa + b * sb + k * block + i, so the dims after
// the `lead` leading ones must form one contiguous block; leading strides may be anything (0 for
// broadcast). Returns t itself when it already does, else a contiguous copy.
at::Tensor keypoint_block_contiguous(const at::Tensor& t, int lead);

// The keypoint tensors of one call, each made block-contiguous (keypoint_block_contiguous);
// absent ones stay undefined. Shared by the CPU and CUDA bindings.
struct GaussianInputs {
  at::Tensor mean_d, var_d, mean_s, var_s;
};
GaussianInputs prepare_gaussian_inputs(const at::Tensor& mean_d, const c10::optional<at::Tensor>& var_d,
                                       const c10::optional<at::Tensor>& mean_s,
                                       const c10::optional<at::Tensor>& var_s, int lead);

}  // namespace fastmotion
