// upsample2x_nearest (fastmotion.models.resample2x): its schema and the checks of its CPU kernel.
//
// upsample2x_nearest(input (N, C, h, w), out_h, out_w, scale) -> (N, C, out_h, out_w):
//     out[..., y, x] = scale * input[..., y // 2, x // 2] for y < 2h, x < 2w, and 0 in the extra
//     last row / column when out_h = 2h + 1 / out_w = 2w + 1.
// With scale 1 and (2h, 2w) it is F.interpolate(input, scale_factor=2) (nearest); with scale 1/4
// and the pooled input's size it is the backward of the 2x2 average pooling (odd sizes included:
// the last row / column was not pooled). The output has the input's layout.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

namespace fastmotion {

// Registers the schema above; called once, by the CPU kernel file.
inline void define_resample2x_schema(torch::Library& m) {
  m.def("upsample2x_nearest(Tensor input, int out_h, int out_w, float scale) -> Tensor");
}

// input (N, C, h, w) floating, NCHW- or channels_last-contiguous; out_h in {2h, 2h+1}, out_w in
// {2w, 2w+1}.
inline void check_upsample2x_nearest(const at::Tensor& input, int64_t out_h, int64_t out_w) {
  TORCH_CHECK(input.dim() == 4, "upsample2x_nearest: input must be (N, C, H, W), got ", input.sizes());
  TORCH_CHECK(at::isFloatingType(input.scalar_type()), "upsample2x_nearest: input must be floating, got ",
              input.scalar_type());
  TORCH_CHECK(input.is_contiguous() || input.is_contiguous(at::MemoryFormat::ChannelsLast),
              "upsample2x_nearest: input must be contiguous or channels_last contiguous");
  const int64_t h = input.size(2), w = input.size(3);
  TORCH_CHECK(out_h == 2 * h || out_h == 2 * h + 1, "upsample2x_nearest: out_h must be ", 2 * h, " or ", 2 * h + 1,
              " for an input of height ", h, ", got ", out_h);
  TORCH_CHECK(out_w == 2 * w || out_w == 2 * w + 1, "upsample2x_nearest: out_w must be ", 2 * w, " or ", 2 * w + 1,
              " for an input of width ", w, ", got ", out_w);
}

}  // namespace fastmotion
