// CPU kernels of the Gaussian-heatmap ops (math: csrc/include/fastmotion/render_gaussians.h).
//
// One task of at::parallel_for per output heatmap (forward) or per keypoint (backward, which
// reads one grad_out heatmap and writes that keypoint's driving and source gradients: no two
// tasks write the same gradient, so no atomics). Per heatmap the quadratic form's per-row terms
// are hoisted and the row loops are written for auto-vectorisation (cpu::exp_poly, omp simd
// reductions); on x86-64 they are compiled twice, for AVX2+FMA and for the baseline, and picked
// at run time. Float math for float/half/bfloat16 (row sums accumulate into double across rows),
// double for double.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>
#include <type_traits>
#include <vector>

#include "fastmotion/render_gaussians.h"
#include "ops/cpu/vec_math.h"
#include "ops/register.h"
#include "ops/render_gaussians.h"

namespace fastmotion {
namespace {

// Loop bodies are force-inlined into two out-of-line copies (baseline, and AVX2+FMA picked at
// run time, see ops/cpu/vec_math.h) so each is vectorized for its own target.
#if defined(__GNUC__)
#define FM_ROW_IMPL inline __attribute__((always_inline))
#else
#define FM_ROW_IMPL inline
#endif
#define FM_ROW_ATTR
#define FM_ROW_ATTR_AVX2 FASTMOTION_TARGET_AVX2

#ifdef FASTMOTION_HAVE_AVX2_COPIES
#define FM_X86_DISPATCH 1
#endif

// One keypoint map's constants for a row of pixels: q_j = dx_j (pa dx_j + t) + u.
template <typename acc_t>
struct RowQ {
  const acc_t* dx;
  acc_t pa, t, u;
};

// ---- row kernels (the hot loops) ----

// out_j = (G_d - G_s) * scale (G_s = 0 without a source).
template <typename acc_t>
FM_ROW_IMPL void fwd_const_impl(acc_t* __restrict out, int64_t W, RowQ<acc_t> d, RowQ<acc_t> s, bool has_src,
                                     acc_t scale) {
  const acc_t* __restrict dxd = d.dx;
  const acc_t pad = d.pa, td = d.t, ud = d.u;
  if (has_src) {
    const acc_t* __restrict dxs = s.dx;
    const acc_t pas = s.pa, ts = s.t, us = s.u;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      const acc_t qd = dxd[j] * (pad * dxd[j] + td) + ud;
      const acc_t qs = dxs[j] * (pas * dxs[j] + ts) + us;
      const acc_t gd = cpu::exp_poly(acc_t(-0.5) * (qd < acc_t(0) ? acc_t(0) : qd));
      const acc_t gs = cpu::exp_poly(acc_t(-0.5) * (qs < acc_t(0) ? acc_t(0) : qs));
      out[j] = (gd - gs) * scale;
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      const acc_t qd = dxd[j] * (pad * dxd[j] + td) + ud;
      out[j] = cpu::exp_poly(acc_t(-0.5) * (qd < acc_t(0) ? acc_t(0) : qd)) * scale;
    }
  }
}

// g_j = G_j stored; returns sum_j G_j.
template <typename acc_t>
FM_ROW_IMPL acc_t fwd_store_impl(acc_t* __restrict g, int64_t W, RowQ<acc_t> d) {
  const acc_t* __restrict dx = d.dx;
  const acc_t pa = d.pa, t = d.t, u = d.u;
  acc_t sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < W; ++j) {
    const acc_t q = dx[j] * (pa * dx[j] + t) + u;
    const acc_t e = cpu::exp_poly(acc_t(-0.5) * (q < acc_t(0) ? acc_t(0) : q));
    g[j] = e;
    sum += e;
  }
  return sum;
}

