// Schema of the heatmap-moments op family and the checks both kernels share.
//
// heatmap_moments_forward(logits (R,H,W), temperature) -> mean (R,2), var (R,2,2), lse (R)
//   softmax(logits / T) over H*W, its mean and (raw, unclipped) covariance on Monkey-Net's grid,
//   and the log-sum-exp the backward needs. Statistics are in the accumulation dtype
//   (float32 for half/bfloat16/float inputs, float64 for double).
// heatmap_moments_backward(grad_mean, grad_var, logits, mean, var, lse, T) -> grad_logits
#include "ops/heatmap_moments.h"

#include <torch/library.h>

namespace fastmotion {

void check_heatmap_moments_forward(const at::Tensor& logits, double temperature) {
  TORCH_CHECK(logits.dim() == 3, "heatmap_moments: logits must be (rows, H, W), got ", logits.sizes());
  TORCH_CHECK(at::isFloatingType(logits.scalar_type()),
              "heatmap_moments: logits must be a floating tensor, got ", logits.scalar_type());
  TORCH_CHECK(logits.size(1) >= 1 && logits.size(2) >= 1,
              "heatmap_moments: H and W must be >= 1, got ", logits.sizes());
  TORCH_CHECK(temperature > 0, "heatmap_moments: temperature must be > 0, got ", temperature);
}

void check_heatmap_moments_backward(const at::Tensor& grad_mean, const at::Tensor& grad_var,
                                    const at::Tensor& logits, const at::Tensor& mean,
                                    const at::Tensor& var, const at::Tensor& lse, double temperature) {
  check_heatmap_moments_forward(logits, temperature);
  const int64_t rows = logits.size(0);
  const auto acc = mean.scalar_type();
  TORCH_CHECK(mean.sizes() == at::IntArrayRef({rows, 2}), "heatmap_moments_backward: mean must be (",
              rows, ", 2), got ", mean.sizes());
  TORCH_CHECK(var.sizes() == at::IntArrayRef({rows, 2, 2}),
              "heatmap_moments_backward: var must be (", rows, ", 2, 2), got ", var.sizes());
  TORCH_CHECK(lse.sizes() == at::IntArrayRef({rows}), "heatmap_moments_backward: lse must be (",
              rows, "), got ", lse.sizes());
  TORCH_CHECK(grad_mean.sizes() == mean.sizes() && grad_var.sizes() == var.sizes(),
              "heatmap_moments_backward: gradient shapes ", grad_mean.sizes(), " and ",
              grad_var.sizes(), " do not match mean ", mean.sizes(), " and var ", var.sizes());
  for (const at::Tensor* t : {&var, &lse, &grad_mean, &grad_var}) {
    TORCH_CHECK(t->scalar_type() == acc, "heatmap_moments_backward: statistics and gradients must all be ",
                acc, ", got ", t->scalar_type());
  }
}

}  // namespace fastmotion

TORCH_LIBRARY_FRAGMENT(fastmotion, m) {
  m.def("heatmap_moments_forward(Tensor logits, float temperature) -> (Tensor, Tensor, Tensor)");
  m.def(
      "heatmap_moments_backward(Tensor grad_mean, Tensor grad_var, Tensor logits, Tensor mean, "
      "Tensor var, Tensor lse, float temperature) -> Tensor");
}
