// CPU kernels of the heatmap-moments ops. One row (one keypoint's H*W logits, a few KB to a few
// hundred KB) per task of at::parallel_for: the row stays in cache, so the kernel reads it in
// three short passes (max; exp-weights and mean; centred scatter) instead of doing the one-pass
// online update the GPU kernels use. Accumulation in float (double for double inputs).
// Float rows (half/bfloat16 rows are widened to float first) run auto-vectorized loops with a
// polynomial exp, compiled for AVX2+FMA and for baseline x86-64 (see vec_math.h).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#include "fastmotion/heatmap_moments.h"
#include "ops/cpu/vec_math.h"
#include "ops/heatmap_moments.h"
#include "ops/register.h"

namespace fastmotion {
namespace {

// One row's statistics in three passes over the row: max; exp-weights, their sum and the mean;
// centred scatter. kSimd lets the compiler reorder the sums to vectorize them (the float path);
// the double path keeps them in order.
template <typename T, bool kSimd>
FASTMOTION_INLINE void moments_row_passes(const T* l, int64_t H, int64_t W, T inv_t, const T* xs, const T* ys, T* e,
                                          T* mean, T* var, T* lse) {
  const int64_t hw = H * W;
  T mx = -std::numeric_limits<T>::infinity();
  int bad = 0;  // NaN or +inf anywhere makes the whole row NaN, like softmax
#pragma omp simd reduction(max : mx) reduction(+ : bad) if(simd : kSimd)
  for (int64_t i = 0; i < hw; ++i) {
    const T v = l[i] * inv_t;
    mx = v > mx ? v : mx;
    bad += (v != v) | (v == std::numeric_limits<T>::infinity());
  }
  if (bad) {
    const T nan = std::numeric_limits<T>::quiet_NaN();
    mean[0] = mean[1] = nan;
    var[0] = var[1] = var[2] = var[3] = nan;
    *lse = nan;
    return;
  }
  T s = 0, sx = 0, sy = 0;
  for (int64_t i = 0; i < H; ++i) {
    const T* li = l + i * W;
    T* ei = e + i * W;
    T rs = 0, rsx = 0;
#pragma omp simd reduction(+ : rs, rsx) if(simd : kSimd)
    for (int64_t j = 0; j < W; ++j) {
      const T w = cpu::exp_poly(li[j] * inv_t - mx);
      ei[j] = w;
      rs += w;
      rsx += w * xs[j];
    }
    s += rs;
    sx += rsx;
    sy += rs * ys[i];
  }
  const T inv_s = T(1) / s;
  const T cx = sx * inv_s, cy = sy * inv_s;
  T cxx = 0, cxy = 0, cyy = 0;
  for (int64_t i = 0; i < H; ++i) {
    const T* ei = e + i * W;
    const T dy = ys[i] - cy;
    T rs = 0, rdx = 0, rdxx = 0;
#pragma omp simd reduction(+ : rs, rdx, rdxx) if(simd : kSimd)
    for (int64_t j = 0; j < W; ++j) {
      const T dx = xs[j] - cx;
      const T w = ei[j];
      rs += w;
      rdx += w * dx;
      rdxx += w * dx * dx;
    }
    cxx += rdxx;
    cxy += rdx * dy;
    cyy += rs * dy * dy;
  }
  moments_finish<T>(s, mx, cx, cy, cxx, cxy, cyy, H, W, mean, var, lse);
}

// ---- float fast path -------------------------------------------------------------------------

FASTMOTION_CPU_CLONES
void moments_row_f32(const float* l, int64_t H, int64_t W, float inv_t, const float* xs, const float* ys,
                     float* e, float* mean, float* var, float* lse) {
  moments_row_passes<float, true>(l, H, W, inv_t, xs, ys, e, mean, var, lse);
}

FASTMOTION_CPU_CLONES
void moments_grad_row_f32(const float* l, float* g, int64_t H, int64_t W, float inv_t, const float* xs,
                          const float* ys, float cx, float cy, float ax, float ay, float qxx, float qxy, float qyy,
                          float fbar, float lse) {
  for (int64_t i = 0; i < H; ++i) {
    const float y = ys[i] - cy;                     // coordinates centred on the mean (see MomentGradRow)
    const float bx = ax + qxy * y;                  // linear coefficient in x on this image row
    const float c0 = ay * y + qyy * y * y - fbar;   // the rest of f - fbar on this image row
    const float* li = l + i * W;
    float* gi = g + i * W;
#pragma omp simd
    for (int64_t j = 0; j < W; ++j) {
      const float x = xs[j] - cx;
      const float p = cpu::exp_poly(li[j] * inv_t - lse);
      gi[j] = p * ((bx + qxx * x) * x + c0) * inv_t;
    }
  }
}

template <typename scalar_t>
constexpr bool kFloatPath = std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, at::Half> ||
                            std::is_same_v<scalar_t, at::BFloat16>;


template <typename scalar_t>
void forward_rows(const at::Tensor& logits, at::Tensor& mean, at::Tensor& var, at::Tensor& var_raw, at::Tensor& lse,
                  double temperature, int64_t var_mode, double clip) {
  const int64_t rows = logits.size(0), H = logits.size(1), W = logits.size(2);
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> xs(W), ys(H);
  for (int64_t j = 0; j < W; ++j) xs[j] = grid_coord<acc_t>(j, W);
  for (int64_t i = 0; i < H; ++i) ys[i] = grid_coord<acc_t>(i, H);
  const scalar_t* lp = logits.const_data_ptr<scalar_t>();
  acc_t* mp = mean.mutable_data_ptr<acc_t>();
  acc_t* vp = var_raw.mutable_data_ptr<acc_t>();
  acc_t* op = var.mutable_data_ptr<acc_t>();
  const int64_t ostride = var.numel() / std::max<int64_t>(rows, 1);
  acc_t* sp = lse.mutable_data_ptr<acc_t>();
  const acc_t inv_t = acc_t(1.0 / temperature);
  const int mode = static_cast<int>(var_mode);
  const acc_t clip_acc = acc_t(clip);
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> e(H * W);
    std::vector<float> widened(std::is_same_v<scalar_t, float> ? 0 : H * W);
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t* row = lp + r * H * W;
      if constexpr (kFloatPath<scalar_t>) {
        const float* rf;
        if constexpr (std::is_same_v<scalar_t, float>) {
          rf = row;
        } else {
          for (int64_t i = 0; i < H * W; ++i) widened[i] = static_cast<float>(row[i]);
          rf = widened.data();
        }
        moments_row_f32(rf, H, W, inv_t, xs.data(), ys.data(), e.data(), mp + 2 * r, vp + 4 * r, sp + r);
      } else {
        moments_row_passes<acc_t, false>(row, H, W, inv_t, xs.data(), ys.data(), e.data(), mp + 2 * r, vp + 4 * r,
                                         sp + r);
      }
      if (mode != kVarFixed) moments_var_out<acc_t>(vp + 4 * r, mode, clip_acc, op + ostride * r);
    }
  });
}

