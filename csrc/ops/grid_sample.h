// Shared argument checks of the grid_sample ops (CPU and CUDA bindings call these).
#pragma once

#include <ATen/core/Tensor.h>

namespace fastmotion {

// input (N, C, H, W) floating with H, W >= 1; grid (N, Ho, Wo, 2) of the same dtype and device;
// mode 0 bilinear | 1 nearest; padding_mode 0 zeros | 1 border | 2 reflection.
void check_grid_sample_forward(const at::Tensor& input, const at::Tensor& grid, int64_t mode,
                               int64_t padding_mode);

// grad_output (N, C, Ho, Wo) of the input's dtype, plus the forward's checks.
void check_grid_sample_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                const at::Tensor& grid, int64_t mode, int64_t padding_mode);

// Whether the kernels treat `input` as channels-last (NHWC in memory). Inputs that are neither
// NCHW- nor NHWC-contiguous are made NCHW-contiguous first.
bool grid_sample_channels_last(const at::Tensor& input);

}  // namespace fastmotion
