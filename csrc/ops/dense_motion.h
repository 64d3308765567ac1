// Shared argument checks of the dense-motion ops (compose_flow, shifted_warps); the CPU and
// CUDA bindings call these.
#pragma once

#include <ATen/core/Tensor.h>

namespace fastmotion {

// The accumulation dtype of a storage dtype: double for double, float otherwise.
at::ScalarType dense_motion_acc_type(at::ScalarType t);

// mask_logits (N, K+1, H, W) floating with H, W >= 1; kp_shift (N, K+1, 2) in the accumulation
// dtype of mask_logits; correction undefined or (N, 2, H, W) with mask_logits' dtype.
void check_compose_flow_forward(const at::Tensor& mask_logits, const at::Tensor& kp_shift,
                                const c10::optional<at::Tensor>& correction);
// grad_grid (N, H, W, 2) with mask_logits' dtype.
void check_compose_flow_backward(const at::Tensor& grad_grid, const at::Tensor& mask_logits,
                                 const at::Tensor& kp_shift);

// source (N, C, H, W) floating with H, W >= 1; kp_shift (N, K+1, 2) in its accumulation dtype.
void check_shifted_warps_forward(const at::Tensor& source, const at::Tensor& kp_shift);
// grad_out (N, K+1, C, H, W) with source's dtype.
void check_shifted_warps_backward(const at::Tensor& grad_out, const at::Tensor& source,
                                  const at::Tensor& kp_shift);

}  // namespace fastmotion
