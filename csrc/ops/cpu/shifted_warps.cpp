// CPU kernels of shifted_warps: out[n, k, c] = source[n, c] sampled at identity + kp_shift[n, k]
// (bilinear, zeros, align_corners=True), without repeating the source K+1 times.
//
// A constant shift makes the sampling separable: the taps of output pixel (i, j) are rows
// y0[i], y0[i] + 1 and columns x0[j], x0[j] + 1 with weights that depend on i alone and on j
// alone. The kernels build those per-axis tables once per block (k) from the exact per-pixel
// coordinate the reference computes (fastmotion/dense_motion.h), copy the source plane once into
// a zero-bordered buffer (so out-of-image taps read zeros without branches: any shift, however
// large, clamps into the border), and blend rows. When x0[j] - j is the same for every column
// (every shift that is not within rounding of a whole pixel) the column taps are a constant
// offset and the row loops are unit-stride and vectorize.
//
// Backward: the kp_shift gradient is a reduction of grad_out * d(sample)/d(shift) over pixels
// and channels, per (n, c, k) task into per-lane sums, reduced over c in a fixed order. The
// source gradient is the transposed stencil: each task owns a block of source rows and gathers
// the contributions of every output row that taps it (no atomics).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "fastmotion/dense_motion.h"
#include "ops/dense_motion.h"

#define FM_HOT __attribute__((target_clones("avx2,fma", "default")))

namespace fastmotion {
namespace cpu {

// Zero border around a copied plane: taps range over [-2, size + 2] (see axis_taps).
constexpr int64_t kPadLo = 2;
constexpr int64_t kPadHi = 3;

// Taps of one axis for every output index, for one shift.
template <typename acc_t>
struct AxisTable {
  std::vector<int64_t> i0;
  std::vector<acc_t> frac;
  bool regular = true;  // i0[j] - j is the same for all j

