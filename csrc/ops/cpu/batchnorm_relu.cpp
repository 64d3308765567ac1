// CPU kernels of the training-mode BatchNorm + ReLU.
//
// Forward: one pass for the batch statistics (sums of x - pivot and its square, the pivot being
// the channel's first value, so the variance does not cancel catastrophically), one pass writing
// max(0, shift + x * scale). ATen takes two passes for the statistics, one for the output and a
// fourth for the ReLU.
//
// Backward: the gradient of relu(batch_norm(x)) in two passes over (grad, x), where the composite (recompute the BN output, ReLU backward, ATen's
// BatchNorm backward: its reduction and its output pass) streams ten tensors through memory.
//
//   scale = invstd * weight, shift = bias - mean * scale   (per channel)
//   gm = shift + x * scale > 0 ? grad : 0                  (the ReLU mask, recomputed from x)
//   pass 1: sum_g = sum gm, sum_gx = sum gm * (x - mean)    (per channel, over N, H, W)
//   pass 2: grad_x = scale * (gm - sum_g / M - (x - mean) * invstd^2 * sum_gx / M)
//   grad_weight = invstd * sum_gx, grad_bias = sum_g
//
// Pass-1 sums are taken per (sample, channel) plane (NCHW) or per fixed chunk of rows
// (channels_last) in the input dtype, then added in double in a fixed order: the result does not
// depend on the number of threads. Both passes are unit-stride loops GCC vectorizes (compiled for
// AVX2+FMA and for baseline x86-64, picked at run time; see vec_math.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <cmath>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "ops/batchnorm_relu.h"
#include "ops/cpu/vec_math.h"
#include "ops/register.h"

namespace fastmotion {
namespace cpu {

namespace {

constexpr int64_t kRowChunks = 64;  // channels_last pass 1: fixed chunking (deterministic sums)

template <typename T>
FASTMOTION_INLINE void moments_plane(const T* __restrict x, int64_t n, T pivot, double* out) {
  T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t i = 0; i < n; ++i) {
    const T d = x[i] - pivot;
    s1 += d;
    s2 += d * d;
  }
  out[0] = s1;
  out[1] = s2;
}

// The ReLU as a select that keeps NaN (as torch.relu does).
template <typename T>
FASTMOTION_INLINE T relu_of(T y) {
  return y < T(0) ? T(0) : y;
}

template <typename T>
FASTMOTION_INLINE void apply_plane(const T* __restrict x, T* __restrict out, int64_t n, T scale, T shift) {
  for (int64_t i = 0; i < n; ++i) out[i] = relu_of<T>(shift + x[i] * scale);
}

template <typename T>
FASTMOTION_INLINE void moments_rows(const T* __restrict x, int64_t rows, int64_t C, const T* __restrict pivot,
                                    T* __restrict s1, T* __restrict s2) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const T d = xr[c] - pivot[c];
      s1[c] += d;
      s2[c] += d * d;
    }
  }
}

template <typename T>
FASTMOTION_INLINE void apply_rows(const T* __restrict x, T* __restrict out, int64_t rows, int64_t C,
                                  const T* __restrict scale, const T* __restrict shift) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * C;
    T* o = out + r * C;
    for (int64_t c = 0; c < C; ++c) o[c] = relu_of<T>(shift[c] + xr[c] * scale[c]);
  }
}

template <typename T>
FASTMOTION_INLINE void reduce_plane(const T* __restrict g, const T* __restrict x, int64_t n, T scale, T shift, T mean,
                                    double* out) {
  T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t i = 0; i < n; ++i) {
    const T xv = x[i];
    const T gm = shift + xv * scale > T(0) ? g[i] : T(0);
    s1 += gm;
    s2 += gm * (xv - mean);
  }
  out[0] = s1;
  out[1] = s2;
}

template <typename T>
FASTMOTION_INLINE void write_plane(const T* __restrict g, const T* __restrict x, T* __restrict out, int64_t n, T scale,
                                   T shift, T mean, T a, T b) {
  for (int64_t i = 0; i < n; ++i) {
    const T xv = x[i];
    const T gm = shift + xv * scale > T(0) ? g[i] : T(0);
    out[i] = scale * (gm - a - (xv - mean) * b);
  }
}

// rows x C, channels contiguous; s1, s2: (C) running sums of this chunk.
template <typename T>
FASTMOTION_INLINE void reduce_rows(const T* __restrict g, const T* __restrict x, int64_t rows, int64_t C,
                                   const T* __restrict scale, const T* __restrict shift, const T* __restrict mean,
                                   T* __restrict s1, T* __restrict s2) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = g + r * C;
    const T* xr = x + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const T xv = xr[c];
      const T gm = shift[c] + xv * scale[c] > T(0) ? gr[c] : T(0);
      s1[c] += gm;
      s2[c] += gm * (xv - mean[c]);
    }
  }
}

