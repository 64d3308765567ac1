// CPU kernels of grid_sample (the math is in csrc/include/fastmotion/sampling.h).
//
// Forward: parallel over output rows. Each output pixel computes its taps once and then runs
// over all channels (channel-inner, like PyTorch's kernel): the tap weights stay in registers
// and, for a smooth flow, the next pixel reuses the same cache lines of every channel plane.
// Channels-last inputs make that channel loop contiguous, so it vectorizes.
//
// Backward, without atomics and deterministically:
//   1. geometry pass (parallel over pixels): each output pixel's taps, fractions and
//      d coordinate / d grid, recorded once (32 bytes per pixel for float);
//   2. channel pass, parallel over (image, channel block): the task that owns a block of
//      channels of one image is the only writer of those grad_input planes; it walks the
//      pixels in order, scatters weight * grad_out into its planes and sums this block's share
//      of d loss / d (x, y). The number of channel blocks depends only on (N, C), never on the
//      thread count, so results are bit-identical from run to run and machine to machine;
//   3. when an image has several channel blocks, their grid-gradient partial sums are added in
//      block order and scaled by d coordinate / d grid.
// The three steps run per chunk of pixels (backward_chunk: records and partial sums within a
// quarter of grad_input's size), so the scratch does not grow past the gradient it serves.
// Half and bfloat16 accumulate grad_input in a float buffer and round once at the end.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>

#include "fastmotion/sampling.h"
#include "ops/cpu/vec_math.h"
#include "ops/grid_sample.h"
#include "ops/register.h"

#if defined(__GNUC__)
#define FM_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define FM_ALWAYS_INLINE inline
#endif

namespace fastmotion {
namespace {

// Sizes and element strides. Input and grad_input share strides; output and grad_output share
// (oN, oC, oP) where the output pixel index is p = i * Wo + j.
struct Layout {
  int64_t N, C, H, W, Ho, Wo;
  int64_t sN, sC, sH, sW;
  int64_t oN, oC, oP;
  int64_t pixels() const { return Ho * Wo; }
};

Layout make_layout(const at::Tensor& input, const at::Tensor& grid, bool channels_last) {
  Layout l;
  l.N = input.size(0);
  l.C = input.size(1);
  l.H = input.size(2);
  l.W = input.size(3);
  l.Ho = grid.size(1);
  l.Wo = grid.size(2);
  l.sN = input.stride(0);
  l.sC = input.stride(1);
  l.sH = input.stride(2);
  l.sW = input.stride(3);
  if (channels_last) {
    l.oN = l.Ho * l.Wo * l.C;
    l.oC = 1;
    l.oP = l.C;
  } else {
    l.oN = l.C * l.Ho * l.Wo;
    l.oC = l.Ho * l.Wo;
    l.oP = 1;
  }
  return l;
}

// An expanded input (a zero stride on a dimension of size > 1) is read through its strides:
// .contiguous() would materialise the whole view (a 65536^2 view of one row: 17 GB).
bool has_broadcast_dim(const at::Tensor& t) {
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.stride(d) == 0 && t.size(d) > 1) return true;
  }
  return false;
}

