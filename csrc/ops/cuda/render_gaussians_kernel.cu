// CUDA kernels of the Gaussian-heatmap ops (math: csrc/include/fastmotion/render_gaussians.h).
//
// Thread blocks are 2-D: threadIdx.x runs along a row (coalesced), threadIdx.y over rows. Each
// thread keeps its column's dx and walks rows, so a pixel costs the quadratic form (two FMAs
// after the per-row terms), one exp per Gaussian and one store.
// Forward: grid (heatmap, row range); the background channel's blocks write zeros. Sum
// normalisation: one block per heatmap, a block reduction of the sums, then the write pass.
// Backward: grid (keypoint, row range); each thread accumulates the driving and source moments
// of its pixels, the block reduces them (warp shuffles, then one warp), and when the block owns
// the whole heatmap thread 0 writes the closed-form gradients; otherwise it writes partials and
// a one-thread-per-keypoint epilogue kernel finishes.
#include "ops/cuda/render_gaussians_kernel.h"

#include "fastmotion/render_gaussians.h"

namespace fastmotion {
namespace {

constexpr int kThreads = 256;
constexpr int kForwardRowsPerThread = 4;

// ex2.approx-based exp for float (as Triton's tl.exp); the exact routine for double.
__device__ __forceinline__ float dev_exp(float x) { return __expf(x); }
__device__ __forceinline__ double dev_exp(double x) { return exp(x); }

template <typename acc_t>
__device__ __forceinline__ acc_t gauss_of_q(acc_t q) {
  return dev_exp(acc_t(-0.5) * (q < acc_t(0) ? acc_t(0) : q));
}

// The Gaussian of keypoint g at pixel row y, column offset dx = x - g.mx.
template <typename acc_t>
__device__ __forceinline__ acc_t gauss_at(const GaussQuad<acc_t>& g, acc_t dx, acc_t y) {
  const acc_t dy = y - g.my;
  return gauss_of_q(g.q(dx, g.pb * dy, g.pc * dy * dy));
}

template <typename acc_t>
struct DevKeypoint {
  GaussQuad<acc_t> quad;
  acc_t v[4];
};

template <typename scalar_t, typename acc_t>
__device__ DevKeypoint<acc_t> load_keypoint(const GaussianKeypoints<scalar_t>& kp, int mode, acc_t fixed_var,
                                            int64_t a, int64_t b, int64_t k) {
  DevKeypoint<acc_t> out;
  out.v[0] = out.v[1] = out.v[2] = out.v[3] = acc_t(0);
  const scalar_t* m = kp.mean + a * kp.m_sa + b * kp.m_sb + k * 2;
  const int nv = var_mode_numel(mode);
  if (nv > 0) {
    const scalar_t* v = kp.var + a * kp.v_sa + b * kp.v_sb + k * nv;
    for (int i = 0; i < nv; ++i) out.v[i] = to_acc(v[i]);
  }
  out.quad = GaussQuad<acc_t>::make(to_acc(m[0]), to_acc(m[1]), mode, out.v, fixed_var);
  return out;
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  for (int delta = 16; delta > 0; delta >>= 1) v += __shfl_down_sync(0xffffffffu, v, delta);
  return v;
}

// Sums v[0..N) over the block; the result is valid in thread 0. `smem`: (kThreads / 32) * N.
template <int N, typename acc_t>
__device__ void block_sum(acc_t (&v)[N], acc_t* smem) {
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  const int lane = tid & 31, warp = tid >> 5, n_warps = (blockDim.x * blockDim.y + 31) / 32;
#pragma unroll
  for (int i = 0; i < N; ++i) v[i] = warp_sum(v[i]);
  if (lane == 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) smem[warp * N + i] = v[i];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = warp_sum(lane < n_warps ? smem[lane * N + i] : acc_t(0));
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    gaussian_forward_kernel(GaussianKeypoints<scalar_t> drv, GaussianKeypoints<scalar_t> src, GaussianDims d,
                            int64_t rows_per_block, scalar_t* __restrict__ out) {
  const int64_t C = d.K + (d.background ? 1 : 0);
  const int64_t hm = blockIdx.x;
  const int64_t c = hm % C, ab = hm / C, a = ab / d.B, b = ab % d.B, k = c - (d.background ? 1 : 0);
  const int64_t H = d.H, W = d.W;
  scalar_t* o = out + hm * H * W;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < H ? r0 + rows_per_block : H;
  const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
  if (k < 0) {
    for (int64_t i = r0 + ty; i < r1; i += TY)
      for (int64_t j = tx; j < W; j += TX) o[i * W + j] = from_acc<scalar_t>(acc_t(0));
    return;
  }
  const acc_t fixed = acc_t(d.fixed_var);
  const auto kd = load_keypoint<scalar_t, acc_t>(drv, d.mode, fixed, a, b, k);
  const auto ks = d.has_source ? load_keypoint<scalar_t, acc_t>(src, d.mode, fixed, a, b, k) : kd;
  acc_t scale_d = acc_t(1) / acc_t(d.norm_const), scale_s = scale_d;
  if (d.norm_sum) {
    acc_t sums[2] = {acc_t(0), acc_t(0)};
    for (int64_t j = tx; j < W; j += TX) {
      const acc_t x = grid_coord<acc_t>(j, W);
      const acc_t dxd = x - kd.quad.mx, dxs = x - ks.quad.mx;
      for (int64_t i = r0 + ty; i < r1; i += TY) {
        const acc_t y = grid_coord<acc_t>(i, H);
        sums[0] += gauss_at(kd.quad, dxd, y);
        if (d.has_source) sums[1] += gauss_at(ks.quad, dxs, y);
      }
    }
    __shared__ acc_t smem[(kThreads / 32) * 2];
    __shared__ acc_t totals[2];
    block_sum<2, acc_t>(sums, smem);
    if (threadIdx.x == 0 && threadIdx.y == 0) {
      totals[0] = sums[0];
      totals[1] = sums[1];
    }
    __syncthreads();
    scale_d = acc_t(1) / (totals[0] == acc_t(0) ? acc_t(1) : totals[0]);  // an empty heatmap stays 0
    scale_s = acc_t(1) / (totals[1] == acc_t(0) ? acc_t(1) : totals[1]);
  }
  for (int64_t j = tx; j < W; j += TX) {
    const acc_t x = grid_coord<acc_t>(j, W);
    const acc_t dxd = x - kd.quad.mx, dxs = x - ks.quad.mx;
    for (int64_t i = r0 + ty; i < r1; i += TY) {
      const acc_t y = grid_coord<acc_t>(i, H);
      acc_t v = gauss_at(kd.quad, dxd, y) * scale_d;
      if (d.has_source) v -= gauss_at(ks.quad, dxs, y) * scale_s;
      o[i * W + j] = from_acc<scalar_t>(v);
    }
  }
}

// Adds one pixel's contribution to a map's 12 accumulators (layout: gaussian_moments_to_dq).
template <bool kNormSum, typename acc_t>
__device__ __forceinline__ void accumulate(acc_t* acc, const GaussQuad<acc_t>& g, acc_t x, acc_t y, acc_t gout) {
  const acc_t dx = x - g.mx, dy = y - g.my;
  const acc_t q = g.q(dx, g.pb * dy, g.pc * dy * dy);
  const bool neg = q < acc_t(0);
  const acc_t e = dev_exp(acc_t(-0.5) * (neg ? acc_t(0) : q));
  const acc_t m = neg ? acc_t(0) : e;
  const acc_t w = gout * m;
  const acc_t wx = w * dx, wy = w * dy;
  acc[0] += wx;
  acc[1] += wy;
  acc[2] += wx * dx;
  acc[3] += wx * dy;
  acc[4] += wy * dy;
  if (kNormSum) {
    const acc_t mx = m * dx, my = m * dy;
    acc[5] += mx;
    acc[6] += my;
    acc[7] += mx * dx;
    acc[8] += mx * dy;
    acc[9] += my * dy;
    acc[10] += e;
    acc[11] += gout * e;
  }
}

template <typename scalar_t, typename acc_t>
__device__ void finish_keypoint(const DevKeypoint<acc_t>& kp, const GaussianDims& d, acc_t sign, const acc_t* s,
                                scalar_t* gm, scalar_t* gv) {
  acc_t M[5], gma[2], gva[4];
  gaussian_moments_to_dq<acc_t>(d.norm_sum, acc_t(1) / acc_t(d.norm_const), sign, s, s + 5, s[10], s[11], M);
  gaussian_param_grads<acc_t>(kp.quad, d.mode, kp.v, M, gma, gva);
  gm[0] = from_acc<scalar_t>(gma[0]);
  gm[1] = from_acc<scalar_t>(gma[1]);
  for (int i = 0; i < var_mode_numel(d.mode); ++i) gv[i] = from_acc<scalar_t>(gva[i]);
}

template <typename scalar_t, typename acc_t, bool kNormSum, bool kHasSource>
__global__ void __launch_bounds__(kThreads)
    gaussian_backward_kernel(const scalar_t* __restrict__ grad_out, GaussianGradStrides gs,
                             GaussianKeypoints<scalar_t> drv, GaussianKeypoints<scalar_t> src, GaussianDims d,
                             int64_t rows_per_block, acc_t* __restrict__ partials, scalar_t* __restrict__ gmd,
                             scalar_t* __restrict__ gvd, scalar_t* __restrict__ gms, scalar_t* __restrict__ gvs) {
  const int64_t r = blockIdx.x;
  const int64_t k = r % d.K, ab = r / d.K, a = ab / d.B, b = ab % d.B;
  const int64_t H = d.H, W = d.W;
  const acc_t fixed = acc_t(d.fixed_var);
  const auto kd = load_keypoint<scalar_t, acc_t>(drv, d.mode, fixed, a, b, k);
  const auto ks = kHasSource ? load_keypoint<scalar_t, acc_t>(src, d.mode, fixed, a, b, k) : kd;
  const scalar_t* g = grad_out + a * gs.s[0] + b * gs.s[1] + (k + (d.background ? 1 : 0)) * gs.s[2];
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_block;
  const int64_t r1 = r0 + rows_per_block < H ? r0 + rows_per_block : H;
  const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
  // sum normalisation: gout shifted by its value nearest each keypoint (see gaussian_moments_to_dq)
  acc_t g0d = acc_t(0), g0s = acc_t(0);
  if (kNormSum) {
    g0d = to_acc(g[nearest_pixel(kd.quad.my, H) * gs.s[3] + nearest_pixel(kd.quad.mx, W) * gs.s[4]]);
    if (kHasSource) g0s = to_acc(g[nearest_pixel(ks.quad.my, H) * gs.s[3] + nearest_pixel(ks.quad.mx, W) * gs.s[4]]);
  }

  acc_t acc[kGaussianPartials];
#pragma unroll
  for (int i = 0; i < kGaussianPartials; ++i) acc[i] = acc_t(0);
  for (int64_t j = tx; j < W; j += TX) {
    const acc_t x = grid_coord<acc_t>(j, W);
    for (int64_t i = r0 + ty; i < r1; i += TY) {
      const acc_t y = grid_coord<acc_t>(i, H);
      const acc_t gout = to_acc(g[i * gs.s[3] + j * gs.s[4]]);
      accumulate<kNormSum, acc_t>(acc, kd.quad, x, y, gout - g0d);
      if (kHasSource) accumulate<kNormSum, acc_t>(acc + 12, ks.quad, x, y, gout - g0s);
    }
  }
  __shared__ acc_t smem[(kThreads / 32) * kGaussianPartials];
  block_sum<kGaussianPartials, acc_t>(acc, smem);
  if (threadIdx.x != 0 || threadIdx.y != 0) return;
  if (gridDim.y == 1) {
    const int nv = var_mode_numel(d.mode);
    finish_keypoint<scalar_t, acc_t>(kd, d, acc_t(1), acc, gmd + 2 * r, gvd + nv * r);
    if (kHasSource) finish_keypoint<scalar_t, acc_t>(ks, d, acc_t(-1), acc + 12, gms + 2 * r, gvs + nv * r);
  } else {
    acc_t* p = partials + (r * gridDim.y + blockIdx.y) * kGaussianPartials;
#pragma unroll
    for (int i = 0; i < kGaussianPartials; ++i) p[i] = acc[i];
  }
}

template <typename scalar_t, typename acc_t>
__global__ void gaussian_backward_epilogue_kernel(const acc_t* __restrict__ partials, int split,
                                                  GaussianKeypoints<scalar_t> drv, GaussianKeypoints<scalar_t> src,
                                                  GaussianDims d, scalar_t* __restrict__ gmd,
                                                  scalar_t* __restrict__ gvd, scalar_t* __restrict__ gms,
                                                  scalar_t* __restrict__ gvs) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= d.A * d.B * d.K) return;
  const int64_t k = r % d.K, ab = r / d.K, a = ab / d.B, b = ab % d.B;
  acc_t s[kGaussianPartials];
  for (int i = 0; i < kGaussianPartials; ++i) s[i] = acc_t(0);
  for (int t = 0; t < split; ++t) {
    const acc_t* p = partials + (r * split + t) * kGaussianPartials;
    for (int i = 0; i < kGaussianPartials; ++i) s[i] += p[i];
  }
  const acc_t fixed = acc_t(d.fixed_var);
  const int nv = var_mode_numel(d.mode);
  finish_keypoint<scalar_t, acc_t>(load_keypoint<scalar_t, acc_t>(drv, d.mode, fixed, a, b, k), d, acc_t(1), s,
                                   gmd + 2 * r, gvd + nv * r);
  if (d.has_source) {
    finish_keypoint<scalar_t, acc_t>(load_keypoint<scalar_t, acc_t>(src, d.mode, fixed, a, b, k), d, acc_t(-1),
                                     s + 12, gms + 2 * r, gvs + nv * r);
  }
}

// Block shape: x along a row (a power of two up to the block), y over rows.
dim3 block_shape(int64_t W) {
  int tx = 1;
  while (tx < W && tx < kThreads) tx *= 2;
  return dim3(static_cast<unsigned>(tx), static_cast<unsigned>(kThreads / tx));
}

template <typename scalar_t, typename acc_t, bool kNormSum, bool kHasSource>
void launch_backward(dim3 grid, dim3 block, cudaStream_t stream, const scalar_t* grad_out,
                     const GaussianGradStrides& gs, const GaussianKeypoints<scalar_t>& drv,
                     const GaussianKeypoints<scalar_t>& src, const GaussianDims& d, int64_t rows_per_block,
                     acc_t* partials, scalar_t* gmd, scalar_t* gvd, scalar_t* gms, scalar_t* gvs) {
  gaussian_backward_kernel<scalar_t, acc_t, kNormSum, kHasSource><<<grid, block, 0, stream>>>(
      grad_out, gs, drv, src, d, rows_per_block, partials, gmd, gvd, gms, gvs);
}

}  // namespace

