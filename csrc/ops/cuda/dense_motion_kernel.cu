// CUDA kernels of compose_flow and shifted_warps (math in csrc/include/fastmotion/dense_motion.h).
//
// compose_flow forward: one thread per pixel walks the K+1 logits once with an online softmax
//   (running max, sum and shift-weighted sums), then writes the (x, y) grid value.
// compose_flow backward: one thread per pixel; a first online pass gives the max, the sum and
//   sum_k e_k (g . shift_k); a second pass writes p_k (g . shift_k - mean) and block-reduces
//   p_k * g per k into a per-block partial; the last block of each sample (atomic ticket after
//   a fence) adds the partials in block order: one launch, deterministic.
// shifted_warps forward: one thread per output pixel of a (n, k) block computes its taps from the
//   exact per-pixel coordinate (same order of operations as the reference) and loops over
//   the channels.
// shifted_warps backward: one launch; its first blocks reduce grad_out * d(sample)/d(shift) over
//   pixels and channels per (n, k) (block partials + last-block reduction), its other blocks
//   gather the source gradient: for a source pixel and a block k, the output pixels whose taps
//   can reach it are within one pixel of (pixel - shift), so it checks 3 x 3 candidates against
//   their exact taps. No atomics on data.
#include "ops/cuda/dense_motion_kernel.h"

#include "fastmotion/dense_motion.h"

namespace fastmotion {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  for (int d = 16; d > 0; d >>= 1) v += __shfl_down_sync(0xffffffffu, v, d);
  return v;
}

// Sum of (a, b) over the block into out[0], out[1] (threads 0 and 1 write). red: 2 * kWarps.
template <typename acc_t>
__device__ __forceinline__ void block_sum2(acc_t a, acc_t b, acc_t* red, acc_t* out) {
  a = warp_sum(a);
  b = warp_sum(b);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    red[2 * warp] = a;
    red[2 * warp + 1] = b;
  }
  __syncthreads();
  if (threadIdx.x < 2) {
    acc_t s = 0;
    for (int w = 0; w < kWarps; ++w) s += red[2 * w + threadIdx.x];
    out[threadIdx.x] = s;
  }
  __syncthreads();
}

// After this block wrote its partials: true in the block that finished last for `slot`
// (its partials, and everybody else's, are then visible to it).
__device__ __forceinline__ bool last_block(unsigned int* counter, unsigned int blocks) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == blocks - 1;
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// The thread of a launch that gives each plane blocks_per_plane blocks of kThreads pixels: its
// plane (block / blocks_per_plane), its block within the plane and its pixel p32. 32-bit index
// arithmetic (the launchers check the ranges): 64-bit division is slow.
struct PlaneThread {
  int64_t plane, blk;
  int32_t p32;
};

__device__ __forceinline__ PlaneThread plane_thread(int32_t block, int64_t blocks_per_plane) {
  const int32_t bpp = static_cast<int32_t>(blocks_per_plane);
  const int32_t blk = block % bpp;
  return PlaneThread{block / bpp, blk, blk * kThreads + static_cast<int32_t>(threadIdx.x)};
}