at::MemoryFormat format_of(bool channels_last) {
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

// ---------------------------------------------------------------------------------- forward

// One output pixel, bilinear, all channels. kCL: channels are contiguous (sC == oC == 1).
template <typename scalar_t, typename acc_t, bool kCL>
FM_ALWAYS_INLINE void bilinear_pixel(const scalar_t* __restrict__ in_n, const Layout& l,
                                     const BilinearTaps<acc_t>& t, scalar_t* __restrict__ out) {
  const int64_t C = l.C, sW = l.sW, sH = l.sH;
  const int64_t sC = kCL ? 1 : l.sC, oC = kCL ? 1 : l.oC;
  if (t.in_nw && t.in_se) {  // all four corners inside: the common case
    const scalar_t* __restrict__ q = in_n + t.y0 * sH + t.x0 * sW;
    for (int64_t c = 0; c < C; ++c) {
      const scalar_t* qc = q + c * sC;
      out[c * oC] = static_cast<scalar_t>(
          t.interpolate(acc_t(qc[0]), acc_t(qc[sW]), acc_t(qc[sH]), acc_t(qc[sH + sW])));
    }
    return;
  }
  // Some corners outside: they read 0 but keep their weight (NaN weights propagate).
  const scalar_t* q = in_n + t.y0 * sH + t.x0 * sW;
  for (int64_t c = 0; c < C; ++c) {
    const scalar_t* qc = q + c * sC;
    const acc_t v_nw = t.in_nw ? acc_t(qc[0]) : acc_t(0);
    const acc_t v_ne = t.in_ne ? acc_t(qc[sW]) : acc_t(0);
    const acc_t v_sw = t.in_sw ? acc_t(qc[sH]) : acc_t(0);
    const acc_t v_se = t.in_se ? acc_t(qc[sH + sW]) : acc_t(0);
    out[c * oC] = static_cast<scalar_t>(t.interpolate(v_nw, v_ne, v_sw, v_se));
  }
}

template <typename scalar_t, typename acc_t, bool kCL>
FM_ALWAYS_INLINE void nearest_pixel(const scalar_t* __restrict__ in_n, const Layout& l, const NearestTap<acc_t>& t,
                                    scalar_t* __restrict__ out) {
  const int64_t C = l.C;
  const int64_t sC = kCL ? 1 : l.sC, oC = kCL ? 1 : l.oC;
  if (t.inside) {
    const scalar_t* __restrict__ q = in_n + t.y * l.sH + t.x * l.sW;
    for (int64_t c = 0; c < C; ++c) out[c * oC] = q[c * sC];
  } else {
    for (int64_t c = 0; c < C; ++c) out[c * oC] = scalar_t(0);
  }
}

// Planar (NCHW) inputs: a run of output pixels computes its taps first, then makes one pass
// per channel plane over the run. A channel-inner loop per pixel would touch C planes spaced a
// multiple of 4 KiB apart for every pixel, all in the same few L1 sets, and thrash them; a pass
// over one plane stays within two input rows. Pixels with a corner outside the image (or
// planes too small or too large for the fast pass) take the exact masked path afterwards.
constexpr int64_t kRun = 128;
constexpr int64_t kFwdChannels = 4;  // channel planes per forward pass (2: same speed, 8: slower here)

template <typename acc_t>
struct PlanarRun {
  int32_t off[kRun];                     // plane offset of the nw corner (nearest: of the tap); 0 if special
  acc_t w_nw[kRun], w_ne[kRun], w_sw[kRun], w_se[kRun];  // 0 for special pixels
  int32_t special[kRun];                 // run positions that take the exact path
  int64_t n_special = 0;
};

// Whether the planar fast pass can address every corner with int32 offsets.
inline bool planar_fast_ok(const Layout& l) {
  return l.H >= 2 && l.W >= 2 && l.sW == 1 && l.sH * l.H < (int64_t(1) << 31);
}

template <typename scalar_t>
FM_ALWAYS_INLINE void forward_run_planar(const Layout& l, const scalar_t* in_n, const scalar_t* g, scalar_t* out_r,
                                         int64_t len, int mode, int padding, const SampleAxis<at::opmath_type<scalar_t>>& ax,
                                         const SampleAxis<at::opmath_type<scalar_t>>& ay, bool fast_ok) {
  using acc_t = at::opmath_type<scalar_t>;
  PlanarRun<acc_t> run;
  BilinearTaps<acc_t> taps[kRun];  // of the special pixels, by special slot
  NearestTap<acc_t> ntaps[kRun];
  const int64_t sH = l.sH;
  for (int64_t k = 0; k < len; ++k) {
    const acc_t x = ax.coordinate(acc_t(g[2 * k]), padding);
    const acc_t y = ay.coordinate(acc_t(g[2 * k + 1]), padding);
    if (mode == kModeNearest) {
      const auto t = NearestTap<acc_t>::make(x, y, ax, ay);
      if (t.inside && fast_ok) {
        run.off[k] = int32_t(t.y * sH + t.x);
      } else {
        run.off[k] = 0;
        ntaps[run.n_special] = t;
        run.special[run.n_special++] = int32_t(k);
      }
      continue;
    }
    const auto t = BilinearTaps<acc_t>::make(x, y, ax, ay);
    if (t.in_nw && t.in_se && fast_ok) {
      run.off[k] = int32_t(t.y0 * sH + t.x0);
      run.w_nw[k] = t.w_nw;
      run.w_ne[k] = t.w_ne;
      run.w_sw[k] = t.w_sw;
      run.w_se[k] = t.w_se;
    } else {
      run.off[k] = 0;
      run.w_nw[k] = run.w_ne[k] = run.w_sw[k] = run.w_se[k] = acc_t(0);
      taps[run.n_special] = t;
      run.special[run.n_special++] = int32_t(k);
    }
  }
  int64_t c0 = 0;
  if (mode == kModeBilinear) {  // four channel planes per pass: the run's arrays are read once per four
    for (; c0 + kFwdChannels <= l.C; c0 += kFwdChannels) {
      const scalar_t* pl = in_n + c0 * l.sC;
      scalar_t* o = out_r + c0 * l.oC;
      for (int64_t k = 0; k < len; ++k) {
        const acc_t a = run.w_nw[k], b = run.w_ne[k], cw = run.w_sw[k], dw = run.w_se[k];
        for (int64_t cc = 0; cc < kFwdChannels; ++cc) {
          const scalar_t* q = pl + cc * l.sC + run.off[k];
          const acc_t v = fm_fma(acc_t(q[sH + 1]), dw, fm_fma(acc_t(q[sH]), cw, fm_fma(acc_t(q[1]), b, acc_t(q[0]) * a)));
          o[cc * l.oC + k] = static_cast<scalar_t>(v);
        }
      }
    }
  }
  for (int64_t c = c0; c < l.C; ++c) {
    const scalar_t* __restrict__ pl = in_n + c * l.sC;
    scalar_t* __restrict__ o = out_r + c * l.oC;
    if (mode == kModeNearest) {
      for (int64_t k = 0; k < len; ++k) o[k] = pl[run.off[k]];
      for (int64_t s = 0; s < run.n_special; ++s) {
        const auto& t = ntaps[s];
        o[run.special[s]] = t.inside ? pl[t.y * l.sH + t.x * l.sW] : scalar_t(0);
      }
      continue;
    }
    for (int64_t k = 0; k < len; ++k) {
      const scalar_t* q = pl + run.off[k];
      const acc_t v = fm_fma(acc_t(q[sH + 1]), run.w_se[k],
                             fm_fma(acc_t(q[sH]), run.w_sw[k], fm_fma(acc_t(q[1]), run.w_ne[k], acc_t(q[0]) * run.w_nw[k])));
      o[k] = static_cast<scalar_t>(v);
    }
  }
  for (int64_t c = 0; c < l.C && mode == kModeBilinear; ++c) {
    const scalar_t* pl = in_n + c * l.sC;
    scalar_t* o = out_r + c * l.oC;
    for (int64_t s = 0; s < run.n_special; ++s) {
      const auto& t = taps[s];
      const scalar_t* q = pl + t.y0 * l.sH + t.x0 * l.sW;
      const acc_t v_nw = t.in_nw ? acc_t(q[0]) : acc_t(0);
      const acc_t v_ne = t.in_ne ? acc_t(q[l.sW]) : acc_t(0);
      const acc_t v_sw = t.in_sw ? acc_t(q[l.sH]) : acc_t(0);
      const acc_t v_se = t.in_se ? acc_t(q[l.sH + l.sW]) : acc_t(0);
      o[run.special[s]] = static_cast<scalar_t>(t.interpolate(v_nw, v_ne, v_sw, v_se));
    }
  }
}

// Output rows [row_begin, row_end) of the flattened (N * Ho) rows.
template <typename scalar_t, bool kCL>
FM_ALWAYS_INLINE void forward_rows_impl(const Layout& l, const scalar_t* in, const scalar_t* grid, scalar_t* out,
                                        int mode, int padding, bool align, int64_t row_begin, int64_t row_end) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto ax = SampleAxis<acc_t>::make(l.W, align);
  const auto ay = SampleAxis<acc_t>::make(l.H, align);
  const bool fast_ok = planar_fast_ok(l);
  for (int64_t r = row_begin; r < row_end; ++r) {
    const int64_t n = r / l.Ho, i = r - n * l.Ho;
    const scalar_t* g = grid + (n * l.Ho + i) * l.Wo * 2;
    const scalar_t* in_n = in + n * l.sN;
    scalar_t* out_r = out + n * l.oN + i * l.Wo * l.oP;
    if (!kCL) {
      for (int64_t j = 0; j < l.Wo; j += kRun) {
        forward_run_planar<scalar_t>(l, in_n, g + 2 * j, out_r + j, std::min(kRun, l.Wo - j), mode, padding, ax, ay,
                                     fast_ok);
      }
      continue;
    }
    for (int64_t j = 0; j < l.Wo; ++j) {
      const acc_t x = ax.coordinate(acc_t(g[2 * j]), padding);
      const acc_t y = ay.coordinate(acc_t(g[2 * j + 1]), padding);
      if (mode == kModeNearest) {
        nearest_pixel<scalar_t, acc_t, kCL>(in_n, l, NearestTap<acc_t>::make(x, y, ax, ay), out_r + j * l.oP);
      } else {
        bilinear_pixel<scalar_t, acc_t, kCL>(in_n, l, BilinearTaps<acc_t>::make(x, y, ax, ay), out_r + j * l.oP);
      }
    }
  }
}

