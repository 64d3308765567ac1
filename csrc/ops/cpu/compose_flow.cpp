// CPU kernels of compose_flow: grid = identity + sum_k softmax_k(mask_logits) shift_k (+ correction).
//
// A pixel's K+1 logits sit HW apart, so the kernels work on pieces of up to kPiece pixels of one
// row and loop over k outside the pixel loop: every inner loop is a unit-stride loop over the
// piece that GCC vectorizes (the exp is a polynomial, see vec_math.h; the hot functions are
// compiled for AVX2+FMA and baseline x86-64 and picked at run time).
// Forward: read the logits once (and the correction), write the grid once; nothing else.
// Backward: recompute the softmax from the logits; write grad_logits; the kp_shift gradient
// sum_pixels p_k * grad is accumulated per task into per-lane sums, then reduced over tasks in a
// fixed order (deterministic, no atomics).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
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

constexpr int64_t kPiece = 64;

// m[p] = max over k of the logits l[k * hw + p] of np pixels (a NaN in m stays: it propagates
// through exp).
template <typename scalar_t, typename acc_t>
FASTMOTION_INLINE void channel_max(const scalar_t* l, int64_t hw, int64_t K1, int64_t np, acc_t* m) {
  for (int64_t p = 0; p < np; ++p) m[p] = static_cast<acc_t>(l[p]);
  for (int64_t k = 1; k < K1; ++k) {
    const scalar_t* lk = l + k * hw;
    for (int64_t p = 0; p < np; ++p) {
      const acc_t v = static_cast<acc_t>(lk[p]);
      m[p] = v > m[p] ? v : m[p];
    }
  }
}

// Rows [row0, row1) of one sample. logits: (K1, H, W); shift: (K1, 2); corr: (2, H, W) or null;
// out: (H, W, 2).
template <typename scalar_t, typename acc_t>
FASTMOTION_INLINE void compose_forward_rows(const scalar_t* logits, const acc_t* shift, const scalar_t* corr, int64_t K1,
                                 int64_t H, int64_t W, int64_t row0, int64_t row1, const acc_t* xs,
                                 const acc_t* ys, scalar_t* out) {
  const int64_t hw = H * W;
  acc_t m[kPiece], s[kPiece], fx[kPiece], fy[kPiece];
  for (int64_t i = row0; i < row1; ++i) {
    for (int64_t j0 = 0; j0 < W; j0 += kPiece) {
      const int64_t np = std::min(kPiece, W - j0);
      const int64_t p0 = i * W + j0;
      const scalar_t* l = logits + p0;
      channel_max(l, hw, K1, np, m);
      for (int64_t p = 0; p < np; ++p) s[p] = fx[p] = fy[p] = acc_t(0);
      for (int64_t k = 0; k < K1; ++k) {
        const scalar_t* lk = l + k * hw;
        const acc_t sx = shift[2 * k], sy = shift[2 * k + 1];
        for (int64_t p = 0; p < np; ++p) {
          const acc_t e = exp_poly(static_cast<acc_t>(lk[p]) - m[p]);
          s[p] += e;
          fx[p] += e * sx;
          fy[p] += e * sy;
        }
      }
      scalar_t* o = out + 2 * p0;
      const acc_t y = ys[i];
      if (corr != nullptr) {
        const scalar_t* cx = corr + p0;
        const scalar_t* cy = corr + hw + p0;
        for (int64_t p = 0; p < np; ++p) {
          const acc_t inv = acc_t(1) / s[p];
          o[2 * p] = static_cast<scalar_t>((fx[p] * inv + static_cast<acc_t>(cx[p])) + xs[j0 + p]);
          o[2 * p + 1] = static_cast<scalar_t>((fy[p] * inv + static_cast<acc_t>(cy[p])) + y);
        }
      } else {
        for (int64_t p = 0; p < np; ++p) {
          const acc_t inv = acc_t(1) / s[p];
          o[2 * p] = static_cast<scalar_t>(fx[p] * inv + xs[j0 + p]);
          o[2 * p + 1] = static_cast<scalar_t>(fy[p] * inv + y);
        }
      }
    }
  }
}