// ---------------------------------------------------------------------------- compose_flow

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    compose_forward_kernel(const scalar_t* __restrict__ logits, const acc_t* __restrict__ shift,
                           const scalar_t* __restrict__ corr, int64_t K1, int64_t H, int64_t W, int64_t blocks_per_n,
                           scalar_t* __restrict__ out) {
  const PlaneThread th = plane_thread(static_cast<int32_t>(blockIdx.x), blocks_per_n);
  const int64_t n = th.plane, hw = H * W;
  const int32_t p32 = th.p32;
  const int64_t p = p32;
  if (p >= hw) return;
  const scalar_t* l = logits + n * K1 * hw + p;
  const acc_t* s = shift + n * K1 * 2;
  acc_t m = to_acc(l[0]);
  acc_t sum = acc_t(1), fx = s[0], fy = s[1];
  for (int64_t k = 1; k < K1; ++k) {
    const acc_t v = to_acc(l[k * hw]);
    const acc_t sx = s[2 * k], sy = s[2 * k + 1];
    if (v > m) {  // rescale to the new max (a NaN never takes this branch: it propagates below)
      const acc_t r = fm_exp(m - v);
      sum = sum * r + acc_t(1);
      fx = fx * r + sx;
      fy = fy * r + sy;
      m = v;
    } else {
      const acc_t e = fm_exp(v - m);
      sum += e;
      fx += e * sx;
      fy += e * sy;
    }
  }
  const acc_t inv = acc_t(1) / sum;
  acc_t ox = fx * inv, oy = fy * inv;
  if (corr != nullptr) {
    ox += to_acc(corr[n * 2 * hw + p]);
    oy += to_acc(corr[n * 2 * hw + hw + p]);
  }
  const int32_t i = p32 / static_cast<int32_t>(W), j = p32 - i * static_cast<int32_t>(W);
  out[(n * hw + p) * 2] = from_acc<scalar_t>(ox + grid_coord<acc_t>(j, W));
  out[(n * hw + p) * 2 + 1] = from_acc<scalar_t>(oy + grid_coord<acc_t>(i, H));
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    compose_backward_kernel(const scalar_t* __restrict__ grad_grid, const scalar_t* __restrict__ logits,
                            const acc_t* __restrict__ shift, int64_t K1, int64_t H, int64_t W, int64_t blocks_per_n,
                            scalar_t* __restrict__ grad_logits, acc_t* __restrict__ grad_shift,
                            acc_t* __restrict__ partial, unsigned int* __restrict__ counters) {
  __shared__ acc_t red[2 * kWarps];
  const int32_t bpn = static_cast<int32_t>(blocks_per_n);
  const int64_t n = static_cast<int32_t>(blockIdx.x) / bpn;
  const int64_t blk = static_cast<int32_t>(blockIdx.x) % bpn;
  const int64_t hw = H * W;
  const int64_t p = blk * static_cast<int64_t>(kThreads) + threadIdx.x;
  const bool valid = p < hw;  // every thread takes part in the block reductions
  const scalar_t* l = logits + n * K1 * hw + p;
  const acc_t* s = shift + n * K1 * 2;
  acc_t gx = 0, gy = 0, m = 0, sum = 1, sd = 0;
  if (valid) {
    gx = to_acc(grad_grid[(n * hw + p) * 2]);
    gy = to_acc(grad_grid[(n * hw + p) * 2 + 1]);
    m = to_acc(l[0]);
    sd = gx * s[0] + gy * s[1];
    for (int64_t k = 1; k < K1; ++k) {
      const acc_t v = to_acc(l[k * hw]);
      const acc_t d = gx * s[2 * k] + gy * s[2 * k + 1];
      if (v > m) {
        const acc_t r = fm_exp(m - v);
        sum = sum * r + acc_t(1);
        sd = sd * r + d;
        m = v;
      } else {
        const acc_t e = fm_exp(v - m);
        sum += e;
        sd += e * d;
      }
    }
  }
  const acc_t inv = acc_t(1) / sum;
  const acc_t mean = sd * inv;  // sum_k p_k (g . shift_k)
  for (int64_t k = 0; k < K1; ++k) {
    acc_t cx = 0, cy = 0;
    if (valid) {
      const acc_t pk = fm_exp(to_acc(l[k * hw]) - m) * inv;
      const acc_t d = gx * s[2 * k] + gy * s[2 * k + 1];
      grad_logits[n * K1 * hw + k * hw + p] = from_acc<scalar_t>(pk * (d - mean));
      cx = pk * gx;
      cy = pk * gy;
    }
    block_sum2(cx, cy, red, partial + ((n * blocks_per_n + blk) * K1 + k) * 2);
  }
  if (last_block(counters + n, static_cast<unsigned int>(blocks_per_n))) {
    for (int64_t q = threadIdx.x; q < K1 * 2; q += kThreads) {
      acc_t a = 0;
      for (int64_t b = 0; b < blocks_per_n; ++b) a += __ldcg(partial + (n * blocks_per_n + b) * K1 * 2 + q);
      grad_shift[n * K1 * 2 + q] = a;
    }
  }
}

// ---------------------------------------------------------------------------- shifted_warps

// Taps of output pixel (i, j) of the block shifted by (sx, sy).
template <typename acc_t>
__device__ __forceinline__ PlaneTaps<acc_t> shifted_pixel_taps(int64_t i, int64_t j, int64_t H, int64_t W, acc_t sx,
                                                               acc_t sy, int64_t sh, int64_t sw) {
  return PlaneTaps<acc_t>::make(shifted_axis_taps<acc_t>(j, W, sx), shifted_axis_taps<acc_t>(i, H, sy), H, W, sh, sw);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    shifted_forward_kernel(const scalar_t* __restrict__ source, SourceStrides st, const acc_t* __restrict__ shift,
                           int64_t C, int64_t H, int64_t W, int64_t K1, int64_t blocks_per_plane,
                           scalar_t* __restrict__ out) {
  const PlaneThread th = plane_thread(static_cast<int32_t>(blockIdx.x), blocks_per_plane);
  const int64_t nk = th.plane, hw = H * W;
  const int32_t p32 = th.p32;
  const int64_t p = p32;
  if (p >= hw) return;
  const int64_t n = static_cast<int32_t>(nk) / static_cast<int32_t>(K1);
  const int64_t i = p32 / static_cast<int32_t>(W), j = p32 - static_cast<int32_t>(i) * static_cast<int32_t>(W);
  const auto t = shifted_pixel_taps<acc_t>(i, j, H, W, shift[nk * 2], shift[nk * 2 + 1], st.h, st.w);
  const scalar_t* src = source + n * st.n + t.off00;
  scalar_t* o = out + nk * C * hw + p;
  for (int64_t c = 0; c < C; ++c) {
    const scalar_t* sc = src + c * st.c;
    const acc_t v00 = t.in00 ? to_acc(sc[0]) : acc_t(0);
    const acc_t v01 = t.in01 ? to_acc(sc[st.w]) : acc_t(0);
    const acc_t v10 = t.in10 ? to_acc(sc[st.h]) : acc_t(0);
    const acc_t v11 = t.in11 ? to_acc(sc[st.h + st.w]) : acc_t(0);
    o[c * hw] = from_acc<scalar_t>(t.w00 * v00 + t.w01 * v01 + t.w10 * v10 + t.w11 * v11);
  }
}

// Weight with which output index t of a block shifted by `shift` reaches source index q along
// one axis (0 unless t's exact taps include q).
template <typename acc_t>
__device__ __forceinline__ acc_t transposed_weight(int64_t t, int64_t q, int64_t size, acc_t shift) {
  if (t < 0 || t >= size) return acc_t(0);
  const AxisTaps<acc_t> a = shifted_axis_taps<acc_t>(t, size, shift);
  if (a.i0 == q) return acc_t(1) - a.frac;
  if (a.i0 + 1 == q) return a.frac;
  return acc_t(0);
}

// First of the three candidate output indices around source index q minus the shift in pixels.
template <typename acc_t>
__device__ __forceinline__ int64_t first_candidate(int64_t q, int64_t size, acc_t shift) {
  const acc_t px = size > 1 ? shift * acc_t(size - 1) / acc_t(2) : acc_t(0);
  acc_t c = fm_floor(acc_t(q) - px + acc_t(0.5));
  const acc_t lo = acc_t(-4), hi = acc_t(size + 4);
  c = c >= lo ? (c <= hi ? c : hi) : lo;  // far outside (or NaN): every candidate is out of range
  return static_cast<int64_t>(c) - 1;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    shifted_backward_kernel(const scalar_t* __restrict__ grad_out, const scalar_t* __restrict__ source,
                            SourceStrides st, const acc_t* __restrict__ shift, int64_t C, int64_t H, int64_t W,
                            int64_t K1, int64_t blocks_per_plane, int64_t shift_blocks,
                            scalar_t* __restrict__ grad_source, acc_t* __restrict__ grad_shift,
                            acc_t* __restrict__ partial, unsigned int* __restrict__ counters) {
  __shared__ acc_t red[2 * kWarps];
  const int64_t hw = H * W;
  if (static_cast<int64_t>(blockIdx.x) < shift_blocks) {
    // kp_shift gradient of block (n, k), pixels of this thread block
    const PlaneThread th = plane_thread(static_cast<int32_t>(blockIdx.x), blocks_per_plane);
    const int64_t nk = th.plane, blk = th.blk;
    const int32_t p32 = th.p32;
    const int64_t p = p32;
    acc_t ax = 0, ay = 0;
    if (p < hw) {
      const int64_t n = static_cast<int32_t>(nk) / static_cast<int32_t>(K1);
      const int64_t i = p32 / static_cast<int32_t>(W), j = p32 - static_cast<int32_t>(i) * static_cast<int32_t>(W);
      const auto t = shifted_pixel_taps<acc_t>(i, j, H, W, shift[nk * 2], shift[nk * 2 + 1], st.h, st.w);
      const acc_t fx = t.x.frac, fy = t.y.frac;
      const scalar_t* src = source + n * st.n + t.off00;
      const scalar_t* g = grad_out + nk * C * hw + p;
      for (int64_t c = 0; c < C; ++c) {
        const scalar_t* sc = src + c * st.c;
        const acc_t v00 = t.in00 ? to_acc(sc[0]) : acc_t(0);
        const acc_t v01 = t.in01 ? to_acc(sc[st.w]) : acc_t(0);
        const acc_t v10 = t.in10 ? to_acc(sc[st.h]) : acc_t(0);
        const acc_t v11 = t.in11 ? to_acc(sc[st.h + st.w]) : acc_t(0);
        const acc_t gv = to_acc(g[c * hw]);
        ax += gv * ((acc_t(1) - fy) * (v01 - v00) + fy * (v11 - v10));
        ay += gv * ((acc_t(1) - fx) * (v10 - v00) + fx * (v11 - v01));
      }
    }
    block_sum2(ax, ay, red, partial + (nk * blocks_per_plane + blk) * 2);
    if (last_block(counters + nk, static_cast<unsigned int>(blocks_per_plane)) && threadIdx.x < 2) {
      acc_t a = 0;
      for (int64_t b = 0; b < blocks_per_plane; ++b) a += __ldcg(partial + (nk * blocks_per_plane + b) * 2 + threadIdx.x);
      const int64_t size = threadIdx.x == 0 ? W : H;  // d(coordinate)/d(shift) = (size - 1) / 2
      grad_shift[nk * 2 + threadIdx.x] = a * (acc_t(size - 1) / acc_t(2));
    }
    return;
  }
  // source gradient of plane (n, c), pixels of this thread block
  const PlaneThread th = plane_thread(static_cast<int32_t>(blockIdx.x - shift_blocks), blocks_per_plane);
  const int64_t nc = th.plane;
  const int32_t p32 = th.p32;
  const int64_t p = p32;
  if (p >= hw) return;
  const int64_t n = static_cast<int32_t>(nc) / static_cast<int32_t>(C), c = nc - n * C;
  const int64_t r = p32 / static_cast<int32_t>(W), q = p32 - static_cast<int32_t>(r) * static_cast<int32_t>(W);
  acc_t acc = 0;
  for (int64_t k = 0; k < K1; ++k) {
    const int64_t nk = n * K1 + k;
    const acc_t sx = shift[nk * 2], sy = shift[nk * 2 + 1];
    const int64_t ty = first_candidate(r, H, sy), tx = first_candidate(q, W, sx);
    acc_t wy[3], wx[3];
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      wy[a] = transposed_weight(ty + a, r, H, sy);
      wx[a] = transposed_weight(tx + a, q, W, sx);
    }
    const scalar_t* g = grad_out + (nk * C + c) * hw;
#pragma unroll
    for (int a = 0; a < 3; ++a) {
      if (wy[a] == acc_t(0)) continue;
      const scalar_t* row = g + (ty + a) * W + tx;
      acc_t s = 0;
#pragma unroll
      for (int e = 0; e < 3; ++e) {
        if (wx[e] != acc_t(0)) s += wx[e] * to_acc(row[e]);
      }
      acc += wy[a] * s;
    }
  }
  grad_source[nc * hw + p] = from_acc<scalar_t>(acc);
}

int64_t blocks_for(int64_t n) { return (n + kThreads - 1) / kThreads; }

}  // namespace

size_t compose_flow_backward_workspace(int64_t N, int64_t K1, int64_t H, int64_t W, size_t acc_size) {
  const size_t partial = static_cast<size_t>(N * blocks_for(H * W) * K1 * 2) * acc_size;
  return (partial + 255) / 256 * 256 + static_cast<size_t>(N) * sizeof(unsigned int);
}

size_t shifted_warps_backward_workspace(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K1, size_t acc_size) {
  (void)C;
  const size_t partial = static_cast<size_t>(N * K1 * blocks_for(H * W) * 2) * acc_size;
  return (partial + 255) / 256 * 256 + static_cast<size_t>(N * K1) * sizeof(unsigned int);
}

template <typename scalar_t>
cudaError_t compose_flow_forward_cuda(const scalar_t* logits, const acc_type_t<scalar_t>* shift,
                                      const scalar_t* correction, int64_t N, int64_t K1, int64_t H, int64_t W,
                                      scalar_t* grid, cudaStream_t stream) {
  using acc_t = acc_type_t<scalar_t>;
  if (N == 0 || H * W == 0) return cudaSuccess;
  if (K1 < 1) return cudaErrorInvalidValue;
  const int64_t per_n = blocks_for(H * W);
  if (N * per_n > 0x7fffffff || H * W > 0x7fffffff - kThreads) return cudaErrorInvalidConfiguration;
  compose_forward_kernel<scalar_t, acc_t><<<static_cast<unsigned>(N * per_n), kThreads, 0, stream>>>(
      logits, shift, correction, K1, H, W, per_n, grid);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t compose_flow_backward_cuda(const scalar_t* grad_grid, const scalar_t* logits,
                                       const acc_type_t<scalar_t>* shift, int64_t N, int64_t K1, int64_t H,
                                       int64_t W, scalar_t* grad_logits, acc_type_t<scalar_t>* grad_shift,
                                       void* workspace, cudaStream_t stream) {
  using acc_t = acc_type_t<scalar_t>;
  if (N == 0 || H * W == 0 || K1 == 0) return cudaSuccess;
  const int64_t per_n = blocks_for(H * W);
  if (N * per_n > 0x7fffffff || H * W > 0x7fffffff - kThreads) return cudaErrorInvalidConfiguration;
  char* ws = static_cast<char*>(workspace);
  acc_t* partial = reinterpret_cast<acc_t*>(ws);
  const size_t partial_bytes = (static_cast<size_t>(N * per_n * K1 * 2) * sizeof(acc_t) + 255) / 256 * 256;
  unsigned int* counters = reinterpret_cast<unsigned int*>(ws + partial_bytes);
  cudaError_t err = cudaMemsetAsync(counters, 0, static_cast<size_t>(N) * sizeof(unsigned int), stream);
  if (err != cudaSuccess) return err;
  compose_backward_kernel<scalar_t, acc_t><<<static_cast<unsigned>(N * per_n), kThreads, 0, stream>>>(
      grad_grid, logits, shift, K1, H, W, per_n, grad_logits, grad_shift, partial, counters);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t shifted_warps_forward_cuda(const scalar_t* source, SourceStrides strides, const acc_type_t<scalar_t>* shift,
                                       int64_t N, int64_t C, int64_t H, int64_t W, int64_t K1, scalar_t* out,
                                       cudaStream_t stream) {
  using acc_t = acc_type_t<scalar_t>;
  if (N * K1 * C * H * W == 0) return cudaSuccess;
  const int64_t per_plane = blocks_for(H * W);
  if (N * K1 * per_plane > 0x7fffffff || H * W > 0x7fffffff - kThreads) return cudaErrorInvalidConfiguration;
  shifted_forward_kernel<scalar_t, acc_t><<<static_cast<unsigned>(N * K1 * per_plane), kThreads, 0, stream>>>(
      source, strides, shift, C, H, W, K1, per_plane, out);
  return cudaGetLastError();
}

template <typename scalar_t>
cudaError_t shifted_warps_backward_cuda(const scalar_t* grad_out, const scalar_t* source, SourceStrides strides,
                                        const acc_type_t<scalar_t>* shift, int64_t N, int64_t C, int64_t H, int64_t W,
                                        int64_t K1, scalar_t* grad_source, acc_type_t<scalar_t>* grad_shift,
                                        void* workspace, cudaStream_t stream) {
  using acc_t = acc_type_t<scalar_t>;
  const int64_t per_plane = blocks_for(H * W);
  const int64_t shift_blocks = grad_shift != nullptr ? N * K1 * per_plane : 0;
  const int64_t source_blocks = grad_source != nullptr ? N * C * per_plane : 0;
  if (shift_blocks + source_blocks == 0) return cudaSuccess;
  if (shift_blocks + source_blocks > 0x7fffffff || H * W > 0x7fffffff - kThreads) {
    return cudaErrorInvalidConfiguration;
  }
  char* ws = static_cast<char*>(workspace);
  acc_t* partial = reinterpret_cast<acc_t*>(ws);
  const size_t partial_bytes = (static_cast<size_t>(N * K1 * per_plane * 2) * sizeof(acc_t) + 255) / 256 * 256;
  unsigned int* counters = reinterpret_cast<unsigned int*>(ws + partial_bytes);
  if (shift_blocks > 0) {
    cudaError_t err = cudaMemsetAsync(counters, 0, static_cast<size_t>(N * K1) * sizeof(unsigned int), stream);
    if (err != cudaSuccess) return err;
  }
  shifted_backward_kernel<scalar_t, acc_t>
      <<<static_cast<unsigned>(shift_blocks + source_blocks), kThreads, 0, stream>>>(
          grad_out, source, strides, shift, C, H, W, K1, per_plane, shift_blocks, grad_source, grad_shift, partial,
          counters);
  return cudaGetLastError();
}

#define FASTMOTION_INSTANTIATE_DENSE_MOTION(T)                                                                     \
  template cudaError_t compose_flow_forward_cuda<T>(const T*, const acc_type_t<T>*, const T*, int64_t, int64_t,    \
                                                    int64_t, int64_t, T*, cudaStream_t);                           \
  template cudaError_t compose_flow_backward_cuda<T>(const T*, const T*, const acc_type_t<T>*, int64_t, int64_t,   \
                                                     int64_t, int64_t, T*, acc_type_t<T>*, void*, cudaStream_t);   \
  template cudaError_t shifted_warps_forward_cuda<T>(const T*, SourceStrides, const acc_type_t<T>*, int64_t,       \
                                                     int64_t, int64_t, int64_t, int64_t, T*, cudaStream_t);        \
  template cudaError_t shifted_warps_backward_cuda<T>(const T*, const T*, SourceStrides, const acc_type_t<T>*,     \
                                                      int64_t, int64_t, int64_t, int64_t, int64_t, T*,             \
                                                      acc_type_t<T>*, void*, cudaStream_t);

FASTMOTION_INSTANTIATE_DENSE_MOTION(float)
FASTMOTION_INSTANTIATE_DENSE_MOTION(double)
FASTMOTION_INSTANTIATE_DENSE_MOTION(__half)
FASTMOTION_INSTANTIATE_DENSE_MOTION(__nv_bfloat16)

}  // namespace fastmotion