// Out-of-line copies: a baseline x86-64 one and, on x86-64, an AVX2+FMA one picked at run time
// (fma() is an instruction there instead of a libm call; channels-last loops vectorize 8 wide).
// Both round identically: every fused operation is an explicit fma().
#ifdef FASTMOTION_HAVE_AVX2_COPIES
#define FM_HAVE_AVX2_CLONES 1
#define FM_TARGET_AVX2 FASTMOTION_TARGET_AVX2
inline bool cpu_has_avx2() { return cpu::has_avx2_fma(); }
#endif

template <typename scalar_t, bool kCL>
void forward_rows(const Layout& l, const scalar_t* in, const scalar_t* grid, scalar_t* out, int mode, int padding,
                  bool align, int64_t b, int64_t e) {
  forward_rows_impl<scalar_t, kCL>(l, in, grid, out, mode, padding, align, b, e);
}

#ifdef FM_HAVE_AVX2_CLONES
template <typename scalar_t, bool kCL>
FM_TARGET_AVX2 void forward_rows_avx2(const Layout& l, const scalar_t* in, const scalar_t* grid, scalar_t* out,
                                      int mode, int padding, bool align, int64_t b, int64_t e) {
  forward_rows_impl<scalar_t, kCL>(l, in, grid, out, mode, padding, align, b, e);
}
#endif

template <typename scalar_t, bool kCL>
void run_forward_rows(const Layout& l, const scalar_t* in, const scalar_t* grid, scalar_t* out, int mode, int padding,
                      bool align, int64_t b, int64_t e) {
#ifdef FM_HAVE_AVX2_CLONES
  if (cpu_has_avx2()) return forward_rows_avx2<scalar_t, kCL>(l, in, grid, out, mode, padding, align, b, e);
#endif
  forward_rows<scalar_t, kCL>(l, in, grid, out, mode, padding, align, b, e);
}

at::Tensor grid_sample_forward_cpu(const at::Tensor& input_in, const at::Tensor& grid_in, int64_t mode,
                                   int64_t padding_mode, bool align_corners) {
  check_grid_sample_forward(input_in, grid_in, mode, padding_mode);
  TORCH_CHECK(input_in.device().is_cpu(), "grid_sample_forward_cpu: input must be on the CPU");
  const bool cl = grid_sample_channels_last(input_in);
  const at::Tensor input = (cl || has_broadcast_dim(input_in)) ? input_in : input_in.contiguous();
  const at::Tensor grid = grid_in.contiguous();
  const Layout l = make_layout(input, grid, cl);
  at::Tensor out = at::empty({l.N, l.C, l.Ho, l.Wo}, input.options(), format_of(cl));
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "grid_sample_forward_cpu", [&] {
    const scalar_t* ip = input.const_data_ptr<scalar_t>();
    const scalar_t* gp = grid.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, l.Wo * l.C));
    at::parallel_for(0, l.N * l.Ho, grain, [&](int64_t b, int64_t e) {
      if (cl) {
        run_forward_rows<scalar_t, true>(l, ip, gp, op, int(mode), int(padding_mode), align_corners, b, e);
      } else {
        run_forward_rows<scalar_t, false>(l, ip, gp, op, int(mode), int(padding_mode), align_corners, b, e);
      }
    });
  });
  return out;
}

// --------------------------------------------------------------------------------- backward

// Geometry of one output pixel for the backward.
template <typename acc_t>
struct PixelRecord {
  int64_t offset;  // input offset of the north-west corner (nearest: of the tap); 0 if none inside
  acc_t fx, fy;    // bilinear fractions
  acc_t dx, dy;    // d coordinate / d grid
  int32_t mask;    // bilinear: bit 0 nw, 1 ne, 2 sw, 3 se inside; nearest: 1 if the tap is inside
};

