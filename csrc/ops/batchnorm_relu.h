// The training-mode BatchNorm + ReLU (fastmotion.models.batchnorm_relu): its schema and the checks
// of its CPU kernel.
//
// batchnorm_relu_forward(x (N,C,H,W), weight (C)?, bias (C)?, eps)
//     -> (out = relu(batch_norm(x)) in x's layout, mean (C), invstd (C), var (C), the biased batch
//        variance, from which the caller updates the running statistics)
// batchnorm_relu_backward(grad (N,C,H,W), x (N,C,H,W), weight (C)?, bias (C)?, mean (C), invstd (C))
//     -> (grad_x (N,C,H,W), grad_weight (C), grad_bias (C))
// The gradient of relu(batch_norm(x)) with batch statistics mean / invstd (those
// aten::native_batch_norm returned): the ReLU mask is recomputed from x, nothing else is kept.
// x and grad share one memory layout (NCHW-contiguous, grad with contiguous (H, W) planes at any
// sample / channel strides, or both channels_last-contiguous); grad_weight and
// grad_bias are computed whether or not the norm is affine (the caller drops what it needs not).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

namespace fastmotion {

// Registers the schema above; called once, by the CPU kernel file.
inline void define_batchnorm_relu_schema(torch::Library& m) {
  m.def(
      "batchnorm_relu_forward(Tensor x, Tensor? weight, Tensor? bias, float eps) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "batchnorm_relu_backward(Tensor grad, Tensor x, Tensor? weight, Tensor? bias, Tensor mean, Tensor invstd) "
      "-> (Tensor, Tensor, Tensor)");
}

// x (N, C, H, W) float32/float64, NCHW- or channels_last-contiguous, with values per channel;
// weight, bias (optional) contiguous (C) in x's dtype.
inline void check_batchnorm_relu_forward(const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                         const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 4, "batchnorm_relu_forward: x must be (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "batchnorm_relu_forward: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.is_contiguous() || x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "batchnorm_relu_forward: x must be contiguous or channels_last contiguous");
  TORCH_CHECK(x.size(0) * x.size(2) * x.size(3) > 0, "batchnorm_relu_forward: x has no values per channel");
  for (const auto* t : {&weight, &bias}) {
    if (t->has_value()) {
      TORCH_CHECK((*t)->dim() == 1 && (*t)->size(0) == x.size(1) && (*t)->scalar_type() == x.scalar_type() &&
                      (*t)->is_contiguous(),
                  "batchnorm_relu_forward: ", t == &weight ? "weight" : "bias", " must be a contiguous (C=",
                  x.size(1), ") ", x.scalar_type(), " tensor, got ", (*t)->sizes(), ", ", (*t)->scalar_type());
    }
  }
}

// x (N, C, H, W) float32/float64; grad like x, in the same layout (x NCHW-contiguous and grad
// with contiguous (H, W) planes, or both channels_last-contiguous); weight, bias (optional), mean, invstd contiguous (C) in x's dtype.
inline void check_batchnorm_relu_backward(const at::Tensor& grad, const at::Tensor& x, const c10::optional<at::Tensor>& weight,
                                          const c10::optional<at::Tensor>& bias, const at::Tensor& mean,
                                          const at::Tensor& invstd) {
  TORCH_CHECK(x.dim() == 4, "batchnorm_relu_backward: x must be (N, C, H, W), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "batchnorm_relu_backward: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(grad.sizes() == x.sizes() && grad.scalar_type() == x.scalar_type(),
              "batchnorm_relu_backward: grad must match x (", x.sizes(), ", ", x.scalar_type(), "), got ",
              grad.sizes(), ", ", grad.scalar_type());
  const int64_t c = x.size(1);
  auto check_channel = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK(t.dim() == 1 && t.size(0) == c && t.scalar_type() == x.scalar_type() && t.is_contiguous(),
                "batchnorm_relu_backward: ", name, " must be a contiguous (C=", c, ") ", x.scalar_type(),
                " tensor, got ", t.sizes(), ", ", t.scalar_type());
  };
  check_channel(mean, "mean");
  check_channel(invstd, "invstd");
  if (weight.has_value()) check_channel(*weight, "weight");
  if (bias.has_value()) check_channel(*bias, "bias");
  // NCHW: grad only needs contiguous (H, W) planes (a channel slice of a concatenation's gradient).
  const bool planes = grad.stride(3) == 1 && grad.stride(2) == grad.size(3);
  const bool nchw = x.is_contiguous() && (grad.is_contiguous() || planes);
  const bool nhwc = x.is_contiguous(at::MemoryFormat::ChannelsLast) && grad.is_contiguous(at::MemoryFormat::ChannelsLast);
  TORCH_CHECK(nchw || nhwc,
              "batchnorm_relu_backward: x and grad must both be contiguous (grad: contiguous (H, W) planes) or both "
              "channels_last contiguous");
}

}  // namespace fastmotion
