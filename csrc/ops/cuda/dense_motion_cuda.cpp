// Torch binding of the CUDA dense-motion kernels (compose_flow, shifted_warps): checks, dtype
// dispatch, device guard, stream, workspace. Includes only c10/cuda stream and guard headers.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>

#include "ops/cuda/binding.h"
#include "ops/cuda/dense_motion_kernel.h"
#include "ops/dense_motion.h"
#include "ops/register.h"

namespace fastmotion {
namespace {

at::Tensor workspace(size_t bytes, const at::Tensor& like) {
  return at::empty({static_cast<int64_t>(bytes > 0 ? bytes : 1)}, like.options().dtype(at::kByte));
}

SourceStrides strides_of(const at::Tensor& s) { return SourceStrides{s.stride(0), s.stride(1), s.stride(2), s.stride(3)}; }

at::Tensor compose_flow_forward_cuda_op(const at::Tensor& mask_logits, const at::Tensor& kp_shift,
                                        const c10::optional<at::Tensor>& correction) {
  check_compose_flow_forward(mask_logits, kp_shift, correction);
  TORCH_CHECK(mask_logits.is_cuda(), "compose_flow (cuda): mask_logits must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(mask_logits.device());
  const ComposeFlowInputs in = compose_flow_inputs(mask_logits, kp_shift, correction);
  const at::Tensor &logits = in.logits, &shift = in.shift, &corr = in.corr;
  const bool has_corr = corr.defined();
  const int64_t N = logits.size(0), K1 = logits.size(1), H = logits.size(2), W = logits.size(3);
  at::Tensor out = at::empty({N, H, W, 2}, logits.options());
  dispatch_cuda_float(logits.scalar_type(), "compose_flow_forward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = acc_type_t<scalar_t>;
    check_cuda(compose_flow_forward_cuda<scalar_t>(
                   static_cast<const scalar_t*>(logits.const_data_ptr()), static_cast<const acc_t*>(shift.const_data_ptr()),
                   has_corr ? static_cast<const scalar_t*>(corr.const_data_ptr()) : nullptr, N, K1, H, W,
                   static_cast<scalar_t*>(out.mutable_data_ptr()), stream_of(logits)),
               "compose_flow_forward");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> compose_flow_backward_cuda_op(const at::Tensor& grad_grid_in,
                                                                 const at::Tensor& mask_logits,
                                                                 const at::Tensor& kp_shift) {
  check_compose_flow_backward(grad_grid_in, mask_logits, kp_shift);
  TORCH_CHECK(mask_logits.is_cuda(), "compose_flow_backward (cuda): mask_logits must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(mask_logits.device());
  const at::Tensor logits = mask_logits.contiguous();
  const at::Tensor shift = kp_shift.contiguous();
  const at::Tensor grad_grid = grad_grid_in.contiguous();
  const int64_t N = logits.size(0), K1 = logits.size(1), H = logits.size(2), W = logits.size(3);
  at::Tensor grad_logits = at::empty_like(logits);
  at::Tensor grad_shift = N == 0 ? at::zeros({N, K1, 2}, shift.options()) : at::empty({N, K1, 2}, shift.options());
  if (N == 0) return {grad_logits, grad_shift};
  const at::Tensor ws = workspace(compose_flow_backward_workspace(N, K1, H, W, shift.element_size()), logits);
  dispatch_cuda_float(logits.scalar_type(), "compose_flow_backward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = acc_type_t<scalar_t>;
    check_cuda(compose_flow_backward_cuda<scalar_t>(
                   static_cast<const scalar_t*>(grad_grid.const_data_ptr()),
                   static_cast<const scalar_t*>(logits.const_data_ptr()), static_cast<const acc_t*>(shift.const_data_ptr()),
                   N, K1, H, W, static_cast<scalar_t*>(grad_logits.mutable_data_ptr()),
                   static_cast<acc_t*>(grad_shift.mutable_data_ptr()), const_cast<void*>(ws.const_data_ptr()),
                   stream_of(logits)),
               "compose_flow_backward");
  });
  return {grad_logits, grad_shift};
}

at::Tensor shifted_warps_forward_cuda_op(const at::Tensor& source, const at::Tensor& kp_shift) {
  check_shifted_warps_forward(source, kp_shift);
  TORCH_CHECK(source.is_cuda(), "shifted_warps (cuda): source must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(source.device());
  const at::Tensor shift = kp_shift.contiguous();
  const int64_t N = source.size(0), C = source.size(1), H = source.size(2), W = source.size(3);
  const int64_t K1 = shift.size(1);
  at::Tensor out = at::empty({N, K1, C, H, W}, source.options());
  dispatch_cuda_float(source.scalar_type(), "shifted_warps_forward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = acc_type_t<scalar_t>;
    check_cuda(shifted_warps_forward_cuda<scalar_t>(
                   static_cast<const scalar_t*>(source.const_data_ptr()), strides_of(source),
                   static_cast<const acc_t*>(shift.const_data_ptr()), N, C, H, W, K1,
                   static_cast<scalar_t*>(out.mutable_data_ptr()), stream_of(source)),
               "shifted_warps_forward");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> shifted_warps_backward_cuda_op(const at::Tensor& grad_out_in,
                                                                  const at::Tensor& source,
                                                                  const at::Tensor& kp_shift, bool source_requires_grad,
                                                                  bool kp_shift_requires_grad) {
  check_shifted_warps_backward(grad_out_in, source, kp_shift);
  TORCH_CHECK(source.is_cuda(), "shifted_warps_backward (cuda): source must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(source.device());
  const at::Tensor shift = kp_shift.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const int64_t N = source.size(0), C = source.size(1), H = source.size(2), W = source.size(3);
  const int64_t K1 = shift.size(1);
  const bool empty = grad_out.numel() == 0;
  at::Tensor grad_source = !source_requires_grad ? at::empty({0}, source.options())
                           : empty      ? at::zeros({N, C, H, W}, source.options())
                                        : at::empty({N, C, H, W}, source.options());
  at::Tensor grad_shift = !kp_shift_requires_grad ? at::empty({0}, shift.options())
                          : empty     ? at::zeros({N, K1, 2}, shift.options())
                                      : at::empty({N, K1, 2}, shift.options());
  if (empty || !(source_requires_grad || kp_shift_requires_grad)) return {grad_source, grad_shift};
  const at::Tensor ws = workspace(shifted_warps_backward_workspace(N, C, H, W, K1, shift.element_size()), source);
  dispatch_cuda_float(source.scalar_type(), "shifted_warps_backward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = acc_type_t<scalar_t>;
    check_cuda(shifted_warps_backward_cuda<scalar_t>(
                   static_cast<const scalar_t*>(grad_out.const_data_ptr()),
                   static_cast<const scalar_t*>(source.const_data_ptr()), strides_of(source),
                   static_cast<const acc_t*>(shift.const_data_ptr()), N, C, H, W, K1,
                   source_requires_grad ? static_cast<scalar_t*>(grad_source.mutable_data_ptr()) : nullptr,
                   kp_shift_requires_grad ? static_cast<acc_t*>(grad_shift.mutable_data_ptr()) : nullptr,
                   const_cast<void*>(ws.const_data_ptr()), stream_of(source)),
               "shifted_warps_backward");
  });
  return {grad_source, grad_shift};
}

}  // namespace
}  // namespace fastmotion

FASTMOTION_REGISTER_CUDA(compose_flow, fastmotion::compose_flow_forward_cuda_op,
                         fastmotion::compose_flow_backward_cuda_op)
FASTMOTION_REGISTER_CUDA(shifted_warps, fastmotion::shifted_warps_forward_cuda_op,
                         fastmotion::shifted_warps_backward_cuda_op)