// Records of pixels [p0, p1) of every image: rec[n * (p1 - p0) + (p - p0)].
template <typename scalar_t, typename acc_t>
void geometry_pass(const Layout& l, const scalar_t* grid, int mode, int padding, bool align,
                   PixelRecord<acc_t>* rec, int64_t p0, int64_t p1) {
  const auto ax = SampleAxis<acc_t>::make(l.W, align);
  const auto ay = SampleAxis<acc_t>::make(l.H, align);
  const int64_t len = p1 - p0, P = l.pixels();
  at::parallel_for(0, l.N * len, 4096, [&](int64_t b, int64_t e) {
    int64_t n = b / len, p = b - n * len;  // (image, pixel of the range) of k, stepped without divisions
    for (int64_t k = b; k < e; ++k, p = (p + 1 == len) ? (++n, 0) : p + 1) {
      PixelRecord<acc_t> r;
      const int64_t g = n * P + p0 + p;
      const acc_t gx = acc_t(grid[2 * g]), gy = acc_t(grid[2 * g + 1]);
      if (mode == kModeNearest) {
        // No grid gradient; the tap is the forward's (PyTorch's nearest backward uses `apply`).
        r.dx = r.dy = acc_t(0);
        const auto t = NearestTap<acc_t>::make(ax.coordinate(gx, padding), ay.coordinate(gy, padding), ax, ay);
        r.offset = t.y * l.sH + t.x * l.sW;
        r.fx = r.fy = acc_t(0);
        r.mask = t.inside ? 1 : 0;
      } else {
        const acc_t x = ax.coordinate_with_grad(gx, padding, &r.dx);
        const acc_t y = ay.coordinate_with_grad(gy, padding, &r.dy);
        const auto t = BilinearTaps<acc_t>::make(x, y, ax, ay);
        r.offset = t.y0 * l.sH + t.x0 * l.sW;
        r.fx = t.fx;
        r.fy = t.fy;
        r.mask = (t.in_nw ? 1 : 0) | (t.in_ne ? 2 : 0) | (t.in_sw ? 4 : 0) | (t.in_se ? 8 : 0);
      }
      rec[k] = r;
    }
  });
}

// The tap weights of a record, exactly as BilinearTaps computes them.
template <typename acc_t>
struct Weights {
  acc_t ex, sy, nw, ne, sw, se;
  FM_ALWAYS_INLINE explicit Weights(const PixelRecord<acc_t>& r) {
    ex = fm_sub(acc_t(1), r.fx);
    sy = fm_sub(acc_t(1), r.fy);
    nw = fm_mul(sy, ex);
    ne = fm_mul(sy, r.fx);
    sw = fm_mul(r.fy, ex);
    se = fm_mul(r.fy, r.fx);
  }
};

struct BackwardFlags {
  bool input_grad, grid_grad;
};

// dst[c] += w * g[c] over a contiguous run (vectorizes).
template <typename scalar_t, typename acc_t>
FM_ALWAYS_INLINE void axpy(acc_t* __restrict__ dst, acc_t w, const scalar_t* __restrict__ g, int64_t n) {
  for (int64_t c = 0; c < n; ++c) dst[c] = fm_fma(w, acc_t(g[c]), dst[c]);
}

// Channels-last bilinear pixel: sums of g * (v_ne - v_nw), g * (v_se - v_sw), g * (v_sw - v_nw),
// g * (v_se - v_ne) over a contiguous channel run, in 8 independent lanes (vectorizes; the
// lanes are added in a fixed order, so the result does not depend on the ISA).
template <typename scalar_t, typename acc_t>
FM_ALWAYS_INLINE void cl_grid_sums(const scalar_t* __restrict__ q_nw, const scalar_t* __restrict__ q_ne,
                                   const scalar_t* __restrict__ q_sw, const scalar_t* __restrict__ q_se,
                                   const scalar_t* __restrict__ g, int64_t n, acc_t sy, acc_t fy, acc_t ex, acc_t fx,
                                   acc_t* gx_out, acc_t* gy_out) {
  constexpr int L = 8;
  acc_t ax[L] = {}, ay[L] = {};
  int64_t c = 0;
  for (; c + L <= n; c += L) {
    for (int k = 0; k < L; ++k) {
      const acc_t nw = acc_t(q_nw[c + k]), ne = acc_t(q_ne[c + k]), sw = acc_t(q_sw[c + k]), se = acc_t(q_se[c + k]);
      const acc_t gg = acc_t(g[c + k]);
      ax[k] = fm_fma(fm_fma(ne - nw, sy, (se - sw) * fy), gg, ax[k]);
      ay[k] = fm_fma(fm_fma(sw - nw, ex, (se - ne) * fx), gg, ay[k]);
    }
  }
  for (int k = 0; c < n; ++c, ++k) {
    const acc_t nw = acc_t(q_nw[c]), ne = acc_t(q_ne[c]), sw = acc_t(q_sw[c]), se = acc_t(q_se[c]);
    const acc_t gg = acc_t(g[c]);
    ax[k] = fm_fma(fm_fma(ne - nw, sy, (se - sw) * fy), gg, ax[k]);
    ay[k] = fm_fma(fm_fma(sw - nw, ex, (se - ne) * fx), gg, ay[k]);
  }
  acc_t sx = 0, sy_ = 0;
  for (int k = 0; k < L; ++k) {
    sx += ax[k];
    sy_ += ay[k];
  }
  *gx_out = sx;
  *gy_out = sy_;
}

