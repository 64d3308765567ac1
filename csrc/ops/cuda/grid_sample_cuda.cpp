// Torch binding of the CUDA grid_sample kernels: checks, layout, dtype dispatch, device guard,
// stream. Includes only c10/cuda stream and guard headers (no cuBLAS/cuSPARSE).
#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sum.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "ops/cuda/binding.h"
#include "ops/cuda/grid_sample_kernel.h"
#include "ops/grid_sample.h"
#include "ops/register.h"

namespace fastmotion {
namespace {

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

GridSampleGeometry geometry(const at::Tensor& input, const at::Tensor& grid, const at::Tensor& out) {
  GridSampleGeometry g;
  g.N = input.size(0), g.C = input.size(1), g.H = input.size(2), g.W = input.size(3);
  g.Ho = grid.size(1), g.Wo = grid.size(2);
  g.in_sN = input.stride(0), g.in_sC = input.stride(1), g.in_sH = input.stride(2), g.in_sW = input.stride(3);
  g.out_sN = out.stride(0), g.out_sC = out.stride(1), g.out_sP = out.stride(3);
  return g;
}

at::Tensor grid_sample_forward_cuda_op(const at::Tensor& input_in, const at::Tensor& grid_in, int64_t mode,
                                       int64_t padding_mode, bool align_corners) {
  check_grid_sample_forward(input_in, grid_in, mode, padding_mode);
  TORCH_CHECK(input_in.is_cuda(), "grid_sample_forward (cuda): input must be a CUDA tensor");
  const c10::cuda::CUDAGuard guard(input_in.device());
  const bool cl = grid_sample_channels_last(input_in);
  const at::Tensor input = cl ? input_in : input_in.contiguous();
  const at::Tensor grid = grid_in.contiguous();
  at::Tensor out = at::empty({input.size(0), input.size(1), grid.size(1), grid.size(2)}, input.options(),
                             format_of(cl));
  const GridSampleGeometry g = geometry(input, grid, out);
  const cudaStream_t stream = stream_of(input);
  dispatch_cuda_float(input.scalar_type(), "grid_sample_forward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    check_cuda(grid_sample_forward_cuda<scalar_t>(static_cast<const scalar_t*>(input.const_data_ptr()),
                                                  static_cast<const scalar_t*>(grid.const_data_ptr()),
                                                  static_cast<scalar_t*>(out.mutable_data_ptr()), g, int(mode),
                                                  int(padding_mode), align_corners, stream),
               "grid_sample_forward");
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> grid_sample_backward_cuda_op(const at::Tensor& grad_output_in,
                                                                const at::Tensor& input_in, const at::Tensor& grid_in,
                                                                int64_t mode, int64_t padding_mode, bool align_corners,
                                                                bool input_requires_grad, bool grid_requires_grad) {
  check_grid_sample_backward(grad_output_in, input_in, grid_in, mode, padding_mode);
  TORCH_CHECK(input_in.is_cuda(), "grid_sample_backward (cuda): input must be a CUDA tensor");
  if (input_requires_grad) {
    // float atomics: raises (or warns) under torch.use_deterministic_algorithms(True), as PyTorch's
    // own kernel does; the triton backend has a deterministic gather for that mode
    at::globalContext().alertNotDeterministic("fastmotion::grid_sample_backward (cuda backend; backend='triton' "
                                              "is deterministic in this mode)");
  }
  const c10::cuda::CUDAGuard guard(input_in.device());
  const bool cl = grid_sample_channels_last(input_in);
  const at::Tensor input = cl ? input_in : input_in.contiguous();
  const at::Tensor grid = grid_in.contiguous();
  const at::Tensor gout = grad_output_in.contiguous(format_of(cl));
  const auto acc = input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const GridSampleGeometry g = geometry(input, grid, gout);
  const bool grid_grad = grid_requires_grad && mode == 0;
  at::Tensor gin_acc = input_requires_grad ? at::empty(input.sizes(), input.options().dtype(acc), format_of(cl)).zero_()
                                           : at::Tensor();
  const int64_t slots = grid_sample_backward_slots(g);
  at::Tensor slot_buf = grid_grad ? at::empty({slots, g.N, g.Ho, g.Wo, 2}, grid.options().dtype(acc)) : at::Tensor();
  const cudaStream_t stream = stream_of(input);
  dispatch_cuda_float(input.scalar_type(), "grid_sample_backward", [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    using acc_t = acc_type_t<scalar_t>;
    check_cuda(grid_sample_backward_cuda<scalar_t>(
                   static_cast<const scalar_t*>(gout.const_data_ptr()), static_cast<const scalar_t*>(input.const_data_ptr()),
                   static_cast<const scalar_t*>(grid.const_data_ptr()),
                   input_requires_grad ? static_cast<acc_t*>(gin_acc.mutable_data_ptr()) : nullptr,
                   grid_grad ? static_cast<acc_t*>(slot_buf.mutable_data_ptr()) : nullptr, g, int(mode),
                   int(padding_mode), align_corners, stream),
               "grid_sample_backward");
  });
  at::Tensor grad_input = input_requires_grad ? gin_acc.to(input.scalar_type()) : at::empty({0}, input.options());
  at::Tensor grad_grid;
  if (!grid_requires_grad) {
    grad_grid = at::empty({0}, grid.options());
  } else if (!grid_grad || g.N * g.Ho * g.Wo == 0 || g.C == 0) {
    grad_grid = at::empty(grid.sizes(), grid.options()).zero_();
  } else {
    // Slots are added in order (at::sum over a leading dim of size `slots` is deterministic).
    grad_grid = (slots == 1 ? slot_buf.select(0, 0) : at::sum(slot_buf, {0})).to(grid.scalar_type()).contiguous();
  }
  return {grad_input, grad_grid};
}

}  // namespace
}  // namespace fastmotion

FASTMOTION_REGISTER_CUDA(grid_sample, fastmotion::grid_sample_forward_cuda_op, fastmotion::grid_sample_backward_cuda_op)