// Backward over rows [row0, row1) of one sample: writes grad_logits (K1, H, W) and adds
// sum_pixels p_k * (gx, gy) into lanes[(2k + {0,1}) * kPiece + p] (per-lane partial sums).
// e: scratch of K1 * kPiece.
template <typename scalar_t, typename acc_t>
FASTMOTION_INLINE void compose_backward_rows(const scalar_t* logits, const acc_t* shift, const scalar_t* grad_grid, int64_t K1,
                                  int64_t H, int64_t W, int64_t row0, int64_t row1, scalar_t* grad_logits,
                                  acc_t* e, acc_t* lanes) {
  const int64_t hw = H * W;
  acc_t m[kPiece], s[kPiece], gx[kPiece], gy[kPiece], t[kPiece];
  for (int64_t i = row0; i < row1; ++i) {
    for (int64_t j0 = 0; j0 < W; j0 += kPiece) {
      const int64_t np = std::min(kPiece, W - j0);
      const int64_t p0 = i * W + j0;
      const scalar_t* l = logits + p0;
      channel_max(l, hw, K1, np, m);
      for (int64_t p = 0; p < np; ++p) s[p] = acc_t(0);
      for (int64_t k = 0; k < K1; ++k) {
        const scalar_t* lk = l + k * hw;
        acc_t* ek = e + k * kPiece;
        for (int64_t p = 0; p < np; ++p) {
          const acc_t v = exp_poly(static_cast<acc_t>(lk[p]) - m[p]);
          ek[p] = v;
          s[p] += v;
        }
      }
      const scalar_t* g = grad_grid + 2 * p0;
      for (int64_t p = 0; p < np; ++p) {
        gx[p] = static_cast<acc_t>(g[2 * p]);
        gy[p] = static_cast<acc_t>(g[2 * p + 1]);
        s[p] = acc_t(1) / s[p];
        t[p] = acc_t(0);
      }
      // t = sum_k p_k (g . shift_k): the softmax backward's mean term
      for (int64_t k = 0; k < K1; ++k) {
        acc_t* ek = e + k * kPiece;
        const acc_t sx = shift[2 * k], sy = shift[2 * k + 1];
        for (int64_t p = 0; p < np; ++p) {
          const acc_t pk = ek[p] * s[p];
          ek[p] = pk;
          t[p] += pk * (gx[p] * sx + gy[p] * sy);
        }
      }
      for (int64_t k = 0; k < K1; ++k) {
        const acc_t* ek = e + k * kPiece;
        const acc_t sx = shift[2 * k], sy = shift[2 * k + 1];
        scalar_t* gl = grad_logits + k * hw + p0;
        acc_t* lx = lanes + (2 * k) * kPiece;
        acc_t* ly = lx + kPiece;
        for (int64_t p = 0; p < np; ++p) {
          const acc_t pk = ek[p];
          gl[p] = static_cast<scalar_t>(pk * ((gx[p] * sx + gy[p] * sy) - t[p]));
          lx[p] += pk * gx[p];
          ly[p] += pk * gy[p];
        }
      }
    }
  }
}