// Planar backward of a run of `len` pixels (records `rec`) for channels [0, nc) of the given
// plane pointers: one pass per channel plane, like the forward. Grid-gradient sums go to gsum.
template <typename scalar_t>
FM_ALWAYS_INLINE void backward_run_planar(const Layout& l, const scalar_t* gout_n, const scalar_t* in_n,
                                          const PixelRecord<at::opmath_type<scalar_t>>* rec,
                                          at::opmath_type<scalar_t>* gin_n, at::opmath_type<scalar_t>* gsum,
                                          int64_t len, int64_t nc, int mode, BackwardFlags f, bool fast_ok) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t sH = l.sH, sW = l.sW;
  int32_t off[kRun], fast[kRun], special[kRun];
  acc_t w_nw[kRun], w_ne[kRun], w_sw[kRun], w_se[kRun], fx[kRun], fy[kRun], ex[kRun], sy[kRun];
  acc_t gxa[kRun], gya[kRun], sgx[kRun], sgy[kRun];
  int64_t n_fast = 0, n_special = 0;
  for (int64_t k = 0; k < len; ++k) {
    const PixelRecord<acc_t>& r = rec[k];
    const bool inside = mode == kModeNearest ? r.mask != 0 : r.mask == 15;
    const Weights<acc_t> w(r);
    if (inside && fast_ok) {
      off[k] = int32_t(r.offset);
      fast[n_fast++] = int32_t(k);
      w_nw[k] = w.nw, w_ne[k] = w.ne, w_sw[k] = w.sw, w_se[k] = w.se;
      fx[k] = r.fx, fy[k] = r.fy, ex[k] = w.ex, sy[k] = w.sy;
    } else {
      off[k] = 0;
      w_nw[k] = w_ne[k] = w_sw[k] = w_se[k] = fx[k] = fy[k] = ex[k] = sy[k] = acc_t(0);
      if (mode == kModeBilinear || r.mask) special[n_special++] = int32_t(k);
    }
    gxa[k] = gya[k] = acc_t(0);
  }
  for (int64_t s = 0; s < n_special; ++s) sgx[s] = sgy[s] = acc_t(0);
  // Grid-gradient sums, four channel planes per pass so the run's arrays are read once per four.
  if (mode == kModeBilinear && f.grid_grad) {
    int64_t c = 0;
    for (; c + 4 <= nc; c += 4) {
      const scalar_t* g0 = gout_n + c * l.oC;
      const scalar_t* p0 = in_n + c * l.sC;
      for (int64_t k = 0; k < len; ++k) {
        acc_t ax = gxa[k], ay = gya[k];
        for (int64_t cc = 0; cc < 4; ++cc) {
          const scalar_t* q = p0 + cc * l.sC + off[k];
          const acc_t v_nw = acc_t(q[0]), v_ne = acc_t(q[1]), v_sw = acc_t(q[sH]), v_se = acc_t(q[sH + 1]);
          const acc_t gg = acc_t(g0[cc * l.oC + k]);
          ax = fm_fma(fm_fma(v_ne - v_nw, sy[k], (v_se - v_sw) * fy[k]), gg, ax);
          ay = fm_fma(fm_fma(v_sw - v_nw, ex[k], (v_se - v_ne) * fx[k]), gg, ay);
        }
        gxa[k] = ax;
        gya[k] = ay;
      }
    }
    for (; c < nc; ++c) {
      const scalar_t* g = gout_n + c * l.oC;
      const scalar_t* pl = in_n + c * l.sC;
      for (int64_t k = 0; k < len; ++k) {
        const scalar_t* q = pl + off[k];
        const acc_t v_nw = acc_t(q[0]), v_ne = acc_t(q[1]), v_sw = acc_t(q[sH]), v_se = acc_t(q[sH + 1]);
        const acc_t gg = acc_t(g[k]);
        gxa[k] = fm_fma(fm_fma(v_ne - v_nw, sy[k], (v_se - v_sw) * fy[k]), gg, gxa[k]);
        gya[k] = fm_fma(fm_fma(v_sw - v_nw, ex[k], (v_se - v_ne) * fx[k]), gg, gya[k]);
      }
    }
  }
  for (int64_t c = 0; c < nc; ++c) {
    const scalar_t* __restrict__ g = gout_n + c * l.oC;
    const scalar_t* __restrict__ pl = in_n + c * l.sC;
    acc_t* __restrict__ d = gin_n ? gin_n + c * l.sC : nullptr;
    if (mode == kModeNearest) {
      for (int64_t i = 0; i < n_fast; ++i) {
        const int32_t k = fast[i];
        d[off[k]] += acc_t(g[k]);
      }
      for (int64_t s = 0; s < n_special; ++s) {
        const int32_t k = special[s];
        d[rec[k].offset] += acc_t(g[k]);
      }
      continue;
    }
    if (f.input_grad && n_fast > 0) {
      // Scatter with a carried east corner per row: along a smooth row the next pixel's west
      // corner is usually this pixel's east corner, so the two contributions are added in a
      // register and each pixel does one read-modify-write per row instead of two (and never
      // re-reads a value it has just stored, which would stall on store forwarding).
      int64_t pend = off[fast[0]];  // position of the pending east contributions
      acc_t pend0 = acc_t(0), pend1 = acc_t(0);
      for (int64_t i = 0; i < n_fast; ++i) {
        const int32_t k = fast[i];
        const int64_t o = off[k];
        const acc_t gg = acc_t(g[k]);
        acc_t west0 = w_nw[k] * gg, west1 = w_sw[k] * gg;
        if (o == pend) {
          west0 += pend0;
          west1 += pend1;
        } else {
          d[pend] += pend0;
          d[pend + sH] += pend1;
        }
        d[o] += west0;
        d[o + sH] += west1;
        pend = o + 1;
        pend0 = w_ne[k] * gg;
        pend1 = w_se[k] * gg;
      }
      d[pend] += pend0;
      d[pend + sH] += pend1;
    }
    // Exact path: corners outside read 0 and get nothing; NaN fractions still reach the sums.
    for (int64_t s = 0; s < n_special; ++s) {
      const int32_t k = special[s];
      const PixelRecord<acc_t>& r = rec[k];
      const Weights<acc_t> w(r);
      const bool i_nw = r.mask & 1, i_ne = r.mask & 2, i_sw = r.mask & 4, i_se = r.mask & 8;
      const scalar_t* q = pl + r.offset;
      const acc_t gg = acc_t(g[k]);
      if (f.input_grad) {
        acc_t* dk = d + r.offset;
        if (i_nw) dk[0] = fm_fma(w.nw, gg, dk[0]);
        if (i_ne) dk[sW] = fm_fma(w.ne, gg, dk[sW]);
        if (i_sw) dk[sH] = fm_fma(w.sw, gg, dk[sH]);
        if (i_se) dk[sH + sW] = fm_fma(w.se, gg, dk[sH + sW]);
      }
      if (f.grid_grad) {
        const acc_t v_nw = i_nw ? acc_t(q[0]) : acc_t(0), v_ne = i_ne ? acc_t(q[sW]) : acc_t(0);
        const acc_t v_sw = i_sw ? acc_t(q[sH]) : acc_t(0), v_se = i_se ? acc_t(q[sH + sW]) : acc_t(0);
        sgx[s] = fm_fma(fm_fma(v_ne - v_nw, w.sy, (v_se - v_sw) * r.fy), gg, sgx[s]);
        sgy[s] = fm_fma(fm_fma(v_sw - v_nw, w.ex, (v_se - v_ne) * r.fx), gg, sgy[s]);
      }
    }
  }
  if (f.grid_grad) {
    for (int64_t s = 0; s < n_special; ++s) {
      gxa[special[s]] = sgx[s];
      gya[special[s]] = sgy[s];
    }
    for (int64_t k = 0; k < len; ++k) {
      gsum[2 * k] = gxa[k];
      gsum[2 * k + 1] = gya[k];
    }
  }
}