template <typename scalar_t>
void backward_rows(const at::Tensor& grad_mean, const at::Tensor& grad_var, const at::Tensor& logits,
                   const at::Tensor& mean, const at::Tensor& var, const at::Tensor& lse, at::Tensor& grad,
                   double temperature, int64_t var_mode, double clip) {
  const int64_t rows = logits.size(0), H = logits.size(1), W = logits.size(2);
  using acc_t = at::opmath_type<scalar_t>;
  TORCH_CHECK(mean.scalar_type() == c10::CppTypeToScalarType<acc_t>::value,
              "heatmap_moments_backward: statistics must be ", c10::CppTypeToScalarType<acc_t>::value);
  std::vector<acc_t> xs(W), ys(H);
  for (int64_t j = 0; j < W; ++j) xs[j] = grid_coord<acc_t>(j, W);
  for (int64_t i = 0; i < H; ++i) ys[i] = grid_coord<acc_t>(i, H);
  const scalar_t* lp = logits.const_data_ptr<scalar_t>();
  scalar_t* gp = grad.mutable_data_ptr<scalar_t>();
  const acc_t* mp = mean.const_data_ptr<acc_t>();
  const acc_t* vp = var.const_data_ptr<acc_t>();
  const acc_t* sp = lse.const_data_ptr<acc_t>();
  const acc_t* gmp = grad_mean.const_data_ptr<acc_t>();
  const acc_t* gvp = grad_var.const_data_ptr<acc_t>();
  const acc_t inv_t = acc_t(1.0 / temperature);
  const int mode = static_cast<int>(var_mode);
  const acc_t clip_acc = acc_t(clip);
  const int64_t gstride = grad_var.numel() / std::max<int64_t>(rows, 1);
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    const bool widen = !std::is_same_v<scalar_t, float>;
    std::vector<float> lw(widen ? H * W : 0), gw(widen ? H * W : 0);
    for (int64_t r = begin; r < end; ++r) {
      acc_t g_raw[4];
      moments_var_grad<acc_t>(vp + 4 * r, mode, clip_acc, gvp + gstride * r, g_raw);
      const auto k = MomentGradRow<acc_t>::make(mp + 2 * r, vp + 4 * r, sp[r], gmp + 2 * r, g_raw, H, W);
      const scalar_t* l = lp + r * H * W;
      scalar_t* g = gp + r * H * W;
      if constexpr (kFloatPath<scalar_t>) {
        if constexpr (std::is_same_v<scalar_t, float>) {
          moments_grad_row_f32(l, g, H, W, inv_t, xs.data(), ys.data(), k.cx, k.cy, k.ax, k.ay, k.qxx, k.qxy, k.qyy,
                               k.fbar, k.lse);
        } else {
          for (int64_t i = 0; i < H * W; ++i) lw[i] = static_cast<float>(l[i]);
          moments_grad_row_f32(lw.data(), gw.data(), H, W, inv_t, xs.data(), ys.data(), k.cx, k.cy, k.ax, k.ay, k.qxx,
                               k.qxy, k.qyy, k.fbar, k.lse);
          for (int64_t i = 0; i < H * W; ++i) g[i] = static_cast<scalar_t>(gw[i]);
        }
      } else {
        for (int64_t i = 0; i < H; ++i) {
          for (int64_t j = 0; j < W; ++j) {
            g[i * W + j] = static_cast<scalar_t>(k.grad(acc_t(l[i * W + j]) * inv_t, xs[j], ys[i]) * inv_t);
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> heatmap_moments_forward_cpu(
    const at::Tensor& logits_in, double temperature, int64_t var_mode, double clip) {
  check_heatmap_moments_forward(logits_in, temperature, var_mode, clip);
  TORCH_CHECK(logits_in.device().is_cpu(), "heatmap_moments_forward_cpu: logits must be on the CPU");
  const at::Tensor logits = logits_in.contiguous();
  const int64_t rows = logits.size(0);
  const auto acc_type = at::toOpMathType(logits.scalar_type());
  auto opts = logits.options().dtype(acc_type);
  const int64_t v = heatmap_moments_var_size(var_mode);
  at::Tensor mean = at::empty({rows, 2}, opts);
  at::Tensor var = var_mode == kVarFixed ? at::zeros({rows, v, v}, opts) : at::empty({rows, v, v}, opts);
  at::Tensor var_raw = at::empty({rows, 2, 2}, opts);
  at::Tensor lse = at::empty({rows}, opts);
  if (rows == 0) return {mean, var, var_raw, lse};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "heatmap_moments_forward_cpu", [&] {
    forward_rows<scalar_t>(logits, mean, var, var_raw, lse, temperature, var_mode, clip);
  });
  return {mean, var, var_raw, lse};
}

at::Tensor heatmap_moments_backward_cpu(const at::Tensor& grad_mean_in, const at::Tensor& grad_var_in,
                                        const at::Tensor& logits_in, const at::Tensor& mean_in,
                                        const at::Tensor& var_in, const at::Tensor& lse_in,
                                        double temperature, int64_t var_mode, double clip) {
  check_heatmap_moments_backward(grad_mean_in, grad_var_in, logits_in, mean_in, var_in, lse_in, temperature, var_mode,
                                 clip);
  const at::Tensor logits = logits_in.contiguous();
  const at::Tensor grad_mean = grad_mean_in.contiguous(), grad_var = grad_var_in.contiguous();
  const at::Tensor mean = mean_in.contiguous(), var = var_in.contiguous(), lse = lse_in.contiguous();
  const int64_t rows = logits.size(0);
  at::Tensor grad = at::empty_like(logits);
  if (rows == 0) return grad;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "heatmap_moments_backward_cpu", [&] {
    backward_rows<scalar_t>(grad_mean, grad_var, logits, mean, var, lse, grad, temperature, var_mode, clip);
  });
  return grad;
}

}  // namespace
}  // namespace fastmotion

FASTMOTION_REGISTER_CPU(heatmap_moments, fastmotion::heatmap_moments_forward_cpu,
                        fastmotion::heatmap_moments_backward_cpu)