template <typename T>
FASTMOTION_INLINE void write_rows(const T* __restrict g, const T* __restrict x, T* __restrict out, int64_t rows,
                                  int64_t C, const T* __restrict scale, const T* __restrict shift,
                                  const T* __restrict mean, const T* __restrict a, const T* __restrict b) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* gr = g + r * C;
    const T* xr = x + r * C;
    T* o = out + r * C;
    for (int64_t c = 0; c < C; ++c) {
      const T xv = xr[c];
      const T gm = shift[c] + xv * scale[c] > T(0) ? gr[c] : T(0);
      o[c] = scale[c] * (gm - a[c] - (xv - mean[c]) * b[c]);
    }
  }
}

// Per-channel pairs of sums over (N, H, W), added in double in a fixed order (the result does
// not depend on the thread count). NCHW: `plane(t, out)` writes the two sums of plane
// t = n * C + c to out[0], out[1]. channels_last: `rows(r0, count, s1, s2)` adds rows
// [r0, r0 + count) into a chunk's (C) sums s1, s2 (zero-initialised, in T).
template <typename T, typename PlaneFn, typename RowsFn>
void channel_pair_sums(int64_t N, int64_t C, int64_t HW, bool channels_last, const PlaneFn& plane, const RowsFn& rows,
                       std::vector<double>& s1, std::vector<double>& s2) {
  const int64_t M = N * HW;
  if (M == 0) return;
  if (!channels_last) {
    std::vector<double> part(N * C * 2);
    parallel_vectorized(N * C, HW, [&](int64_t begin, int64_t end) FASTMOTION_ALWAYS_INLINE {
      for (int64_t t = begin; t < end; ++t) plane(t, part.data() + 2 * t);
    });
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t c = 0; c < C; ++c) {
        s1[c] += part[2 * (n * C + c)];
        s2[c] += part[2 * (n * C + c) + 1];
      }
    }
    return;
  }
  const int64_t chunks = std::min(M, kRowChunks);
  const int64_t per = (M + chunks - 1) / chunks;
  std::vector<T> part(chunks * 2 * C, T(0));
  parallel_vectorized(chunks, per * C, [&](int64_t begin, int64_t end) FASTMOTION_ALWAYS_INLINE {
    for (int64_t k = begin; k < end; ++k) {
      const int64_t r0 = std::min(M, k * per), r1 = std::min(M, r0 + per);
      T* sp = part.data() + k * 2 * C;
      rows(r0, r1 - r0, sp, sp + C);
    }
  });
  for (int64_t k = 0; k < chunks; ++k) {
    for (int64_t c = 0; c < C; ++c) {
      s1[c] += part[k * 2 * C + c];
      s2[c] += part[k * 2 * C + C + c];
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> batchnorm_relu_forward_cpu(
    const at::Tensor& x, const c10::optional<at::Tensor>& weight, const c10::optional<at::Tensor>& bias, double eps) {
  check_batchnorm_relu_forward(x, weight, bias);
  TORCH_CHECK(x.device().is_cpu(), "batchnorm_relu_forward_cpu: x must be on the CPU");
  const bool channels_last = !x.is_contiguous();
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const int64_t M = N * HW;
  at::Tensor out = at::empty_like(x);  // keeps x's layout
  at::Tensor mean = at::empty({C}, x.options()), invstd = at::empty({C}, x.options()), var = at::empty({C}, x.options());
  if (C == 0) return {out, mean, invstd, var};

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batchnorm_relu_forward_cpu", [&] {
    using T = scalar_t;
    const T* xp = x.const_data_ptr<T>();
    const T* wp = weight.has_value() ? weight->const_data_ptr<T>() : nullptr;
    const T* bp = bias.has_value() ? bias->const_data_ptr<T>() : nullptr;
    std::vector<T> pivot(C), scale(C), shift(C);
    for (int64_t c = 0; c < C; ++c) pivot[c] = channels_last ? xp[c] : xp[c * HW];

    // Pass 1: sums of (x - pivot) and (x - pivot)^2 per channel.
    std::vector<double> s1(C, 0.0), s2(C, 0.0);
    channel_pair_sums<T>(
        N, C, HW, channels_last,
        [&](int64_t t, double* out) FASTMOTION_ALWAYS_INLINE { moments_plane<T>(xp + t * HW, HW, pivot[t % C], out); },
        [&](int64_t r0, int64_t count, T* a1, T* a2) FASTMOTION_ALWAYS_INLINE {
          moments_rows<T>(xp + r0 * C, count, C, pivot.data(), a1, a2);
        },
        s1, s2);

    T* mp = mean.mutable_data_ptr<T>();
    T* ip = invstd.mutable_data_ptr<T>();
    T* vp = var.mutable_data_ptr<T>();
    for (int64_t c = 0; c < C; ++c) {
      const double d = s1[c] / double(M);
      const double v = std::max(s2[c] / double(M) - d * d, 0.0);
      mp[c] = static_cast<T>(double(pivot[c]) + d);
      vp[c] = static_cast<T>(v);
      ip[c] = static_cast<T>(1.0 / std::sqrt(v + eps));
      scale[c] = wp ? ip[c] * wp[c] : ip[c];  // as the backward recomputes them (same rounding)
      shift[c] = (bp ? bp[c] : T(0)) - mp[c] * scale[c];
    }

    // Pass 2: the output.
    T* op = out.mutable_data_ptr<T>();
    if (!channels_last) {
      parallel_vectorized(N * C, HW, [&](int64_t begin, int64_t end) FASTMOTION_ALWAYS_INLINE {
        for (int64_t t = begin; t < end; ++t) {
          const int64_t c = t % C;
          apply_plane<T>(xp + t * HW, op + t * HW, HW, scale[c], shift[c]);
        }
      });
    } else {
      parallel_vectorized(M, C, [&](int64_t begin, int64_t end) FASTMOTION_ALWAYS_INLINE {
        apply_rows<T>(xp + begin * C, op + begin * C, end - begin, C, scale.data(), shift.data());
      });
    }
  });
  return {out, mean, invstd, var};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> batchnorm_relu_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                                           const c10::optional<at::Tensor>& weight,
                                                                           const c10::optional<at::Tensor>& bias,
                                                                           const at::Tensor& mean,
                                                                           const at::Tensor& invstd) {
  check_batchnorm_relu_backward(grad, x, weight, bias, mean, invstd);
  TORCH_CHECK(x.device().is_cpu(), "batchnorm_relu_backward_cpu: x must be on the CPU");
  const bool channels_last = !x.is_contiguous();
  // NCHW: grad's (H, W) planes are contiguous, at any sample / channel strides.
  const int64_t g_sn = channels_last ? 0 : grad.stride(0), g_sc = channels_last ? 0 : grad.stride(1);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const int64_t M = N * HW;
  at::Tensor grad_x = at::empty_like(x);  // keeps x's layout
  at::Tensor grad_weight = at::empty({C}, x.options());
  at::Tensor grad_bias = at::empty({C}, x.options());
  if (C == 0) return {grad_x, grad_weight, grad_bias};

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batchnorm_relu_backward_cpu", [&] {
    using T = scalar_t;
    const T* gp = grad.const_data_ptr<T>();
    const T* xp = x.const_data_ptr<T>();
    const T* mp = mean.const_data_ptr<T>();
    const T* ip = invstd.const_data_ptr<T>();
    const T* wp = weight.has_value() ? weight->const_data_ptr<T>() : nullptr;
    const T* bp = bias.has_value() ? bias->const_data_ptr<T>() : nullptr;
    std::vector<T> scale(C), shift(C), a(C), b(C);
    for (int64_t c = 0; c < C; ++c) {
      scale[c] = wp ? ip[c] * wp[c] : ip[c];
      shift[c] = (bp ? bp[c] : T(0)) - mp[c] * scale[c];
    }

    // Pass 1: per-channel sums of gm and gm * (x - mean).
    std::vector<double> sum_g(C, 0.0), sum_gx(C, 0.0);
    channel_pair_sums<T>(
        N, C, HW, channels_last,
        [&](int64_t t, double* out) FASTMOTION_ALWAYS_INLINE {
          const int64_t c = t % C;
          reduce_plane<T>(gp + (t / C) * g_sn + c * g_sc, xp + t * HW, HW, scale[c], shift[c], mp[c], out);
        },
        [&](int64_t r0, int64_t count, T* a1, T* a2) FASTMOTION_ALWAYS_INLINE {
          reduce_rows<T>(gp + r0 * C, xp + r0 * C, count, C, scale.data(), shift.data(), mp, a1, a2);
        },
        sum_g, sum_gx);

    T* gw = grad_weight.mutable_data_ptr<T>();
    T* gb = grad_bias.mutable_data_ptr<T>();
    for (int64_t c = 0; c < C; ++c) {
      const double inv = static_cast<double>(ip[c]);
      gw[c] = static_cast<T>(inv * sum_gx[c]);
      gb[c] = static_cast<T>(sum_g[c]);
      a[c] = M > 0 ? static_cast<T>(sum_g[c] / double(M)) : T(0);
      b[c] = M > 0 ? static_cast<T>(inv * inv * sum_gx[c] / double(M)) : T(0);
    }
    if (M == 0) return;

    // Pass 2: grad_x.
    T* op = grad_x.mutable_data_ptr<T>();
    if (!channels_last) {
      parallel_vectorized(N * C, HW, [&](int64_t begin, int64_t end) FASTMOTION_ALWAYS_INLINE {
        for (int64_t t = begin; t < end; ++t) {
          const int64_t c = t % C;
          const T* g = gp + (t / C) * g_sn + c * g_sc;
          write_plane<T>(g, xp + t * HW, op + t * HW, HW, scale[c], shift[c], mp[c], a[c], b[c]);
        }
      });
    } else {
      parallel_vectorized(M, C, [&](int64_t begin, int64_t end) FASTMOTION_ALWAYS_INLINE {
        write_rows<T>(gp + begin * C, xp + begin * C, op + begin * C, end - begin, C, scale.data(), shift.data(), mp,
                      a.data(), b.data());
      });
    }
  });
  return {grad_x, grad_weight, grad_bias};
}

}  // namespace cpu
}  // namespace fastmotion

FASTMOTION_REGISTER_CPU(batchnorm_relu, fastmotion::cpu::batchnorm_relu_forward_cpu,
                        fastmotion::cpu::batchnorm_relu_backward_cpu)
