// CPU kernel of upsample2x_nearest: each input row is scaled and written twice along x into the
// even output row, which is then copied to the odd one (memcpy); the extra last row / column of
// an odd output size is zeroed. One read of the input, one write of the output: ATen's
// upsample_nearest2d (NCHW) runs 5-10x slower than that on small maps (see resample2x.py).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstring>

#include "ops/cpu/vec_math.h"
#include "ops/resample2x.h"

namespace fastmotion {
namespace cpu {

namespace {

// One input row of w pixels, each `step` contiguous values (1 for NCHW, C for channels_last),
// into the even output row: dst pixel 2j and 2j+1 <- scale * src pixel j.
template <typename T, typename acc_t>
FASTMOTION_INLINE void double_row(const T* __restrict src, T* __restrict dst, int64_t w, int64_t step, acc_t scale) {
  if (step == 1) {
    for (int64_t j = 0; j < w; ++j) {
      const T v = static_cast<T>(static_cast<acc_t>(src[j]) * scale);
      dst[2 * j] = v;
      dst[2 * j + 1] = v;
    }
    return;
  }
  for (int64_t j = 0; j < w; ++j) {
    const T* s = src + j * step;
    T* d = dst + 2 * j * step;
    for (int64_t c = 0; c < step; ++c) {
      const T v = static_cast<T>(static_cast<acc_t>(s[c]) * scale);
      d[c] = v;
      d[step + c] = v;
    }
  }
}

}  // namespace

at::Tensor upsample2x_nearest_cpu(const at::Tensor& input, int64_t out_h, int64_t out_w, double scale) {
  check_upsample2x_nearest(input, out_h, out_w);
  TORCH_CHECK(input.device().is_cpu(), "upsample2x_nearest_cpu: input must be on the CPU");
  const bool channels_last = !input.is_contiguous();
  const int64_t N = input.size(0), C = input.size(1), h = input.size(2), w = input.size(3);
  at::Tensor out = at::empty({N, C, out_h, out_w}, input.options(),
                             channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  if (out.numel() == 0) return out;

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "upsample2x_nearest_cpu", [&] {
    using T = scalar_t;
    using acc_t = at::opmath_type<T>;
    const acc_t s = static_cast<acc_t>(scale);
    const T* ip = input.const_data_ptr<T>();
    T* op = out.mutable_data_ptr<T>();
    // Rows of the output as contiguous runs: NCHW has N*C planes of out_h rows of out_w values;
    // channels_last has N images of out_h rows of out_w*C values. `step`: values per pixel.
    const int64_t planes = channels_last ? N : N * C;
    const int64_t step = channels_last ? C : 1;
    const int64_t in_row = w * step, out_row = out_w * step;
    const size_t row_bytes = size_t(out_row) * sizeof(T);
    const bool extra_col = out_w > 2 * w, extra_row = out_h > 2 * h;
    at::parallel_for(0, planes * h, grain_for(2 * out_row), [&](int64_t begin, int64_t end) {
      run_vectorized([&]() FASTMOTION_ALWAYS_INLINE {
        for (int64_t t = begin; t < end; ++t) {
          const int64_t p = t / h, i = t - p * h;
          T* even = op + (p * out_h + 2 * i) * out_row;
          double_row<T, acc_t>(ip + (p * h + i) * in_row, even, w, step, s);
          if (extra_col) std::memset(even + 2 * w * step, 0, size_t(step) * sizeof(T));
          std::memcpy(even + out_row, even, row_bytes);
          if (extra_row && i == h - 1) std::memset(even + 2 * out_row, 0, row_bytes);
        }
      });
    });
  });
  return out;
}

}  // namespace cpu
}  // namespace fastmotion

TORCH_LIBRARY_FRAGMENT(fastmotion, m) { fastmotion::define_resample2x_schema(m); }

TORCH_LIBRARY_IMPL(fastmotion, CPU, m) {
  m.impl("upsample2x_nearest", &fastmotion::cpu::upsample2x_nearest_cpu);
}
