// Shared argument checks of the heatmap-moments ops (CPU and CUDA bindings call these).
#pragma once

#include <ATen/core/Tensor.h>

namespace fastmotion {

// logits: (R, H, W) floating, H, W >= 1; temperature > 0.
void check_heatmap_moments_forward(const at::Tensor& logits, double temperature);

// The backward's saved tensors and incoming gradients must match the forward's shapes.
void check_heatmap_moments_backward(const at::Tensor& grad_mean, const at::Tensor& grad_var,
                                    const at::Tensor& logits, const at::Tensor& mean,
                                    const at::Tensor& var, const at::Tensor& lse, double temperature);

}  // namespace fastmotion