// Channels [c0, c1) of image n, pixels [p0, p1) (records of that range, see geometry_pass):
// grad_input planes (owned) and this block's grid-gradient sums of the range.
template <typename scalar_t, bool kCL>
FM_ALWAYS_INLINE void backward_block_impl(const Layout& l, const scalar_t* gout, const scalar_t* in,
                                          const PixelRecord<at::opmath_type<scalar_t>>* rec,
                                          at::opmath_type<scalar_t>* gin, at::opmath_type<scalar_t>* gsum,
                                          int mode, BackwardFlags f, int64_t n, int64_t c0, int64_t c1,
                                          int64_t p0, int64_t p1) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t len = p1 - p0, sW = l.sW, sH = l.sH;
  const int64_t sC = kCL ? 1 : l.sC, oC = kCL ? 1 : l.oC;
  const scalar_t* in_n = in + n * l.sN + c0 * sC;
  acc_t* gin_n = gin ? gin + n * l.sN + c0 * sC : nullptr;
  const scalar_t* gout_n = gout + n * l.oN + c0 * oC + p0 * l.oP;
  const PixelRecord<acc_t>* rec_n = rec + n * len;
  const int64_t nc = c1 - c0;
  if (!kCL) {
    const bool fast_ok = planar_fast_ok(l);
    for (int64_t p = 0; p < len; p += kRun) {
      backward_run_planar<scalar_t>(l, gout_n + p, in_n, rec_n + p, gin_n, gsum ? gsum + 2 * p : nullptr,
                                    std::min(kRun, len - p), nc, mode, f, fast_ok);
    }
    return;
  }
  for (int64_t p = 0; p < len; ++p) {
    const PixelRecord<acc_t>& r = rec_n[p];
    const scalar_t* g = gout_n + p * l.oP;
    if (mode == kModeNearest) {
      if (f.input_grad && r.mask) {
        acc_t* d = gin_n + r.offset;
        for (int64_t c = 0; c < nc; ++c) d[c * sC] += acc_t(g[c * oC]);
      }
      continue;
    }
    const Weights<acc_t> w(r);
    acc_t gx = 0, gy = 0;
    if (r.mask == 15) {
      const scalar_t* q = in_n + r.offset;
      if (kCL) {
        if (f.input_grad) {
          acc_t* d = gin_n + r.offset;
          axpy(d, w.nw, g, nc);
          axpy(d + sW, w.ne, g, nc);
          axpy(d + sH, w.sw, g, nc);
          axpy(d + sH + sW, w.se, g, nc);
        }
        if (f.grid_grad) cl_grid_sums(q, q + sW, q + sH, q + sH + sW, g, nc, w.sy, r.fy, w.ex, r.fx, &gx, &gy);
      } else {
        acc_t* d = gin_n ? gin_n + r.offset : nullptr;
        for (int64_t c = 0; c < nc; ++c) {
          const acc_t gg = acc_t(g[c * oC]);
          if (f.input_grad) {
            acc_t* dc = d + c * sC;
            dc[0] = fm_fma(w.nw, gg, dc[0]);
            dc[sW] = fm_fma(w.ne, gg, dc[sW]);
            dc[sH] = fm_fma(w.sw, gg, dc[sH]);
            dc[sH + sW] = fm_fma(w.se, gg, dc[sH + sW]);
          }
          if (f.grid_grad) {
            const scalar_t* qc = q + c * sC;
            const acc_t v_nw = acc_t(qc[0]), v_ne = acc_t(qc[sW]), v_sw = acc_t(qc[sH]), v_se = acc_t(qc[sH + sW]);
            gx = fm_fma(fm_fma(v_ne - v_nw, w.sy, (v_se - v_sw) * r.fy), gg, gx);
            gy = fm_fma(fm_fma(v_sw - v_nw, w.ex, (v_se - v_ne) * r.fx), gg, gy);
          }
        }
      }
    } else {
      // Corners outside the image read 0 and get no gradient; NaN fractions still reach gx, gy.
      const bool i_nw = r.mask & 1, i_ne = r.mask & 2, i_sw = r.mask & 4, i_se = r.mask & 8;
      const scalar_t* q = in_n + r.offset;
      acc_t* d = gin_n ? gin_n + r.offset : nullptr;
      for (int64_t c = 0; c < nc; ++c) {
        const acc_t gg = acc_t(g[c * oC]);
        if (f.input_grad) {
          acc_t* dc = d + c * sC;
          if (i_nw) dc[0] += w.nw * gg;
          if (i_ne) dc[sW] += w.ne * gg;
          if (i_sw) dc[sH] += w.sw * gg;
          if (i_se) dc[sH + sW] += w.se * gg;
        }
        if (f.grid_grad) {
          const scalar_t* qc = q + c * sC;
          const acc_t v_nw = i_nw ? acc_t(qc[0]) : acc_t(0), v_ne = i_ne ? acc_t(qc[sW]) : acc_t(0);
          const acc_t v_sw = i_sw ? acc_t(qc[sH]) : acc_t(0), v_se = i_se ? acc_t(qc[sH + sW]) : acc_t(0);
          gx = fm_fma(fm_fma(v_ne - v_nw, w.sy, (v_se - v_sw) * r.fy), gg, gx);
          gy = fm_fma(fm_fma(v_sw - v_nw, w.ex, (v_se - v_ne) * r.fx), gg, gy);
        }
      }
    }
    if (f.grid_grad) {
      gsum[2 * p] = gx;
      gsum[2 * p + 1] = gy;
    }
  }
}

