// Argument checks of batchnorm_relu_backward (the training BatchNorm + ReLU of the models' fast
// path); the CPU kernel calls them.
#pragma once

#include <ATen/core/Tensor.h>

namespace fastmotion {

// x (N, C, H, W) float32/float64, NCHW- or channels_last-contiguous, with values per channel;
// weight, bias (optional) contiguous (C) in x's dtype.
void check_batchnorm_relu_forward(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                  const c10::optional<at::Tensor>& bias);

// x (N, C, H, W) float32/float64; grad like x, in the same layout (x NCHW-contiguous and grad
// with contiguous (H, W) planes, or both channels_last-contiguous); weight, bias (optional), mean, invstd contiguous (C) in x's dtype.
void check_batchnorm_relu_backward(const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                   const c10::optional<at::Tensor>& bias, const at::Tensor& mean,
                                   const at::Tensor& invstd);

}  // namespace fastmotion