  void build(int64_t size, acc_t shift) {
    i0.resize(size);
    frac.resize(size);
    for (int64_t j = 0; j < size; ++j) {
      const AxisTaps<acc_t> t = shifted_axis_taps<acc_t>(j, size, shift);
      i0[j] = t.i0;
      frac[j] = t.frac;
    }
    regular = true;
    for (int64_t j = 1; j < size; ++j) regular = regular && (i0[j] - j == i0[0]);
  }
};

// Copy plane (H, W) with strides (sh, sw) into a zero-bordered (H + 5, W + 5) buffer.
template <typename scalar_t, typename acc_t>
void pad_plane(const scalar_t* src, int64_t sh, int64_t sw, int64_t H, int64_t W, acc_t* dst) {
  const int64_t pw = W + kPadLo + kPadHi;
  std::fill(dst, dst + (H + kPadLo + kPadHi) * pw, acc_t(0));
  for (int64_t i = 0; i < H; ++i) {
    acc_t* d = dst + (i + kPadLo) * pw + kPadLo;
    const scalar_t* s = src + i * sh;
    for (int64_t j = 0; j < W; ++j) d[j] = static_cast<acc_t>(s[j * sw]);
  }
}

// One output row: out[j] = wt * lerp(r0[x0[j]], r0[x0[j]+1], f[j]) + wb * (same on r1).
// REGULAR: x0[j] = j + x0[0] (r0, r1 already offset by x0[0]).
template <bool REGULAR, typename scalar_t, typename acc_t>
FM_HOT void blend_row(const acc_t* r0, const acc_t* r1, const int64_t* x0, const acc_t* f, acc_t wt, acc_t wb,
                      int64_t W, scalar_t* out) {
  for (int64_t j = 0; j < W; ++j) {
    const int64_t a = REGULAR ? j : x0[j];
    const acc_t fj = f[j];
    const acc_t h0 = (acc_t(1) - fj) * r0[a] + fj * r0[a + 1];
    const acc_t h1 = (acc_t(1) - fj) * r1[a] + fj * r1[a + 1];
    out[j] = static_cast<scalar_t>(wt * h0 + wb * h1);
  }
}

// One output row's share of the kp_shift gradient, per lane j:
// lx[j] += g * d(out)/d(column coordinate), ly[j] += g * d(out)/d(row coordinate).
template <bool REGULAR, typename scalar_t, typename acc_t>
FM_HOT void shift_grad_row(const acc_t* r0, const acc_t* r1, const int64_t* x0, const acc_t* f, acc_t wt, acc_t wb,
                           const scalar_t* g, int64_t W, acc_t* lx, acc_t* ly) {
  for (int64_t j = 0; j < W; ++j) {
    const int64_t a = REGULAR ? j : x0[j];
    const acc_t fj = f[j];
    const acc_t v00 = r0[a], v01 = r0[a + 1], v10 = r1[a], v11 = r1[a + 1];
    const acc_t gj = static_cast<acc_t>(g[j]);
    const acc_t dx = wt * (v01 - v00) + wb * (v11 - v10);
    const acc_t dy = ((acc_t(1) - fj) * v10 + fj * v11) - ((acc_t(1) - fj) * v00 + fj * v01);
    lx[j] += gj * dx;
    ly[j] += gj * dy;
  }
}

// Transposed column stencil of one output row into an accumulator row (padded coordinates):
// acc[x0[j]] += w (1 - f[j]) g[j]; acc[x0[j] + 1] += w f[j] g[j].
template <bool REGULAR, typename scalar_t, typename acc_t>
FM_HOT void scatter_row(const scalar_t* g, const int64_t* x0, const acc_t* f, acc_t w, int64_t W, acc_t* acc) {
  if (REGULAR) {  // two unit-stride passes (within one pass the targets are distinct)
    for (int64_t j = 0; j < W; ++j) acc[j] += w * (acc_t(1) - f[j]) * static_cast<acc_t>(g[j]);
    for (int64_t j = 0; j < W; ++j) acc[j + 1] += w * f[j] * static_cast<acc_t>(g[j]);
  } else {
    for (int64_t j = 0; j < W; ++j) {
      const acc_t gj = w * static_cast<acc_t>(g[j]);
      acc[x0[j]] += (acc_t(1) - f[j]) * gj;
      acc[x0[j] + 1] += f[j] * gj;
    }
  }
}

namespace {

// Split the K+1 blocks of a (n, c) plane into groups so that there are enough tasks to go round.
int64_t k_groups(int64_t planes, int64_t K1) {
  const int64_t want = 4 * std::max<int64_t>(1, at::get_num_threads());
  return std::max<int64_t>(1, std::min<int64_t>(K1, (want + planes - 1) / std::max<int64_t>(planes, 1)));
}

at::Tensor shifted_warps_forward_cpu(const at::Tensor& source, const at::Tensor& kp_shift_in) {
  check_shifted_warps_forward(source, kp_shift_in);
  TORCH_CHECK(source.device().is_cpu(), "shifted_warps (cpu): source must be a CPU tensor");
  const at::Tensor shift = kp_shift_in.contiguous();
  const int64_t N = source.size(0), C = source.size(1), H = source.size(2), W = source.size(3);
  const int64_t K1 = shift.size(1);
  at::Tensor out = at::empty({N, K1, C, H, W}, source.options());
  if (out.numel() == 0) return out;
  const int64_t groups = k_groups(N * C, K1);
  const int64_t per_group = (K1 + groups - 1) / groups;
  const int64_t sn = source.stride(0), sc = source.stride(1), sh = source.stride(2), sw = source.stride(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, source.scalar_type(), "shifted_warps_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = source.const_data_ptr<scalar_t>();
    const acc_t* sp = shift.const_data_ptr<acc_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    const int64_t pw = W + kPadLo + kPadHi;
    at::parallel_for(0, N * C * groups, 1, [&](int64_t begin, int64_t end) {
      std::vector<acc_t> plane((H + kPadLo + kPadHi) * pw);
      AxisTable<acc_t> cols, rows;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t nc = task / groups, grp = task % groups;
        const int64_t n = nc / C, c = nc % C;
        pad_plane(src + n * sn + c * sc, sh, sw, H, W, plane.data());
        const acc_t* origin = plane.data() + kPadLo * pw + kPadLo;
        for (int64_t k = grp * per_group; k < std::min(K1, (grp + 1) * per_group); ++k) {
          cols.build(W, sp[(n * K1 + k) * 2]);
          rows.build(H, sp[(n * K1 + k) * 2 + 1]);
          scalar_t* o = op + ((n * K1 + k) * C + c) * H * W;
          for (int64_t i = 0; i < H; ++i) {
            const acc_t* r0 = origin + rows.i0[i] * pw;
            const acc_t wb = rows.frac[i], wt = acc_t(1) - wb;
            if (cols.regular) {
              blend_row<true, scalar_t, acc_t>(r0 + cols.i0[0], r0 + pw + cols.i0[0], nullptr, cols.frac.data(), wt,
                                               wb, W, o + i * W);
            } else {
              blend_row<false, scalar_t, acc_t>(r0, r0 + pw, cols.i0.data(), cols.frac.data(), wt, wb, W, o + i * W);
            }
          }
        }
      }
    });
  });
  return out;
}

// grad_shift[n, k] = sum_c partial[n, c, k]: per (n, c, k-group) task, reduced over c in order.
template <typename scalar_t, typename acc_t>
void shift_gradient(const scalar_t* src, int64_t sn, int64_t sc, int64_t sh, int64_t sw, const acc_t* sp,
                    const scalar_t* gp, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K1, acc_t* grad_shift) {
  const int64_t groups = k_groups(N * C, K1);
  const int64_t per_group = (K1 + groups - 1) / groups;
  const int64_t pw = W + kPadLo + kPadHi;
  std::vector<acc_t> partial(N * C * K1 * 2);
  const acc_t half_w = acc_t(W - 1) / acc_t(2), half_h = acc_t(H - 1) / acc_t(2);
  at::parallel_for(0, N * C * groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> plane((H + kPadLo + kPadHi) * pw), lx(W), ly(W);
    AxisTable<acc_t> cols, rows;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t nc = task / groups, grp = task % groups;
      const int64_t n = nc / C, c = nc % C;
      pad_plane(src + n * sn + c * sc, sh, sw, H, W, plane.data());
      const acc_t* origin = plane.data() + kPadLo * pw + kPadLo;
      for (int64_t k = grp * per_group; k < std::min(K1, (grp + 1) * per_group); ++k) {
        cols.build(W, sp[(n * K1 + k) * 2]);
        rows.build(H, sp[(n * K1 + k) * 2 + 1]);
        std::fill(lx.begin(), lx.end(), acc_t(0));
        std::fill(ly.begin(), ly.end(), acc_t(0));
        const scalar_t* g = gp + ((n * K1 + k) * C + c) * H * W;
        for (int64_t i = 0; i < H; ++i) {
          const acc_t* r0 = origin + rows.i0[i] * pw;
          const acc_t wb = rows.frac[i], wt = acc_t(1) - wb;
          if (cols.regular) {
            shift_grad_row<true, scalar_t, acc_t>(r0 + cols.i0[0], r0 + pw + cols.i0[0], nullptr, cols.frac.data(),
                                                  wt, wb, g + i * W, W, lx.data(), ly.data());
          } else {
            shift_grad_row<false, scalar_t, acc_t>(r0, r0 + pw, cols.i0.data(), cols.frac.data(), wt, wb, g + i * W,
                                                   W, lx.data(), ly.data());
          }
        }
        acc_t sx = 0, sy = 0;
        for (int64_t j = 0; j < W; ++j) {
          sx += lx[j];
          sy += ly[j];
        }
        partial[((n * C + c) * K1 + k) * 2] = sx * half_w;
        partial[((n * C + c) * K1 + k) * 2 + 1] = sy * half_h;
      }
    }
  });
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t q = 0; q < K1 * 2; ++q) {
      acc_t sum = 0;
      for (int64_t c = 0; c < C; ++c) sum += partial[(n * C + c) * K1 * 2 + q];
      grad_shift[n * K1 * 2 + q] = sum;
    }
  }
}

