// Torch binding of the CUDA heatmap-moments kernels: checks, dtype dispatch, device guard, stream.
// Includes only c10/cuda stream and guard headers (no cuBLAS/cuSPARSE), so it builds against any
// CUDA build of torch.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "fastmotion/var_mode.h"
#include "ops/cuda/binding.h"
#include "ops/cuda/heatmap_moments_kernel.h"
#include "ops/heatmap_moments.h"
#include "ops/register.h"

namespace fastmotion {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> heatmap_moments_forward_cuda_op(
    const at::Tensor& logits_in, double temperature, int64_t var_mode, double clip) {
  check_heatmap_moments_forward(logits_in, temperature, var_mode, clip);
  TORCH_CHECK(logits_in.is_cuda(), "heatmap_moments_forward (cuda): logits must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.contiguous();
  const int64_t rows = logits.size(0), H = logits.size(1), W = logits.size(2);
  const auto acc = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto opts = logits.options().dtype(acc);
  const int64_t v = heatmap_moments_var_size(var_mode);
  at::Tensor mean = at::empty({rows, 2}, opts), var_raw = at::empty({rows, 2, 2}, opts), lse = at::empty({rows}, opts);
  at::Tensor var = var_mode == kVarFixed ? at::zeros({rows, v, v}, opts) : at::empty({rows, v, v}, opts);
  const cudaStream_t stream = stream_of(logits);
  dispatch_cuda_float(logits.scalar_type(), "heatmap_moments_forward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = acc_type_t<scalar_t>;
    check_cuda(heatmap_moments_forward_cuda<scalar_t>(
                   static_cast<const scalar_t*>(logits.const_data_ptr()), rows, H, W, temperature,
                   static_cast<int>(var_mode), clip, static_cast<acc_t*>(mean.mutable_data_ptr()),
                   static_cast<acc_t*>(var.mutable_data_ptr()), static_cast<acc_t*>(var_raw.mutable_data_ptr()),
                   static_cast<acc_t*>(lse.mutable_data_ptr()), stream),
               "heatmap_moments_forward");
  });
  return {mean, var, var_raw, lse};
}

at::Tensor heatmap_moments_backward_cuda_op(const at::Tensor& grad_mean, const at::Tensor& grad_var,
                                            const at::Tensor& logits_in, const at::Tensor& mean,
                                            const at::Tensor& var, const at::Tensor& lse, double temperature,
                                            int64_t var_mode, double clip) {
  check_heatmap_moments_backward(grad_mean, grad_var, logits_in, mean, var, lse, temperature, var_mode, clip);
  TORCH_CHECK(logits_in.is_cuda(), "heatmap_moments_backward (cuda): logits must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(logits_in.device());
  const at::Tensor logits = logits_in.contiguous();
  const int64_t rows = logits.size(0), H = logits.size(1), W = logits.size(2);
  at::Tensor grad = at::empty_like(logits);
  const at::Tensor gm = grad_mean.contiguous(), gv = grad_var.contiguous();
  const at::Tensor m = mean.contiguous(), v = var.contiguous(), s = lse.contiguous();
  const cudaStream_t stream = stream_of(logits);
  dispatch_cuda_float(logits.scalar_type(), "heatmap_moments_backward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = acc_type_t<scalar_t>;
    TORCH_CHECK(m.scalar_type() == (std::is_same_v<acc_t, double> ? at::kDouble : at::kFloat),
                "heatmap_moments_backward: statistics have dtype ", m.scalar_type());
    check_cuda(heatmap_moments_backward_cuda<scalar_t>(
                   static_cast<const scalar_t*>(logits.const_data_ptr()), static_cast<const acc_t*>(m.const_data_ptr()),
                   static_cast<const acc_t*>(v.const_data_ptr()), static_cast<const acc_t*>(s.const_data_ptr()),
                   static_cast<const acc_t*>(gm.const_data_ptr()), static_cast<const acc_t*>(gv.const_data_ptr()),
                   rows, H, W, temperature, static_cast<int>(var_mode), clip,
                   static_cast<scalar_t*>(grad.mutable_data_ptr()), stream),
               "heatmap_moments_backward");
  });
  return grad;
}

}  // namespace
}  // namespace fastmotion

FASTMOTION_REGISTER_CUDA(heatmap_moments, fastmotion::heatmap_moments_forward_cuda_op,
                         fastmotion::heatmap_moments_backward_cuda_op)