// r[0..2] = sum_j w_j (1, dx_j, dx_j^2) with w_j = gout_j G_j [q_j >= 0].
template <typename acc_t>
FM_ROW_IMPL void bwd_const_impl(const acc_t* __restrict g, int64_t W, RowQ<acc_t> d, acc_t* r) {
  const acc_t* __restrict dx = d.dx;
  const acc_t pa = d.pa, t = d.t, u = d.u;
  acc_t r0 = 0, r1 = 0, r2 = 0;
#pragma omp simd reduction(+ : r0, r1, r2)
  for (int64_t j = 0; j < W; ++j) {
    const acc_t q = dx[j] * (pa * dx[j] + t) + u;
    const acc_t e = cpu::exp_poly(acc_t(-0.5) * (q < acc_t(0) ? acc_t(0) : q));
    const acc_t m = q < acc_t(0) ? acc_t(0) : e;
    const acc_t w = g[j] * m;
    const acc_t wx = w * dx[j];
    r0 += w;
    r1 += wx;
    r2 += wx * dx[j];
  }
  r[0] = r0;
  r[1] = r1;
  r[2] = r2;
}

// As bwd_const_impl (with gout - g0, see gaussian_moments_to_dq) plus r[3..5] weighted by
// G [q >= 0] alone, r[6] = sum G, r[7] = sum (gout - g0) G.
template <typename acc_t>
FM_ROW_IMPL void bwd_sum_impl(const acc_t* __restrict g, int64_t W, RowQ<acc_t> d, acc_t g0, acc_t* r) {
  const acc_t* __restrict dx = d.dx;
  const acc_t pa = d.pa, t = d.t, u = d.u;
  acc_t r0 = 0, r1 = 0, r2 = 0, u0 = 0, u1 = 0, u2 = 0, sg = 0, dot = 0;
#pragma omp simd reduction(+ : r0, r1, r2, u0, u1, u2, sg, dot)
  for (int64_t j = 0; j < W; ++j) {
    const acc_t q = dx[j] * (pa * dx[j] + t) + u;
    const bool neg = q < acc_t(0);
    const acc_t e = cpu::exp_poly(acc_t(-0.5) * (neg ? acc_t(0) : q));
    const acc_t m = neg ? acc_t(0) : e;
    const acc_t gs = g[j] - g0;
    const acc_t w = gs * m;
    r0 += w;
    r1 += w * dx[j];
    r2 += w * dx[j] * dx[j];
    u0 += m;
    u1 += m * dx[j];
    u2 += m * dx[j] * dx[j];
    sg += e;
    dot += gs * e;
  }
  r[0] = r0;
  r[1] = r1;
  r[2] = r2;
  r[3] = u0;
  r[4] = u1;
  r[5] = u2;
  r[6] = sg;
  r[7] = dot;
}

template <typename acc_t>
struct RowKernels {
  void (*fwd_const)(acc_t*, int64_t, RowQ<acc_t>, RowQ<acc_t>, bool, acc_t);
  acc_t (*fwd_store)(acc_t*, int64_t, RowQ<acc_t>);
  void (*bwd_const)(const acc_t*, int64_t, RowQ<acc_t>, acc_t*);
  void (*bwd_sum)(const acc_t*, int64_t, RowQ<acc_t>, acc_t, acc_t*);
};

#define FM_ROW_KERNELS(SUFFIX, ATTR, T)                                                                           \
  ATTR void fwd_const_##SUFFIX(T* out, int64_t W, RowQ<T> d, RowQ<T> s, bool has_src, T scale) {                 \
    fwd_const_impl<T>(out, W, d, s, has_src, scale);                                                              \
  }                                                                                                               \
  ATTR T fwd_store_##SUFFIX(T* g, int64_t W, RowQ<T> d) { return fwd_store_impl<T>(g, W, d); }                  \
  ATTR void bwd_const_##SUFFIX(const T* g, int64_t W, RowQ<T> d, T* r) { bwd_const_impl<T>(g, W, d, r); }       \
  ATTR void bwd_sum_##SUFFIX(const T* g, int64_t W, RowQ<T> d, T g0, T* r) { bwd_sum_impl<T>(g, W, d, g0, r); }

FM_ROW_KERNELS(f64, , double)
FM_ROW_KERNELS(f32, FM_ROW_ATTR, float)
#ifdef FM_X86_DISPATCH
FM_ROW_KERNELS(f32_avx2, FM_ROW_ATTR_AVX2, float)
#endif

template <typename acc_t>
RowKernels<acc_t> row_kernels();