template <typename scalar_t>
cudaError_t render_gaussians_forward_cuda(const GaussianKeypoints<scalar_t>& driving,
                                          const GaussianKeypoints<scalar_t>& source, const GaussianDims& dims,
                                          scalar_t* out, cudaStream_t stream) {
  using acc_t = acc_type_t<scalar_t>;
  const int64_t heatmaps = dims.A * dims.B * (dims.K + (dims.background ? 1 : 0));
  if (heatmaps == 0 || dims.H * dims.W == 0) return cudaSuccess;
  const dim3 block = block_shape(dims.W);
  const int64_t rows_per_block = dims.norm_sum ? dims.H : static_cast<int64_t>(block.y) * kForwardRowsPerThread;
  const int64_t splits = (dims.H + rows_per_block - 1) / rows_per_block;
  if (heatmaps > 0x7fffffff || splits > 65535) return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(heatmaps), static_cast<unsigned>(splits));
  gaussian_forward_kernel<scalar_t, acc_t><<<grid, block, 0, stream>>>(driving, source, dims, rows_per_block, out);
  return cudaGetLastError();
}

int gaussian_backward_split(const GaussianDims& dims, int device) {
  static int sm_count[64] = {0};
  int sms = 132;
  if (device >= 0 && device < 64) {
    if (sm_count[device] == 0) {
      int n = 0;
      if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) == cudaSuccess && n > 0) {
        sm_count[device] = n;
      }
    }
    if (sm_count[device] > 0) sms = sm_count[device];
  }
  const int64_t rows = dims.A * dims.B * dims.K;
  if (rows <= 0) return 1;
  const int64_t ty = block_shape(dims.W).y;
  const int64_t max_split = (dims.H + ty - 1) / ty;  // at least a block's rows per range
  int64_t split = (2 * static_cast<int64_t>(sms) + rows - 1) / rows;
  split = split < max_split ? split : max_split;
  split = split < 64 ? split : 64;
  return static_cast<int>(split < 1 ? 1 : split);
}

