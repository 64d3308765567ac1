// CUDA kernels of the heatmap-moments op (see csrc/include/fastmotion/heatmap_moments.h).
//
// Forward: one block per row. Each thread folds its strided (coalesced) elements into a
// MomentState (online softmax with running first and centred second moments), then the
// block merges the states with Chan's update: warp shuffles, then one warp over the warps'
// states. One read of the logits, seven numbers written per row.
// Backward: a 2-D grid (rows, chunks of the row); every thread rebuilds the row's constants
// from the saved statistics and writes p_i (f(g_i) - fbar) / T for its elements.
#include "ops/cuda/heatmap_moments_kernel.h"

#include "fastmotion/heatmap_moments.h"

namespace fastmotion {
namespace {

constexpr int kForwardThreads = 256;
constexpr int kBackwardThreads = 256;
constexpr int kBackwardItems = 4;

template <typename acc_t>
__device__ __forceinline__ MomentState<acc_t> shfl_down_state(const MomentState<acc_t>& s, int delta) {
  MomentState<acc_t> o;
  o.max = __shfl_down_sync(0xffffffffu, s.max, delta);
  o.sum = __shfl_down_sync(0xffffffffu, s.sum, delta);
  o.mx = __shfl_down_sync(0xffffffffu, s.mx, delta);
  o.my = __shfl_down_sync(0xffffffffu, s.my, delta);
  o.cxx = __shfl_down_sync(0xffffffffu, s.cxx, delta);
  o.cxy = __shfl_down_sync(0xffffffffu, s.cxy, delta);
  o.cyy = __shfl_down_sync(0xffffffffu, s.cyy, delta);
  return o;
}

template <typename acc_t>
__device__ __forceinline__ void warp_merge(MomentState<acc_t>& s) {
  for (int delta = 16; delta > 0; delta >>= 1) s.merge(shfl_down_state(s, delta));
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kForwardThreads)
    moments_forward_kernel(const scalar_t* __restrict__ logits, int64_t H, int64_t W, acc_t inv_t, int var_mode,
                           acc_t clip, acc_t* __restrict__ mean, acc_t* __restrict__ var,
                           acc_t* __restrict__ var_raw, acc_t* __restrict__ lse) {
  const int64_t row = blockIdx.x;
  const int64_t hw = H * W;
  const scalar_t* l = logits + row * hw;

  auto state = MomentState<acc_t>::empty();
  for (int64_t i = threadIdx.x; i < hw; i += kForwardThreads) {
    const int64_t r = i / W, c = i - r * W;
    state.push(to_acc(l[i]) * inv_t, grid_coord<acc_t>(c, W), grid_coord<acc_t>(r, H));
  }
  warp_merge(state);

  __shared__ MomentState<acc_t> warp_states[kForwardThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_states[warp] = state;
  __syncthreads();
  if (warp == 0) {
    state = lane < kForwardThreads / 32 ? warp_states[lane] : MomentState<acc_t>::empty();
    warp_merge(state);
    if (lane == 0) {
      moments_finish<acc_t>(state.sum, state.max, state.mx, state.my, state.cxx, state.cxy, state.cyy, H, W,
                            mean + 2 * row, var_raw + 4 * row, lse + row);
      if (var_mode != kVarFixed) {
        moments_var_out<acc_t>(var_raw + 4 * row, var_mode, clip, var + (var_mode == kVarSingle ? 1 : 4) * row);
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBackwardThreads)
    moments_backward_kernel(const scalar_t* __restrict__ logits, const acc_t* __restrict__ mean,
                            const acc_t* __restrict__ var_raw, const acc_t* __restrict__ lse,
                            const acc_t* __restrict__ grad_mean, const acc_t* __restrict__ grad_var,
                            int64_t H, int64_t W, acc_t inv_t, int var_mode, acc_t clip,
                            scalar_t* __restrict__ grad_logits) {
  const int64_t row = blockIdx.x;
  const int64_t hw = H * W;
  acc_t g_raw[4];
  moments_var_grad<acc_t>(var_raw + 4 * row, var_mode, clip, grad_var + (var_mode == kVarSingle ? 1 : 4) * row,
                          g_raw);
  const auto k = MomentGradRow<acc_t>::make(mean + 2 * row, var_raw + 4 * row, lse[row], grad_mean + 2 * row,
                                            g_raw, H, W);
  const scalar_t* l = logits + row * hw;
  scalar_t* g = grad_logits + row * hw;
  const int64_t base = static_cast<int64_t>(blockIdx.y) * kBackwardThreads * kBackwardItems + threadIdx.x;
#pragma unroll
  for (int it = 0; it < kBackwardItems; ++it) {
    const int64_t i = base + static_cast<int64_t>(it) * kBackwardThreads;
    if (i < hw) {
      const int64_t r = i / W, c = i - r * W;
      const acc_t v = k.grad(to_acc(l[i]) * inv_t, grid_coord<acc_t>(c, W), grid_coord<acc_t>(r, H));
      g[i] = from_acc<scalar_t>(v * inv_t);
    }
  }
}

}  // namespace

template <typename scalar_t>
cudaError_t heatmap_moments_forward_cuda(const scalar_t* logits, int64_t rows, int64_t H, int64_t W,
                                         double temperature, int var_mode, double clip,
                                         acc_type_t<scalar_t>* mean, acc_type_t<scalar_t>* var,
                                         acc_type_t<scalar_t>* var_raw, acc_type_t<scalar_t>* lse,
                                         cudaStream_t stream) {
  using acc_t = acc_type_t<scalar_t>;
  if (rows == 0) return cudaSuccess;
  if (rows > 0x7fffffff) return cudaErrorInvalidConfiguration;
  moments_forward_kernel<scalar_t, acc_t><<<static_cast<unsigned>(rows), kForwardThreads, 0, stream>>>(
      logits, H, W, acc_t(1.0 / temperature), var_mode, acc_t(clip), mean, var, var_raw, lse);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t heatmap_moments_backward_cuda(const scalar_t* logits, const acc_type_t<scalar_t>* mean,
                                          const acc_type_t<scalar_t>* var_raw, const acc_type_t<scalar_t>* lse,
                                          const acc_type_t<scalar_t>* grad_mean,
                                          const acc_type_t<scalar_t>* grad_var, int64_t rows, int64_t H,
                                          int64_t W, double temperature, int var_mode, double clip,
                                          scalar_t* grad_logits, cudaStream_t stream) {
  using acc_t = acc_type_t<scalar_t>;
  if (rows == 0 || H * W == 0) return cudaSuccess;
  const int64_t per_block = static_cast<int64_t>(kBackwardThreads) * kBackwardItems;
  const int64_t chunks = (H * W + per_block - 1) / per_block;
  if (rows > 0x7fffffff || chunks > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(chunks));
  moments_backward_kernel<scalar_t, acc_t><<<grid, kBackwardThreads, 0, stream>>>(
      logits, mean, var_raw, lse, grad_mean, grad_var, H, W, acc_t(1.0 / temperature), var_mode, acc_t(clip),
      grad_logits);
  return cudaGetLastError();
}

#define FASTMOTION_INSTANTIATE_MOMENTS(T)                                                                    \
  template cudaError_t heatmap_moments_forward_cuda<T>(const T*, int64_t, int64_t, int64_t, double, int,    \
                                                       double, acc_type_t<T>*, acc_type_t<T>*,              \
                                                       acc_type_t<T>*, acc_type_t<T>*, cudaStream_t);       \
  template cudaError_t heatmap_moments_backward_cuda<T>(const T*, const acc_type_t<T>*, const acc_type_t<T>*, \
                                                        const acc_type_t<T>*, const acc_type_t<T>*,         \
                                                        const acc_type_t<T>*, int64_t, int64_t, int64_t,    \
                                                        double, int, double, T*, cudaStream_t);

FASTMOTION_INSTANTIATE_MOMENTS(float)
FASTMOTION_INSTANTIATE_MOMENTS(double)
FASTMOTION_INSTANTIATE_MOMENTS(__half)
FASTMOTION_INSTANTIATE_MOMENTS(__nv_bfloat16)

}  // namespace fastmotion