template <>
RowKernels<double> row_kernels<double>() {
  return {fwd_const_f64, fwd_store_f64, bwd_const_f64, bwd_sum_f64};
}

template <>
RowKernels<float> row_kernels<float>() {
#ifdef FM_X86_DISPATCH
  if (cpu::has_avx2_fma()) return {fwd_const_f32_avx2, fwd_store_f32_avx2, bwd_const_f32_avx2, bwd_sum_f32_avx2};
#endif
  return {fwd_const_f32, fwd_store_f32, bwd_const_f32, bwd_sum_f32};
}

// ---- keypoint loading ----

// Where one input's keypoints live: element offset a * sa + b * sb + k * block.
template <typename scalar_t>
struct KpRef {
  const scalar_t* ptr = nullptr;
  int64_t sa = 0, sb = 0, block = 0;

  static KpRef of(const at::Tensor& t, int lead) {
    KpRef r;
    r.ptr = t.const_data_ptr<scalar_t>();
    const LeadStrides ls = lead_strides(t, lead);
    r.sa = ls.a;
    r.sb = ls.b;
    r.block = 1;
    for (int64_t d = lead + 1; d < t.dim(); ++d) r.block *= t.size(d);
    return r;
  }
  const scalar_t* at(int64_t a, int64_t b, int64_t k) const { return ptr + a * sa + b * sb + k * block; }
};

// One keypoint: its quadratic form and the variance entries its gradient needs.
template <typename acc_t>
struct Keypoint {
  GaussQuad<acc_t> quad;
  acc_t v[4];
};

template <typename scalar_t, typename acc_t>
Keypoint<acc_t> load_keypoint(const KpRef<scalar_t>& mean, const KpRef<scalar_t>& var, int mode, acc_t fixed_var,
                              int64_t a, int64_t b, int64_t k) {
  Keypoint<acc_t> kp{};
  const scalar_t* m = mean.at(a, b, k);
  const int nv = var_mode_numel(mode);
  if (nv > 0) {
    const scalar_t* v = var.at(a, b, k);
    for (int i = 0; i < nv; ++i) kp.v[i] = acc_t(v[i]);
  }
  kp.quad = GaussQuad<acc_t>::make(acc_t(m[0]), acc_t(m[1]), mode, kp.v, fixed_var);
  return kp;
}

template <typename acc_t>
std::vector<acc_t> axis_coords(int64_t n) {
  std::vector<acc_t> c(n);
  for (int64_t i = 0; i < n; ++i) c[i] = grid_coord<acc_t>(i, n);
  return c;
}

// The keypoints of one call, read the same way by the forward and the backward: keypoint
// (a, b, k) of the driving frames and, with a source, of the source frames, with the per-column
// offsets dx[j] = x_j - mean_x of each.
template <typename scalar_t, typename acc_t>
struct KeypointReader {
  KpRef<scalar_t> md, vd, ms, vs;
  int mode;
  bool has_source;
  acc_t fixed;
  std::vector<acc_t> xs;

  KeypointReader(const GaussianInputs& in, const GaussianShape& s, double fixed_var)
      : md(KpRef<scalar_t>::of(in.mean_d, s.lead)),
        vd(in.var_d.defined() ? KpRef<scalar_t>::of(in.var_d, s.lead) : KpRef<scalar_t>{}),
        ms(s.has_source ? KpRef<scalar_t>::of(in.mean_s, s.lead) : KpRef<scalar_t>{}),
        vs(in.var_s.defined() ? KpRef<scalar_t>::of(in.var_s, s.lead) : KpRef<scalar_t>{}),
        mode(s.mode),
        has_source(s.has_source),
        fixed(acc_t(fixed_var)),
        xs(axis_coords<acc_t>(s.W)) {}

  // kd, dxd: the driving keypoint; ks, dxs: the source one (ks stays empty without a source).
  void read(int64_t a, int64_t b, int64_t k, Keypoint<acc_t>& kd, acc_t* dxd, Keypoint<acc_t>& ks,
            acc_t* dxs) const {
    const int64_t W = static_cast<int64_t>(xs.size());
    kd = load_keypoint<scalar_t, acc_t>(md, vd, mode, fixed, a, b, k);
    for (int64_t j = 0; j < W; ++j) dxd[j] = xs[j] - kd.quad.mx;
    ks = Keypoint<acc_t>{};
    if (has_source) {
      ks = load_keypoint<scalar_t, acc_t>(ms, vs, mode, fixed, a, b, k);
      for (int64_t j = 0; j < W; ++j) dxs[j] = xs[j] - ks.quad.mx;
    }
  }
};

