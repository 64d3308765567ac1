// Argument checks of upsample2x_nearest (2x nearest up-sampling with a scale and zero padding,
// the models' fast path: up-sampling and the 2x2 average pooling's backward); the CPU kernel
// calls them.
#pragma once

#include <ATen/core/Tensor.h>

namespace fastmotion {

// input (N, C, h, w) floating, NCHW- or channels_last-contiguous; out_h in {2h, 2h+1}, out_w in
// {2w, 2w+1}.
void check_upsample2x_nearest(const at::Tensor& input, int64_t out_h, int64_t out_w);

}  // namespace fastmotion
