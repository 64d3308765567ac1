// Shared argument checks of the warp_features ops (the CPU and CUDA bindings call these).
#pragma once

#include <ATen/core/Tensor.h>

namespace fastmotion {

// true for mode kModeNearest, false for kModeBilinear (the linear resize, align_corners=False).
bool warp_features_nearest(int64_t mode);

// features: (N, C_i, H_i, W_i), one floating dtype, H_i, W_i >= 1; grid (N, h, w, 2) in the
// accumulation dtype of the features (float; double for double), h, w >= 1; one device.
void check_warp_features_forward(at::TensorList features, const at::Tensor& grid, int64_t mode);
// grad_outs match features one to one (shape and dtype).
void check_warp_features_backward(at::TensorList grad_outs, at::TensorList features, const at::Tensor& grid,
                                  int64_t mode);

}  // namespace fastmotion