template <typename acc_t>
RowQ<acc_t> row_of(const GaussQuad<acc_t>& q, const acc_t* dx, acc_t y) {
  const acc_t dy = y - q.my;
  return RowQ<acc_t>{dx, q.pa, q.pb * dy, q.pc * dy * dy};
}

// Heatmaps per parallel task: about 32K pixels (ATen's grain), so that small problems do not pay
// for waking (or waiting on) other threads.
int64_t heatmap_grain(int64_t H, int64_t W) {
  const int64_t hw = H * W;
  return hw >= 32768 ? 1 : (32768 + hw - 1) / hw;
}

// ---- forward ----

template <typename scalar_t>
void forward_kernel(const GaussianInputs& in, const GaussianShape& s, double fixed_var, double norm_const, bool norm_sum,
                    bool background, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kDirect = std::is_same_v<scalar_t, acc_t>;
  const auto rk = row_kernels<acc_t>();
  const KeypointReader<scalar_t, acc_t> kps(in, s, fixed_var);
  const int64_t H = s.H, W = s.W, HW = H * W, C = s.C, B = s.B;
  const int bg = background ? 1 : 0;
  const acc_t scale = acc_t(1.0 / norm_const);
  const auto ys = axis_coords<acc_t>(H);
  scalar_t* op = out.mutable_data_ptr<scalar_t>();

  at::parallel_for(0, s.A * B * C, heatmap_grain(H, W), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> dxd(W), dxs(W), row(W);
    std::vector<acc_t> gd(norm_sum ? HW : 0), gs(norm_sum && s.has_source ? HW : 0);
    for (int64_t h = begin; h < end; ++h) {
      scalar_t* o = op + h * HW;
      const int64_t ab = h / C, c = h % C, k = c - bg, a = ab / B, b = ab % B;
      if (k < 0) {
        for (int64_t i = 0; i < HW; ++i) o[i] = scalar_t(0);
        continue;
      }
      Keypoint<acc_t> kd, ks;
      kps.read(a, b, k, kd, dxd.data(), ks, dxs.data());
      if (!norm_sum) {
        for (int64_t i = 0; i < H; ++i) {
          acc_t* dst = kDirect ? reinterpret_cast<acc_t*>(o + i * W) : row.data();
          rk.fwd_const(dst, W, row_of(kd.quad, dxd.data(), ys[i]), row_of(ks.quad, dxs.data(), ys[i]),
                       s.has_source, scale);
          if constexpr (!kDirect) {
            for (int64_t j = 0; j < W; ++j) o[i * W + j] = static_cast<scalar_t>(row[j]);
          }
        }
        continue;
      }
      // Sum normalisation: the heatmaps go to scratch first, then are scaled by 1 / sum.
      double sum_d = 0, sum_s = 0;
      for (int64_t i = 0; i < H; ++i) {
        sum_d += rk.fwd_store(gd.data() + i * W, W, row_of(kd.quad, dxd.data(), ys[i]));
        if (s.has_source) sum_s += rk.fwd_store(gs.data() + i * W, W, row_of(ks.quad, dxs.data(), ys[i]));
      }
      const acc_t inv_d = sum_d == 0 ? acc_t(1) : acc_t(1.0 / sum_d);
      const acc_t inv_s = sum_s == 0 ? acc_t(1) : acc_t(1.0 / sum_s);
      for (int64_t i = 0; i < HW; ++i) {
        const acc_t v = s.has_source ? gd[i] * inv_d - gs[i] * inv_s : gd[i] * inv_d;
        o[i] = static_cast<scalar_t>(v);
      }
    }
  });
}

// ---- backward ----

