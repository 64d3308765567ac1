// The grid_sample op: its schema and the checks that the CPU kernel and the CUDA binding share.
//
// grid_sample_forward(input (N,C,H,W), grid (N,Ho,Wo,2), mode, padding_mode, align_corners)
//   -> output (N,C,Ho,Wo): F.grid_sample for 4-D input. mode: 0 bilinear, 1 nearest;
//   padding_mode: 0 zeros, 1 border, 2 reflection (PyTorch's GridSampler enum values).
//   A channels-last input gives a channels-last output; otherwise the output is contiguous.
// grid_sample_backward(grad_output, input, grid, mode, padding_mode, align_corners,
//                      input_requires_grad, grid_requires_grad) -> (grad_input, grad_grid)
//   A gradient that is not required comes back as an empty (0-element) tensor.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <array>

#include "fastmotion/sampling.h"

namespace fastmotion {

// Registers the schema above; called once, by the CPU kernel file.
inline void define_grid_sample_schema(torch::Library& m) {
  m.def("grid_sample_forward(Tensor input, Tensor grid, int mode, int padding_mode, bool align_corners) -> Tensor");
  m.def(
      "grid_sample_backward(Tensor grad_output, Tensor input, Tensor grid, int mode, int padding_mode, "
      "bool align_corners, bool input_requires_grad, bool grid_requires_grad) -> (Tensor, Tensor)");
}

// input (N, C, H, W) floating with H, W >= 1; grid (N, Ho, Wo, 2) of the same dtype and device;
// mode 0 bilinear | 1 nearest; padding_mode 0 zeros | 1 border | 2 reflection.
inline void check_grid_sample_forward(const at::Tensor& input, const at::Tensor& grid, int64_t mode,
                                      int64_t padding_mode) {
  TORCH_CHECK(input.dim() == 4, "grid_sample: input must be (N, C, H, W), got ", input.sizes());
  TORCH_CHECK(grid.dim() == 4 && grid.size(3) == 2 && grid.size(0) == input.size(0),
              "grid_sample: grid must be (N=", input.size(0), ", Ho, Wo, 2), got ", grid.sizes());
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), "grid_sample: input must be a floating tensor, got ",
              input.scalar_type());
  TORCH_CHECK(grid.scalar_type() == input.scalar_type(), "grid_sample: grid must have the input's dtype ",
              input.scalar_type(), ", got ", grid.scalar_type());
  TORCH_CHECK(grid.device() == input.device(), "grid_sample: grid must be on the input's device ",
              input.device(), ", got ", grid.device());
  TORCH_CHECK(input.size(2) >= 1 && input.size(3) >= 1,
              "grid_sample: input must have a non-empty spatial size (H, W), got ", input.sizes());
  TORCH_CHECK(mode == kModeBilinear || mode == kModeNearest,
              "grid_sample: mode must be 0 (bilinear) or 1 (nearest), got ", mode);
  TORCH_CHECK(padding_mode == kPadZeros || padding_mode == kPadBorder || padding_mode == kPadReflection,
              "grid_sample: padding_mode must be 0 (zeros), 1 (border) or 2 (reflection), got ", padding_mode);
}

// grad_output (N, C, Ho, Wo) of the input's dtype, plus the forward's checks.
inline void check_grid_sample_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                       const at::Tensor& grid, int64_t mode, int64_t padding_mode) {
  check_grid_sample_forward(input, grid, mode, padding_mode);
  const std::array<int64_t, 4> expected{input.size(0), input.size(1), grid.size(1), grid.size(2)};
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef(expected), "grid_sample_backward: grad_output must be ",
              at::IntArrayRef(expected), ", got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type(),
              "grid_sample_backward: grad_output must have the input's dtype ", input.scalar_type(), ", got ",
              grad_output.scalar_type());
  TORCH_CHECK(grad_output.device() == input.device(), "grid_sample_backward: grad_output must be on ",
              input.device());
}

// Whether the kernels treat `input` as channels-last (NHWC in memory). Inputs that are neither
// NCHW- nor NHWC-contiguous are made NCHW-contiguous first.
inline bool grid_sample_channels_last(const at::Tensor& input) {
  return !input.is_contiguous() && input.is_contiguous(at::MemoryFormat::ChannelsLast);
}

}  // namespace fastmotion