namespace {

// Rows per task: about 2048 pixels, so that a batch-1 256x256 input still splits into many tasks.
int64_t rows_per_task(int64_t H, int64_t W) {
  return std::max<int64_t>(1, std::min<int64_t>(H, 2048 / std::max<int64_t>(W, 1)));
}

template <typename acc_t>
void axis_coords(std::vector<acc_t>& v, int64_t n) {
  v.resize(n);
  for (int64_t i = 0; i < n; ++i) v[i] = grid_coord<acc_t>(i, n);
}

at::Tensor compose_flow_forward_cpu(const at::Tensor& mask_logits_in, const at::Tensor& kp_shift_in,
                                    const c10::optional<at::Tensor>& correction_in) {
  check_compose_flow_forward(mask_logits_in, kp_shift_in, correction_in);
  TORCH_CHECK(mask_logits_in.device().is_cpu(), "compose_flow (cpu): mask_logits must be a CPU tensor");
  const ComposeFlowInputs in = compose_flow_inputs(mask_logits_in, kp_shift_in, correction_in);
  const at::Tensor &logits = in.logits, &shift = in.shift, &corr = in.corr;
  const bool has_corr = corr.defined();
  const int64_t N = logits.size(0), K1 = logits.size(1), H = logits.size(2), W = logits.size(3);
  at::Tensor out = at::empty({N, H, W, 2}, logits.options());
  if (N == 0) return out;
  const int64_t rpt = rows_per_task(H, W);
  const int64_t tasks_per_n = (H + rpt - 1) / rpt;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "compose_flow_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    std::vector<acc_t> xs, ys;
    axis_coords(xs, W);
    axis_coords(ys, H);
    const scalar_t* lp = logits.const_data_ptr<scalar_t>();
    const acc_t* sp = shift.const_data_ptr<acc_t>();
    const scalar_t* cp = has_corr ? corr.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, N * tasks_per_n, grain_for(rpt * W * K1), [&](int64_t begin, int64_t end) {
      run_vectorized([&]() FASTMOTION_ALWAYS_INLINE {
        for (int64_t task = begin; task < end; ++task) {
          const int64_t n = task / tasks_per_n, r0 = (task % tasks_per_n) * rpt;
          compose_forward_rows<scalar_t, acc_t>(lp + n * K1 * H * W, sp + n * K1 * 2,
                                                cp ? cp + n * 2 * H * W : nullptr, K1, H, W, r0,
                                                std::min(H, r0 + rpt), xs.data(), ys.data(), op + n * H * W * 2);
        }
      });
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> compose_flow_backward_cpu(const at::Tensor& grad_grid_in,
                                                             const at::Tensor& mask_logits_in,
                                                             const at::Tensor& kp_shift_in) {
  check_compose_flow_backward(grad_grid_in, mask_logits_in, kp_shift_in);
  TORCH_CHECK(mask_logits_in.device().is_cpu(), "compose_flow_backward (cpu): mask_logits must be a CPU tensor");
  const at::Tensor logits = mask_logits_in.contiguous();
  const at::Tensor shift = kp_shift_in.contiguous();
  const at::Tensor grad_grid = grad_grid_in.contiguous();
  const int64_t N = logits.size(0), K1 = logits.size(1), H = logits.size(2), W = logits.size(3);
  at::Tensor grad_logits = at::empty_like(logits);
  at::Tensor grad_shift = at::empty({N, K1, 2}, shift.options());
  if (N == 0) return {grad_logits, grad_shift};
  const int64_t rpt = rows_per_task(H, W);
  const int64_t tasks_per_n = (H + rpt - 1) / rpt;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(), "compose_flow_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* lp = logits.const_data_ptr<scalar_t>();
    const acc_t* sp = shift.const_data_ptr<acc_t>();
    const scalar_t* gp = grad_grid.const_data_ptr<scalar_t>();
    scalar_t* glp = grad_logits.mutable_data_ptr<scalar_t>();
    // partial[task][k][2]: each task's share of the kp_shift gradient
    std::vector<acc_t> partial(N * tasks_per_n * K1 * 2);
    at::parallel_for(0, N * tasks_per_n, grain_for(rpt * W * K1), [&](int64_t begin, int64_t end) {
      run_vectorized([&]() FASTMOTION_ALWAYS_INLINE {
        std::vector<acc_t> e(K1 * kPiece), lanes(2 * K1 * kPiece);
        for (int64_t task = begin; task < end; ++task) {
          const int64_t n = task / tasks_per_n, r0 = (task % tasks_per_n) * rpt;
          std::fill(lanes.begin(), lanes.end(), acc_t(0));
          compose_backward_rows<scalar_t, acc_t>(lp + n * K1 * H * W, sp + n * K1 * 2, gp + n * H * W * 2, K1, H, W,
                                                 r0, std::min(H, r0 + rpt), glp + n * K1 * H * W, e.data(),
                                                 lanes.data());
          acc_t* part = partial.data() + task * K1 * 2;
          for (int64_t q = 0; q < 2 * K1; ++q) {
            acc_t sum = 0;
            for (int64_t p = 0; p < kPiece; ++p) sum += lanes[q * kPiece + p];
            part[q] = sum;
          }
        }
      });
    });
    sum_task_partials(partial.data(), N, tasks_per_n, K1 * 2, grad_shift.mutable_data_ptr<acc_t>());
  });
  return {grad_logits, grad_shift};
}

}  // namespace
}  // namespace cpu
}  // namespace fastmotion

FASTMOTION_REGISTER_CPU(compose_flow, fastmotion::cpu::compose_flow_forward_cpu,
                        fastmotion::cpu::compose_flow_backward_cpu)