// Accumulates one keypoint map's moments over a heatmap, row by row.
template <typename acc_t>
struct MapMoments {
  double wg[5] = {0, 0, 0, 0, 0};  // weighted by gout G [q >= 0]: Mx, My, Mxx, Mxy, Myy
  double w[5] = {0, 0, 0, 0, 0};   // weighted by G [q >= 0] (sum normalisation only)
  double sum = 0, dot = 0;         // sum G, sum gout G (sum normalisation only)

  acc_t g0 = 0;  // gout at the pixel nearest the keypoint (sum normalisation, see render_gaussians.h)

  void add_row(const RowKernels<acc_t>& rk, const acc_t* g, int64_t W, const RowQ<acc_t>& rq, acc_t dy,
               bool norm_sum) {
    acc_t r[8];
    if (norm_sum) {
      rk.bwd_sum(g, W, rq, g0, r);
      add(w, r[3], r[4], r[5], dy);
      sum += r[6];
      dot += r[7];
    } else {
      rk.bwd_const(g, W, rq, r);
    }
    add(wg, r[0], r[1], r[2], dy);
  }

  static void add(double* m, acc_t r0, acc_t r1, acc_t r2, acc_t dy) {
    m[0] += r1;
    m[1] += double(dy) * r0;
    m[2] += r2;
    m[3] += double(dy) * r1;
    m[4] += double(dy) * dy * r0;
  }

  // Writes the mean and variance gradients of one keypoint.
  template <typename scalar_t>
  void finish(const Keypoint<acc_t>& kp, int mode, bool norm_sum, acc_t scale, acc_t sign, scalar_t* gm,
              scalar_t* gv) const {
    acc_t wga[5], wa[5], M[5], gma[2], gva[4];
    for (int i = 0; i < 5; ++i) {
      wga[i] = acc_t(wg[i]);
      wa[i] = acc_t(w[i]);
    }
    gaussian_moments_to_dq<acc_t>(norm_sum, scale, sign, wga, wa, acc_t(sum), acc_t(dot), M);
    gaussian_param_grads<acc_t>(kp.quad, mode, kp.v, M, gma, gva);
    gm[0] = static_cast<scalar_t>(gma[0]);
    gm[1] = static_cast<scalar_t>(gma[1]);
    for (int i = 0; i < var_mode_numel(mode); ++i) gv[i] = static_cast<scalar_t>(gva[i]);
  }
};

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad_out, const GaussianInputs& in, const GaussianShape& s, double fixed_var,
                     double norm_const, bool norm_sum, bool background, at::Tensor& gmd, at::Tensor& gvd,
                     at::Tensor& gms, at::Tensor& gvs) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto rk = row_kernels<acc_t>();
  const KeypointReader<scalar_t, acc_t> kps(in, s, fixed_var);
  const int64_t H = s.H, W = s.W, K = s.K, B = s.B;
  const int bg = background ? 1 : 0;
  const int nv = var_mode_numel(s.mode);
  const acc_t scale = acc_t(1.0 / norm_const);
  const auto ys = axis_coords<acc_t>(H);
  const scalar_t* gp = grad_out.const_data_ptr<scalar_t>();
  const LeadStrides gl = lead_strides(grad_out, s.lead);
  const int64_t g_sa = gl.a, g_sb = gl.b, g_sc = grad_out.stride(s.lead);
  const int64_t g_sh = grad_out.stride(s.lead + 1), g_sw = grad_out.stride(s.lead + 2);
  scalar_t* gmd_p = gmd.mutable_data_ptr<scalar_t>();
  scalar_t* gvd_p = nv > 0 ? gvd.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* gms_p = s.has_source ? gms.mutable_data_ptr<scalar_t>() : nullptr;
  scalar_t* gvs_p = s.has_source && nv > 0 ? gvs.mutable_data_ptr<scalar_t>() : nullptr;

  at::parallel_for(0, s.A * B * K, heatmap_grain(H, W), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> dxd(W), dxs(W), g(W);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t ab = r / K, k = r % K, a = ab / B, b = ab % B;
      Keypoint<acc_t> kd, ks;
      kps.read(a, b, k, kd, dxd.data(), ks, dxs.data());
      const scalar_t* go = gp + a * g_sa + b * g_sb + (k + bg) * g_sc;
      MapMoments<acc_t> mom_d, mom_s;
      if (norm_sum) {
        auto g_near = [&](const GaussQuad<acc_t>& q) {
          return acc_t(go[nearest_pixel(q.my, H) * g_sh + nearest_pixel(q.mx, W) * g_sw]);
        };
        mom_d.g0 = g_near(kd.quad);
        if (s.has_source) mom_s.g0 = g_near(ks.quad);
      }
      for (int64_t i = 0; i < H; ++i) {
        const scalar_t* gi = go + i * g_sh;
        for (int64_t j = 0; j < W; ++j) g[j] = acc_t(gi[j * g_sw]);
        mom_d.add_row(rk, g.data(), W, row_of(kd.quad, dxd.data(), ys[i]), ys[i] - kd.quad.my, norm_sum);
        if (s.has_source) {
          mom_s.add_row(rk, g.data(), W, row_of(ks.quad, dxs.data(), ys[i]), ys[i] - ks.quad.my, norm_sum);
        }
      }
      mom_d.finish(kd, s.mode, norm_sum, scale, acc_t(1), gmd_p + 2 * r, nv > 0 ? gvd_p + nv * r : nullptr);
      if (s.has_source) {
        mom_s.finish(ks, s.mode, norm_sum, scale, acc_t(-1), gms_p + 2 * r, nv > 0 ? gvs_p + nv * r : nullptr);
      }
    }
  });
}

