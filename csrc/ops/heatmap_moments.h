// Shared argument checks of the heatmap-moments ops (CPU and CUDA bindings call these).
#pragma once

#include <ATen/core/Tensor.h>

namespace fastmotion {

// logits: (R, H, W) floating, H, W >= 1; temperature > 0; var_mode 0 (matrix), 1 (single) or
// 2 (fixed) (VarMode); clip >= 0 (0: no clipping).
void check_heatmap_moments_forward(const at::Tensor& logits, double temperature, int64_t var_mode, double clip);

// Shape of the var output for a var_mode: (R, 1, 1) for 'single', else (R, 2, 2).
int64_t heatmap_moments_var_size(int64_t var_mode);

// The backward's saved tensors and incoming gradients must match the forward's shapes.
void check_heatmap_moments_backward(const at::Tensor& grad_mean, const at::Tensor& grad_var,
                                    const at::Tensor& logits, const at::Tensor& mean,
                                    const at::Tensor& var_raw, const at::Tensor& lse, double temperature,
                                    int64_t var_mode, double clip);

}  // namespace fastmotion