template <typename scalar_t, bool kCL>
void backward_block(const Layout& l, const scalar_t* gout, const scalar_t* in,
                    const PixelRecord<at::opmath_type<scalar_t>>* rec, at::opmath_type<scalar_t>* gin,
                    at::opmath_type<scalar_t>* gsum, int mode, BackwardFlags f, int64_t n, int64_t c0, int64_t c1,
                    int64_t p0, int64_t p1) {
  backward_block_impl<scalar_t, kCL>(l, gout, in, rec, gin, gsum, mode, f, n, c0, c1, p0, p1);
}

#ifdef FM_HAVE_AVX2_CLONES
template <typename scalar_t, bool kCL>
FM_TARGET_AVX2 void backward_block_avx2(const Layout& l, const scalar_t* gout, const scalar_t* in,
                                        const PixelRecord<at::opmath_type<scalar_t>>* rec,
                                        at::opmath_type<scalar_t>* gin, at::opmath_type<scalar_t>* gsum, int mode,
                                        BackwardFlags f, int64_t n, int64_t c0, int64_t c1, int64_t p0,
                                        int64_t p1) {
  backward_block_impl<scalar_t, kCL>(l, gout, in, rec, gin, gsum, mode, f, n, c0, c1, p0, p1);
}
#endif

template <typename scalar_t, bool kCL>
void run_backward_block(const Layout& l, const scalar_t* gout, const scalar_t* in,
                        const PixelRecord<at::opmath_type<scalar_t>>* rec, at::opmath_type<scalar_t>* gin,
                        at::opmath_type<scalar_t>* gsum, int mode, BackwardFlags f, int64_t n, int64_t c0,
                        int64_t c1, int64_t p0, int64_t p1) {
#ifdef FM_HAVE_AVX2_CLONES
  if (cpu_has_avx2()) {
    return backward_block_avx2<scalar_t, kCL>(l, gout, in, rec, gin, gsum, mode, f, n, c0, c1, p0, p1);
  }
#endif
  backward_block<scalar_t, kCL>(l, gout, in, rec, gin, gsum, mode, f, n, c0, c1, p0, p1);
}

// Channel blocks per image: enough (image, block) tasks for parallelism when N is small, at
// least 4 channels a block. A function of (N, C) only, so results never depend on the thread count.
int64_t channel_blocks(int64_t N, int64_t C) {
  constexpr int64_t kTasks = 16, kMinChannels = 4;
  const int64_t want = (kTasks + N - 1) / std::max<int64_t>(N, 1);
  const int64_t most = std::max<int64_t>(1, C / kMinChannels);
  return std::max<int64_t>(1, std::min(want, most));
}

// Pixels per chunk of the backward. The chunk's records and grid-gradient sums (N * chunk *
// (32 + 8 * blocks) bytes for float) stay within a quarter of grad_input's size (at least 1 MiB):
// small images keep one chunk (a chunk border costs a second pass over a row of grad_input once
// the other images have evicted it: ~5% at (32, 64, 64, 64) with 1 MiB chunks), large ones stop
// carrying scratch that grows with the image. A function of the sizes only, never of the thread
// count; a multiple of kRun.
int64_t backward_chunk(int64_t N, int64_t blocks, int64_t P, int64_t input_elements) {
  constexpr int64_t kBytesPerPixel = 32;
  const int64_t budget = std::max<int64_t>(int64_t(1) << 20, input_elements);  // = 4 bytes x elements / 4
  const int64_t per_pixel = std::max<int64_t>(1, N) * (kBytesPerPixel + 8 * blocks);
  const int64_t runs = std::max<int64_t>(8, budget / per_pixel / kRun);
  return std::min(std::max<int64_t>(P, 1), runs * kRun);
}