at::Tensor render_gaussians_forward_cpu(const at::Tensor& mean_d, const c10::optional<at::Tensor>& var_d,
                                        const c10::optional<at::Tensor>& mean_s,
                                        const c10::optional<at::Tensor>& var_s, double fixed_var, int64_t height,
                                        int64_t width, double norm_const, bool norm_sum, bool background) {
  const GaussianShape s = check_gaussian_forward(mean_d, var_d, mean_s, var_s, fixed_var, height, width, norm_const,
                                                 norm_sum, background);
  TORCH_CHECK(mean_d.device().is_cpu(), "render_gaussians_forward (cpu): tensors must be on the CPU");
  const GaussianInputs in = prepare_gaussian_inputs(mean_d, var_d, mean_s, var_s, s.lead);
  at::Tensor out = at::empty(lead_sizes(mean_d, s.lead, {s.C, s.H, s.W}), mean_d.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mean_d.scalar_type(), "render_gaussians_forward_cpu",
                                  [&] {
                                    forward_kernel<scalar_t>(in, s, fixed_var, norm_sum ? 1.0 : norm_const, norm_sum,
                                                             background, out);
                                  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> render_gaussians_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& mean_d, const c10::optional<at::Tensor>& var_d,
    const c10::optional<at::Tensor>& mean_s, const c10::optional<at::Tensor>& var_s, double fixed_var,
    double norm_const, bool norm_sum, bool background) {
  const GaussianShape s =
      check_gaussian_backward(grad_out, mean_d, var_d, mean_s, var_s, fixed_var, norm_const, norm_sum, background);
  TORCH_CHECK(mean_d.device().is_cpu(), "render_gaussians_backward (cpu): tensors must be on the CPU");
  const GaussianInputs in = prepare_gaussian_inputs(mean_d, var_d, mean_s, var_s, s.lead);
  GaussianGrads grads = empty_gaussian_grads(mean_d, var_d, mean_s, var_s);
  at::Tensor &gmd = grads.mean_d, &gvd = grads.var_d, &gms = grads.mean_s, &gvs = grads.var_s;
  if (gmd.numel() == 0) return {gmd, gvd, gms, gvs};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, mean_d.scalar_type(), "render_gaussians_backward_cpu",
                                  [&] {
                                    backward_kernel<scalar_t>(grad_out, in, s, fixed_var, norm_sum ? 1.0 : norm_const,
                                                              norm_sum, background, gmd, gvd, gms, gvs);
                                  });
  return {gmd, gvd, gms, gvs};
}

}  // namespace
}  // namespace fastmotion

FASTMOTION_REGISTER_CPU(render_gaussians, fastmotion::render_gaussians_forward_cpu,
                        fastmotion::render_gaussians_backward_cpu)
