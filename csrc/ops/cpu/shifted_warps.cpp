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
// Backward, one pass over grad_out: the kp_shift gradient is a reduction of
// grad_out * d(sample)/d(shift) over pixels and channels (per-lane sums per (n, c, k), reduced
// over c in a fixed order); the source gradient is the transposed stencil, accumulated per
// output row as one horizontal transposed pass and two row updates into a plane the task owns
// (no atomics; partial planes of k groups are added in a fixed order).
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
#include "ops/cpu/vec_math.h"
#include "ops/dense_motion.h"
#include "ops/register.h"

namespace fastmotion {
namespace cpu {

// Zero border around a copied plane: taps range over [-2, size + 2] (see axis_taps).
constexpr int64_t kPadLo = 2;
constexpr int64_t kPadHi = 3;

// Per-axis taps of every (n, k) block: tap index i0 (the second tap is i0 + 1) and the second
// tap's weight, for every output index, built once per call from the exact coordinates.
template <typename acc_t>
struct ShiftTables {
  int64_t K1 = 0, H = 0, W = 0;
  std::vector<int64_t> x0, y0;    // (N*K1, W), (N*K1, H)
  std::vector<acc_t> fx, fy;      // same shapes
  // Live columns [jlo, jhi) of each block: at least one tap inside the image (the others
  // output 0). regular: x0[j] - j is the same for all live columns (a constant offset).
  std::vector<int64_t> jlo, jhi;
  std::vector<char> regular;