std::tuple<at::Tensor, at::Tensor> grid_sample_backward_cpu(const at::Tensor& grad_output_in,
                                                            const at::Tensor& input_in, const at::Tensor& grid_in,
                                                            int64_t mode, int64_t padding_mode, bool align_corners,
                                                            bool input_requires_grad, bool grid_requires_grad) {
  check_grid_sample_backward(grad_output_in, input_in, grid_in, mode, padding_mode);
  TORCH_CHECK(input_in.device().is_cpu(), "grid_sample_backward_cpu: input must be on the CPU");
  const bool cl = grid_sample_channels_last(input_in);
  // grad_input shares the input's strides, so an expanded input is copied only when its
  // (full-size) gradient is wanted.
  const bool strided = cl || (!input_requires_grad && has_broadcast_dim(input_in));
  const at::Tensor input = strided ? input_in : input_in.contiguous();
  const at::Tensor grid = grid_in.contiguous();
  const at::Tensor gout = grad_output_in.contiguous(format_of(cl));
  const Layout l = make_layout(input, grid, cl);
  const auto acc_type = at::toOpMathType(input.scalar_type());
  const bool low_precision = acc_type != input.scalar_type();

  at::Tensor grad_input = input_requires_grad
                              ? at::empty(input.sizes(), input.options(), format_of(cl)).zero_()
                              : at::empty({0}, input.options());
  at::Tensor grad_grid = grid_requires_grad ? at::empty(grid.sizes(), grid.options()) : at::empty({0}, grid.options());
  const BackwardFlags flags{input_requires_grad, grid_requires_grad && mode == kModeBilinear};
  if (grid_requires_grad && mode != kModeBilinear) grad_grid.zero_();  // nearest: PyTorch's zero grid gradient
  if (l.N * l.pixels() == 0 || l.C == 0 || (!flags.input_grad && !flags.grid_grad)) {
    if (grid_requires_grad) grad_grid.zero_();
    return {grad_input, grad_grid};
  }
  // Low-precision grad_input accumulates in float (same strides), rounded once at the end.
  at::Tensor gin_acc = grad_input;
  if (input_requires_grad && low_precision) {
    gin_acc = at::empty(input.sizes(), input.options().dtype(acc_type), format_of(cl)).zero_();
  }
  const int64_t blocks = channel_blocks(l.N, l.C);
  const int64_t P = l.pixels();

  // Pixels go in chunks (the same for every thread count, a multiple of the planar run): the
  // geometry records and grid-gradient sums exist for one chunk at a time. Every grad_input
  // element still receives its contributions in pixel order, so chunking changes no bit.
  const int64_t chunk = backward_chunk(l.N, blocks, P, l.N * l.C * l.H * l.W);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "grid_sample_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor rec_buf = at::empty({l.N * chunk * int64_t(sizeof(PixelRecord<acc_t>))},
                                   input.options().dtype(at::kByte));
    auto* rec = reinterpret_cast<PixelRecord<acc_t>*>(rec_buf.mutable_data_ptr<uint8_t>());
    const scalar_t* gp = grid.const_data_ptr<scalar_t>();

    // Grid-gradient sums per (image, channel block, pixel of the chunk).
    at::Tensor gsum_buf;
    acc_t* gsum = nullptr;
    if (flags.grid_grad) {
      gsum_buf = at::empty({l.N * blocks * chunk * 2}, input.options().dtype(acc_type));
      gsum = gsum_buf.mutable_data_ptr<acc_t>();
    }
    acc_t* gin = flags.input_grad ? gin_acc.mutable_data_ptr<acc_t>() : nullptr;
    const scalar_t* ip = input.const_data_ptr<scalar_t>();
    const scalar_t* op = gout.const_data_ptr<scalar_t>();
    scalar_t* gg = flags.grid_grad ? grad_grid.mutable_data_ptr<scalar_t>() : nullptr;
    const int64_t per_block = (l.C + blocks - 1) / blocks;
    for (int64_t p0 = 0; p0 < P; p0 += chunk) {
      const int64_t p1 = std::min(P, p0 + chunk), len = p1 - p0;
      geometry_pass<scalar_t, acc_t>(l, gp, int(mode), int(padding_mode), align_corners, rec, p0, p1);
      at::parallel_for(0, l.N * blocks, 1, [&](int64_t b, int64_t e) {
        for (int64_t task = b; task < e; ++task) {
          const int64_t n = task / blocks, k = task - n * blocks;
          const int64_t c0 = std::min(l.C, k * per_block), c1 = std::min(l.C, c0 + per_block);
          acc_t* gs = gsum ? gsum + (n * blocks + k) * len * 2 : nullptr;
          if (c0 >= c1) {
            if (gs) std::fill(gs, gs + 2 * len, acc_t(0));
            continue;
          }
          if (cl) {
            run_backward_block<scalar_t, true>(l, op, ip, rec, gin, gs, int(mode), flags, n, c0, c1, p0, p1);
          } else {
            run_backward_block<scalar_t, false>(l, op, ip, rec, gin, gs, int(mode), flags, n, c0, c1, p0, p1);
          }
        }
      });
      if (flags.grid_grad) {
        at::parallel_for(0, l.N * len, 4096, [&](int64_t b, int64_t e) {
          int64_t n = b / len, p = b - n * len;
          for (int64_t k = b; k < e; ++k, p = (p + 1 == len) ? (++n, 0) : p + 1) {
            acc_t sx = 0, sy = 0;
            for (int64_t blk = 0; blk < blocks; ++blk) {
              const acc_t* gs = gsum + ((n * blocks + blk) * len + p) * 2;
              sx += gs[0];
              sy += gs[1];
            }
            const int64_t out = n * P + p0 + p;
            gg[2 * out] = static_cast<scalar_t>(sx * rec[k].dx);
            gg[2 * out + 1] = static_cast<scalar_t>(sy * rec[k].dy);
          }
        });
      }
    }
  });
  if (input_requires_grad && low_precision) grad_input.copy_(gin_acc);
  return {grad_input, grad_grid};
}

}  // namespace
}  // namespace fastmotion

FASTMOTION_REGISTER_CPU(grid_sample, fastmotion::grid_sample_forward_cpu, fastmotion::grid_sample_backward_cpu)