// grad_source[n, c, rows] gathered per (n, c, block of source rows).
template <typename scalar_t, typename acc_t>
void source_gradient(const acc_t* sp, const scalar_t* gp, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K1,
                     scalar_t* grad_source) {
  const int64_t pw = W + kPadLo + kPadHi;
  const int64_t blocks = std::min<int64_t>(H, std::max<int64_t>(1, (4 * at::get_num_threads() + N * C - 1) / (N * C)));
  const int64_t rows_per_block = (H + blocks - 1) / blocks;
  at::parallel_for(0, N * C * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc;
    AxisTable<acc_t> cols, rows;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t nc = task / blocks, b = task % blocks;
      const int64_t n = nc / C, c = nc % C;
      const int64_t r0 = b * rows_per_block, r1 = std::min(H, r0 + rows_per_block);
      if (r0 >= r1) continue;
      acc.assign((r1 - r0) * pw, acc_t(0));
      for (int64_t k = 0; k < K1; ++k) {
        cols.build(W, sp[(n * K1 + k) * 2]);
        rows.build(H, sp[(n * K1 + k) * 2 + 1]);
        const scalar_t* g = gp + ((n * K1 + k) * C + c) * H * W;
        for (int64_t i = 0; i < H; ++i) {
          const int64_t y0 = rows.i0[i];
          if (y0 + 1 < r0 || y0 >= r1) continue;
          const acc_t wb = rows.frac[i], wt = acc_t(1) - wb;
          for (int64_t tap = 0; tap < 2; ++tap) {
            const int64_t r = y0 + tap;
            if (r < r0 || r >= r1) continue;
            acc_t* dst = acc.data() + (r - r0) * pw + kPadLo;
            const acc_t w = tap ? wb : wt;
            if (cols.regular) {
              scatter_row<true, scalar_t, acc_t>(g + i * W, nullptr, cols.frac.data(), w, W, dst + cols.i0[0]);
            } else {
              scatter_row<false, scalar_t, acc_t>(g + i * W, cols.i0.data(), cols.frac.data(), w, W, dst);
            }
          }
        }
      }
      scalar_t* out = grad_source + (n * C + c) * H * W;
      for (int64_t r = r0; r < r1; ++r) {
        const acc_t* a = acc.data() + (r - r0) * pw + kPadLo;
        for (int64_t q = 0; q < W; ++q) out[r * W + q] = static_cast<scalar_t>(a[q]);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> shifted_warps_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& source,
                                                              const at::Tensor& kp_shift_in, bool source_grad,
                                                              bool shift_grad) {
  check_shifted_warps_backward(grad_out_in, source, kp_shift_in);
  TORCH_CHECK(source.device().is_cpu(), "shifted_warps_backward (cpu): source must be a CPU tensor");
  const at::Tensor shift = kp_shift_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const int64_t N = source.size(0), C = source.size(1), H = source.size(2), W = source.size(3);
  const int64_t K1 = shift.size(1);
  at::Tensor grad_source = source_grad ? at::empty({N, C, H, W}, source.options()) : at::empty({0}, source.options());
  at::Tensor grad_shift = shift_grad ? at::empty({N, K1, 2}, shift.options()) : at::empty({0}, shift.options());
  if (grad_out.numel() == 0) {
    if (source_grad) grad_source.zero_();
    if (shift_grad) grad_shift.zero_();
    return {grad_source, grad_shift};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, source.scalar_type(), "shifted_warps_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* sp = shift.const_data_ptr<acc_t>();
    const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
    if (shift_grad) {
      shift_gradient<scalar_t, acc_t>(source.const_data_ptr<scalar_t>(), source.stride(0), source.stride(1),
                                      source.stride(2), source.stride(3), sp, gp, N, C, H, W, K1,
                                      grad_shift.mutable_data_ptr<acc_t>());
    }
    if (source_grad) {
      source_gradient<scalar_t, acc_t>(sp, gp, N, C, H, W, K1, grad_source.mutable_data_ptr<scalar_t>());
    }
  });
  return {grad_source, grad_shift};
}

}  // namespace
}  // namespace cpu
}  // namespace fastmotion

TORCH_LIBRARY_IMPL(fastmotion, CPU, m) {
  m.impl("shifted_warps_forward", &fastmotion::cpu::shifted_warps_forward_cpu);
  m.impl("shifted_warps_backward", &fastmotion::cpu::shifted_warps_backward_cpu);
}