  void build(const acc_t* shift, int64_t N, int64_t K1_, int64_t H_, int64_t W_) {
    K1 = K1_;
    H = H_;
    W = W_;
    x0.resize(N * K1 * W);
    fx.resize(N * K1 * W);
    y0.resize(N * K1 * H);
    fy.resize(N * K1 * H);
    jlo.resize(N * K1);
    jhi.resize(N * K1);
    regular.resize(N * K1);
    std::vector<acc_t> xs(W), ys(H);
    for (int64_t j = 0; j < W; ++j) xs[j] = grid_coord<acc_t>(j, W);
    for (int64_t i = 0; i < H; ++i) ys[i] = grid_coord<acc_t>(i, H);
    // small (O(H + W) per block): parallel only when there is a lot of it
    at::parallel_for(0, N * K1, grain_for(8 * (H + W), int64_t(1) << 19), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const acc_t sx = shift[2 * b], sy = shift[2 * b + 1];
        int64_t* bx = x0.data() + b * W;
        acc_t* bfx = fx.data() + b * W;
        int64_t lo = W, hi = 0;
        bool finite = true;
        for (int64_t j = 0; j < W; ++j) {
          const AxisTaps<acc_t> t = axis_taps<acc_t>(unnormalize_align_corners<acc_t>(xs[j] + sx, W), W);
          bx[j] = t.i0;
          bfx[j] = t.frac;
          finite = finite && t.frac == t.frac;
          if (t.i0 >= -1 && t.i0 < W) {  // x0 is non-decreasing in j: live columns are a range
            lo = std::min(lo, j);
            hi = j + 1;
          }
        }
        for (int64_t i = 0; i < H; ++i) {
          const AxisTaps<acc_t> t = axis_taps<acc_t>(unnormalize_align_corners<acc_t>(ys[i] + sy, H), H);
          y0[b * H + i] = t.i0;
          fy[b * H + i] = t.frac;
          finite = finite && t.frac == t.frac;
        }
        bool reg = finite;  // a NaN / inf shift samples NaN everywhere: the general path writes it
        for (int64_t j = lo + 1; j < hi; ++j) reg = reg && (bx[j] - j == bx[lo] - lo);
        jlo[b] = lo;
        jhi[b] = std::max(lo, hi);
        regular[b] = reg;
      }
    });
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
FASTMOTION_INLINE void blend_row(const acc_t* __restrict__ r0, const acc_t* __restrict__ r1, const int64_t* x0,
                      const acc_t* __restrict__ f, acc_t wt, acc_t wb, int64_t W, scalar_t* __restrict__ out) {
  for (int64_t j = 0; j < W; ++j) {
    const int64_t a = REGULAR ? j : x0[j];
    const acc_t fj = f[j];
    const acc_t h0 = (acc_t(1) - fj) * r0[a] + fj * r0[a + 1];
    const acc_t h1 = (acc_t(1) - fj) * r1[a] + fj * r1[a + 1];
    out[j] = static_cast<scalar_t>(wt * h0 + wb * h1);
  }
}

// Backward of one output row. Adds grad_out * d(out)/d(column, row coordinate) into the lanes
// lx[j], ly[j], and writes the row's transposed column stencil into h (padded column
// coordinates, h[x0[j]] += (1 - f[j]) g[j], h[x0[j] + 1] += f[j] g[j]; REGULAR: h[j] is
// column x0[0] + j, fully overwritten for j in [0, W]); the caller adds wt*h, wb*h to the two
// tapped source rows. REGULAR runs over the live columns only (pointers offset by the caller).
template <bool REGULAR, typename scalar_t, typename acc_t>
FASTMOTION_INLINE void backward_row(const acc_t* __restrict__ r0, const acc_t* __restrict__ r1, const int64_t* x0,
                         const acc_t* __restrict__ f, acc_t wt, acc_t wb, const scalar_t* __restrict__ g, int64_t W,
                         bool kp_shift_requires_grad, acc_t* __restrict__ lx, acc_t* __restrict__ ly,
                         acc_t* __restrict__ h) {
  if (kp_shift_requires_grad) {
    for (int64_t j = 0; j < W; ++j) {
      const int64_t a = REGULAR ? j : x0[j];
      const acc_t fj = f[j];
      const acc_t v00 = r0[a], v01 = r0[a + 1], v10 = r1[a], v11 = r1[a + 1];
      const acc_t gj = static_cast<acc_t>(g[j]);
      lx[j] += gj * (wt * (v01 - v00) + wb * (v11 - v10));
      ly[j] += gj * (((acc_t(1) - fj) * v10 + fj * v11) - ((acc_t(1) - fj) * v00 + fj * v01));
    }
  }
  if (h == nullptr) return;
  if (REGULAR) {
    // h[j] = (1 - f[j]) g[j] + f[j - 1] g[j - 1], j in [0, W]
    h[0] = (acc_t(1) - f[0]) * static_cast<acc_t>(g[0]);
    for (int64_t j = 1; j < W; ++j) {
      h[j] = (acc_t(1) - f[j]) * static_cast<acc_t>(g[j]) + f[j - 1] * static_cast<acc_t>(g[j - 1]);
    }
    h[W] = f[W - 1] * static_cast<acc_t>(g[W - 1]);
  } else {
    for (int64_t j = 0; j < W; ++j) {
      const acc_t gj = static_cast<acc_t>(g[j]);
      h[x0[j]] += (acc_t(1) - f[j]) * gj;
      h[x0[j] + 1] += f[j] * gj;
    }
  }
}

// dst[j] += w * src[j]
template <typename acc_t>
FASTMOTION_INLINE void axpy(acc_t* __restrict__ dst, const acc_t* __restrict__ src, acc_t w, int64_t n) {
  for (int64_t j = 0; j < n; ++j) dst[j] += w * src[j];
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
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    ShiftTables<acc_t> tab;
    tab.build(shift.const_data_ptr<acc_t>(), N, K1, H, W);
    const int64_t pw = W + kPadLo + kPadHi;
    at::parallel_for(0, N * C * groups, grain_for(per_group * H * W), [&](int64_t begin, int64_t end) {
      run_vectorized([&]() FASTMOTION_ALWAYS_INLINE {
        std::vector<acc_t> plane((H + kPadLo + kPadHi) * pw);
        for (int64_t task = begin; task < end; ++task) {
          const int64_t nc = task / groups, grp = task % groups;
          const int64_t n = nc / C, c = nc % C;
          pad_plane(src + n * sn + c * sc, sh, sw, H, W, plane.data());
          const acc_t* origin = plane.data() + kPadLo * pw + kPadLo;
          for (int64_t k = grp * per_group; k < std::min(K1, (grp + 1) * per_group); ++k) {
            const int64_t b = n * K1 + k;
            const int64_t* x0 = tab.x0.data() + b * W;
            const acc_t* fx = tab.fx.data() + b * W;
            scalar_t* o = op + (b * C + c) * H * W;
            for (int64_t i = 0; i < H; ++i) {
              const acc_t* r0 = origin + tab.y0[b * H + i] * pw;
              const acc_t wb = tab.fy[b * H + i], wt = acc_t(1) - wb;
              if (tab.regular[b]) {
                const int64_t lo = tab.jlo[b], hi = tab.jhi[b];
                scalar_t* orow = o + i * W;
                std::fill(orow, orow + lo, scalar_t(0));
                std::fill(orow + hi, orow + W, scalar_t(0));
                if (hi > lo) {
                  blend_row<true, scalar_t, acc_t>(r0 + x0[lo], r0 + pw + x0[lo], nullptr, fx + lo, wt, wb, hi - lo,
                                                   orow + lo);
                }
              } else {
                blend_row<false, scalar_t, acc_t>(r0, r0 + pw, x0, fx, wt, wb, W, o + i * W);
              }
            }
          }
        }
      });
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> shifted_warps_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& source,
                                                              const at::Tensor& kp_shift_in, bool source_requires_grad,
                                                              bool kp_shift_requires_grad) {
  check_shifted_warps_backward(grad_out_in, source, kp_shift_in);
  TORCH_CHECK(source.device().is_cpu(), "shifted_warps_backward (cpu): source must be a CPU tensor");
  const at::Tensor shift = kp_shift_in.contiguous();
  const at::Tensor grad_out = grad_out_in.contiguous();
  const int64_t N = source.size(0), C = source.size(1), H = source.size(2), W = source.size(3);
  const int64_t K1 = shift.size(1);
  at::Tensor grad_source = source_requires_grad ? at::empty({N, C, H, W}, source.options())
                                                : at::empty({0}, source.options());
  at::Tensor grad_shift = kp_shift_requires_grad ? at::empty({N, K1, 2}, shift.options())
                                                 : at::empty({0}, shift.options());
  if (grad_out.numel() == 0 || !(source_requires_grad || kp_shift_requires_grad)) {
    if (source_requires_grad) grad_source.zero_();
    if (kp_shift_requires_grad) grad_shift.zero_();
    return {grad_source, grad_shift};
  }
  // One pass over grad_out. A task owns (n, c, group of k): it reduces the kp_shift gradient of
  // its (n, c, k) blocks into per-lane sums and accumulates its share of the source gradient of
  // plane (n, c) in a private padded plane; shares of the k groups are added in order.
  const int64_t groups = k_groups(N * C, K1);
  const int64_t per_group = (K1 + groups - 1) / groups;
  const int64_t sn = source.stride(0), sc = source.stride(1), sh = source.stride(2), sw = source.stride(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, source.scalar_type(), "shifted_warps_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* src = source.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
    ShiftTables<acc_t> tab;
    tab.build(shift.const_data_ptr<acc_t>(), N, K1, H, W);
    const int64_t pw = W + kPadLo + kPadHi, ph = H + kPadLo + kPadHi;
    std::vector<acc_t> partial(kp_shift_requires_grad ? N * C * K1 * 2 : 0);
    // source-gradient shares: (N*C, groups, ph, pw) when groups > 1, else written directly
    std::vector<acc_t> shares(source_requires_grad && groups > 1 ? N * C * groups * ph * pw : 0);
    scalar_t* gsp = source_requires_grad ? grad_source.mutable_data_ptr<scalar_t>() : nullptr;
    const acc_t half_w = acc_t(W - 1) / acc_t(2), half_h = acc_t(H - 1) / acc_t(2);
    at::parallel_for(0, N * C * groups, grain_for(per_group * H * W), [&](int64_t begin, int64_t end) {
      run_vectorized([&]() FASTMOTION_ALWAYS_INLINE {
        std::vector<acc_t> plane(ph * pw), own(groups > 1 ? 0 : ph * pw), lx(W), ly(W), h(pw);
        for (int64_t task = begin; task < end; ++task) {
          const int64_t nc = task / groups, grp = task % groups;
          const int64_t n = nc / C, c = nc % C;
          if (kp_shift_requires_grad) pad_plane(src + n * sn + c * sc, sh, sw, H, W, plane.data());
          acc_t* acc = nullptr;
          if (source_requires_grad) {
            acc = groups > 1 ? shares.data() + (nc * groups + grp) * ph * pw : own.data();
            std::fill(acc, acc + ph * pw, acc_t(0));
          }
          const acc_t* origin = plane.data() + kPadLo * pw + kPadLo;
          for (int64_t k = grp * per_group; k < std::min(K1, (grp + 1) * per_group); ++k) {
            const int64_t b = n * K1 + k;
            const int64_t* x0 = tab.x0.data() + b * W;
            const acc_t* fx = tab.fx.data() + b * W;
            const bool reg = tab.regular[b] != 0;
            const scalar_t* g = gp + (b * C + c) * H * W;
            if (kp_shift_requires_grad) {
              std::fill(lx.begin(), lx.end(), acc_t(0));
              std::fill(ly.begin(), ly.end(), acc_t(0));
            }
            for (int64_t i = 0; i < H; ++i) {
              const int64_t y0 = tab.y0[b * H + i];
              const acc_t* r0 = origin + y0 * pw;
              const acc_t wb = tab.fy[b * H + i], wt = acc_t(1) - wb;
              // the source gradient only needs rows whose taps land in the padded plane's interior
              acc_t* hrow = (source_requires_grad && y0 + 1 >= 0 && y0 < H) ? h.data() : nullptr;
              if (reg) {
                const int64_t lo = tab.jlo[b], hi = tab.jhi[b];
                if (hi == lo) continue;  // every tap of this block is outside the image
                backward_row<true, scalar_t, acc_t>(r0 + x0[lo], r0 + pw + x0[lo], nullptr, fx + lo, wt, wb,
                                                    g + i * W + lo, hi - lo, kp_shift_requires_grad, lx.data() + lo,
                                                    ly.data() + lo, hrow);
                if (hrow) {  // h[j] is padded column x0[lo] + j + kPadLo, j in [0, hi - lo]
                  acc_t* row0 = acc + (y0 + kPadLo) * pw + x0[lo] + kPadLo;
                  axpy(row0, hrow, wt, hi - lo + 1);
                  axpy(row0 + pw, hrow, wb, hi - lo + 1);
                }
              } else {
                if (hrow) std::fill(h.begin(), h.end(), acc_t(0));
                backward_row<false, scalar_t, acc_t>(r0, r0 + pw, x0, fx, wt, wb, g + i * W, W, kp_shift_requires_grad,
                                                     lx.data(), ly.data(), hrow ? hrow + kPadLo : nullptr);
                if (hrow) {
                  acc_t* row0 = acc + (y0 + kPadLo) * pw;
                  axpy(row0, hrow, wt, pw);
                  axpy(row0 + pw, hrow, wb, pw);
                }
              }
            }
            if (kp_shift_requires_grad) {
              acc_t sx = 0, sy = 0;
              for (int64_t j = 0; j < W; ++j) {
                sx += lx[j];
                sy += ly[j];
              }
              partial[(nc * K1 + k) * 2] = sx * half_w;
              partial[(nc * K1 + k) * 2 + 1] = sy * half_h;
            }
          }
          if (source_requires_grad && groups == 1) {
            scalar_t* out = gsp + nc * H * W;
            for (int64_t r = 0; r < H; ++r) {
              const acc_t* a = acc + (r + kPadLo) * pw + kPadLo;
              for (int64_t q = 0; q < W; ++q) out[r * W + q] = static_cast<scalar_t>(a[q]);
            }
          }
        }
      });
    });
    if (source_requires_grad && groups > 1) {
      at::parallel_for(0, N * C, grain_for(groups * H * W), [&](int64_t begin, int64_t end) {
        for (int64_t nc = begin; nc < end; ++nc) {
          scalar_t* out = gsp + nc * H * W;
          for (int64_t r = 0; r < H; ++r) {
            for (int64_t q = 0; q < W; ++q) {
              acc_t v = 0;
              for (int64_t grp = 0; grp < groups; ++grp) {
                v += shares[((nc * groups + grp) * ph + r + kPadLo) * pw + q + kPadLo];
              }
              out[r * W + q] = static_cast<scalar_t>(v);
            }
          }
        }
      });
    }
    if (kp_shift_requires_grad) sum_task_partials(partial.data(), N, C, K1 * 2, grad_shift.mutable_data_ptr<acc_t>());
  });
  return {grad_source, grad_shift};
}

}  // namespace
}  // namespace cpu
}  // namespace fastmotion

FASTMOTION_REGISTER_CPU(shifted_warps, fastmotion::cpu::shifted_warps_forward_cpu,
                        fastmotion::cpu::shifted_warps_backward_cpu)
