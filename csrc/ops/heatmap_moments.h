// The heatmap-moments op: its schema and the argument checks that the CPU kernel and the CUDA
// binding share (the CPU kernel file registers the schema).
//
// heatmap_moments_forward(logits (R,H,W), temperature, var_mode, clip)
//     -> mean (R,2), var (R,2,2) or (R,1,1), var_raw (R,2,2), lse (R)
//   softmax(logits / T) over H*W, its mean and covariance on Monkey-Net's grid: var is the
//   detector's output (clipped for var_mode 0 = 'matrix', (vxx + vyy) / 2 for 1 = 'single',
//   unused for 2 = 'fixed'; VarMode, fastmotion/var_mode.h), var_raw the unclipped covariance and
//   lse the log-sum-exp, both saved for the backward. Statistics are in the accumulation dtype
//   (float32 for half/bfloat16/float inputs, float64 for double).
// heatmap_moments_backward(grad_mean, grad_var, logits, mean, var_raw, lse, T, var_mode, clip)
//     -> grad_logits
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "fastmotion/var_mode.h"

namespace fastmotion {

// Registers the schema above; called once, by the CPU kernel file.
inline void define_heatmap_moments_schema(torch::Library& m) {
  m.def(
      "heatmap_moments_forward(Tensor logits, float temperature, int var_mode, float clip) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "heatmap_moments_backward(Tensor grad_mean, Tensor grad_var, Tensor logits, Tensor mean, "
      "Tensor var_raw, Tensor lse, float temperature, int var_mode, float clip) -> Tensor");
}

// Shape of the var output for a var_mode: (R, 1, 1) for 'single', else (R, 2, 2).
inline int64_t heatmap_moments_var_size(int64_t var_mode) { return var_mode == kVarSingle ? 1 : 2; }

// logits: (R, H, W) floating, H, W >= 1; temperature > 0; var_mode a VarMode; clip >= 0 (0: no
// clipping).
inline void check_heatmap_moments_forward(const at::Tensor& logits, double temperature, int64_t var_mode,
                                          double clip) {
  TORCH_CHECK(logits.dim() == 3, "heatmap_moments: logits must be (rows, H, W), got ", logits.sizes());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()),
              "heatmap_moments: logits must be a floating tensor, got ", logits.scalar_type());
  TORCH_CHECK(logits.size(1) >= 1 && logits.size(2) >= 1,
              "heatmap_moments: H and W must be >= 1, got ", logits.sizes());
  TORCH_CHECK(temperature > 0, "heatmap_moments: temperature must be > 0, got ", temperature);
  TORCH_CHECK(var_mode == kVarMatrix || var_mode == kVarSingle || var_mode == kVarFixed,
              "heatmap_moments: var_mode must be 0 (matrix), 1 (single) or 2 (fixed), got ", var_mode);
  TORCH_CHECK(clip >= 0, "heatmap_moments: clip must be >= 0, got ", clip);
}

// The backward's saved tensors and incoming gradients must match the forward's shapes.
inline void check_heatmap_moments_backward(const at::Tensor& grad_mean, const at::Tensor& grad_var,
                                           const at::Tensor& logits, const at::Tensor& mean,
                                           const at::Tensor& var, const at::Tensor& lse, double temperature,
                                           int64_t var_mode, double clip) {
  check_heatmap_moments_forward(logits, temperature, var_mode, clip);
  const int64_t rows = logits.size(0);
  const auto acc = mean.scalar_type();
  TORCH_CHECK(mean.sizes() == at::IntArrayRef({rows, 2}), "heatmap_moments_backward: mean must be (",
              rows, ", 2), got ", mean.sizes());
  TORCH_CHECK(var.sizes() == at::IntArrayRef({rows, 2, 2}),
              "heatmap_moments_backward: var must be (", rows, ", 2, 2), got ", var.sizes());
  TORCH_CHECK(lse.sizes() == at::IntArrayRef({rows}), "heatmap_moments_backward: lse must be (",
              rows, "), got ", lse.sizes());
  const int64_t v = heatmap_moments_var_size(var_mode);
  TORCH_CHECK(grad_mean.sizes() == mean.sizes() && grad_var.sizes() == at::IntArrayRef({rows, v, v}),
              "heatmap_moments_backward: gradient shapes ", grad_mean.sizes(), " and ", grad_var.sizes(),
              " do not match mean ", mean.sizes(), " and var (", rows, ", ", v, ", ", v, ")");
  for (const at::Tensor* t : {&var, &lse, &grad_mean, &grad_var}) {
    TORCH_CHECK(t->scalar_type() == acc, "heatmap_moments_backward: statistics and gradients must all be ",
                acc, ", got ", t->scalar_type());
  }
}

}  // namespace fastmotion