template <typename scalar_t>
cudaError_t render_gaussians_backward_cuda(const scalar_t* grad_out, const GaussianGradStrides& grad_strides,
                                           const GaussianKeypoints<scalar_t>& driving,
                                           const GaussianKeypoints<scalar_t>& source, const GaussianDims& dims,
                                           int split, acc_type_t<scalar_t>* partials, scalar_t* grad_mean_d,
                                           scalar_t* grad_var_d, scalar_t* grad_mean_s, scalar_t* grad_var_s,
                                           cudaStream_t stream) {
  using acc_t = acc_type_t<scalar_t>;
  const int64_t rows = dims.A * dims.B * dims.K;
  if (rows == 0 || dims.H * dims.W == 0) return cudaSuccess;
  if (split < 1) split = 1;
  const int64_t rows_per_block = (dims.H + split - 1) / split;
  const int64_t splits = (dims.H + rows_per_block - 1) / rows_per_block;  // <= split
  if (rows > 0x7fffffff || splits > 65535) return cudaErrorInvalidConfiguration;
  if (splits > 1 && partials == nullptr) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(splits));
  const dim3 block = block_shape(dims.W);
  if (dims.norm_sum) {
    if (dims.has_source)
      launch_backward<scalar_t, acc_t, true, true>(grid, block, stream, grad_out, grad_strides, driving, source, dims,
                                                   rows_per_block, partials, grad_mean_d, grad_var_d, grad_mean_s,
                                                   grad_var_s);
    else
      launch_backward<scalar_t, acc_t, true, false>(grid, block, stream, grad_out, grad_strides, driving, source,
                                                    dims, rows_per_block, partials, grad_mean_d, grad_var_d,
                                                    grad_mean_s, grad_var_s);
  } else {
    if (dims.has_source)
      launch_backward<scalar_t, acc_t, false, true>(grid, block, stream, grad_out, grad_strides, driving, source,
                                                    dims, rows_per_block, partials, grad_mean_d, grad_var_d,
                                                    grad_mean_s, grad_var_s);
    else
      launch_backward<scalar_t, acc_t, false, false>(grid, block, stream, grad_out, grad_strides, driving, source,
                                                     dims, rows_per_block, partials, grad_mean_d, grad_var_d,
                                                     grad_mean_s, grad_var_s);
  }
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess || splits == 1) return err;
  constexpr int kEpilogueThreads = 128;
  const int64_t blocks = (rows + kEpilogueThreads - 1) / kEpilogueThreads;
  gaussian_backward_epilogue_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks), kEpilogueThreads, 0, stream>>>(
      partials, static_cast<int>(splits), driving, source, dims, grad_mean_d, grad_var_d, grad_mean_s, grad_var_s);
  return cudaGetLastError();
}

#define FASTMOTION_INSTANTIATE_GAUSSIAN(T)                                                                         \
  template cudaError_t render_gaussians_forward_cuda<T>(const GaussianKeypoints<T>&, const GaussianKeypoints<T>&, \
                                                         const GaussianDims&, T*, cudaStream_t);                   \
  template cudaError_t render_gaussians_backward_cuda<T>(                                                        \
      const T*, const GaussianGradStrides&, const GaussianKeypoints<T>&, const GaussianKeypoints<T>&,              \
      const GaussianDims&, int, acc_type_t<T>*, T*, T*, T*, T*, cudaStream_t);

FASTMOTION_INSTANTIATE_GAUSSIAN(float)
FASTMOTION_INSTANTIATE_GAUSSIAN(double)
FASTMOTION_INSTANTIATE_GAUSSIAN(__half)
FASTMOTION_INSTANTIATE_GAUSSIAN(__nv_bfloat16)

}  // namespace fastmotion
