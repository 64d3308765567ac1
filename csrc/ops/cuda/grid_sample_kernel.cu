// CUDA kernels of grid_sample (the sampling math is csrc/include/fastmotion/sampling.h).
//
// Forward: one thread per output pixel computes its taps once and walks a range of channels
// (NCHW: consecutive threads take consecutive pixels, so loads of neighbouring taps and the
// output stores coalesce); channels-last inputs use a (32 channel lanes x 8 pixels) block so
// that a warp reads and writes 32 consecutive channels of one tap.
//
// Backward: the input gradient is a scatter to data-dependent positions, so no thread owns an
// input pixel. A warp holds 32 consecutive output pixels of one row, and along a smooth row pixel
// j's east corners are pixel j+1's west corners, so the east contributions are passed to the next
// lane with a shuffle and added there: one global atomic per pixel, row and channel (two per tap
// pair) instead of four; coalesced along x. (Accumulating a block's footprint in shared memory
// first was measured slower on an H200: its barriers cost more than the atomics they save.)
// The grid gradient sums over the thread's channels in registers (no atomics); blocks that split
// the channels of one image write partial sums to separate slots, added in order afterwards.
#include "ops/cuda/grid_sample_kernel.h"

#include <algorithm>

#include "fastmotion/sampling.h"

namespace fastmotion {
namespace {

constexpr int kFwdThreads = 128;
constexpr int kClLanes = 32, kClPixels = 8;
constexpr int kTargetBlocks = 2048;    // ~16 blocks per SM on an H100/H200: below that, channels are split
constexpr int kWarpRows = 4;           // warp-combined backward: blocks of kWarpRows x 32 pixels
constexpr unsigned kMaxGridYZ = 65535;

template <typename T>
__device__ __forceinline__ T zero_of() {
  return from_acc<T>(acc_type_t<T>(0));
}

// ------------------------------------------------------------------------------------ forward

// The sampling coordinate (x, y) of one grid point gp and the two axes it was mapped by.
template <typename acc_t>
struct SamplePoint {
  SampleAxis<acc_t> ax, ay;
  acc_t x, y;
};

template <typename scalar_t, typename acc_t = acc_type_t<scalar_t>>
__device__ __forceinline__ SamplePoint<acc_t> sample_point(const scalar_t* gp, const GridSampleGeometry& g,
                                                           int padding, bool align) {
  const auto ax = SampleAxis<acc_t>::make(g.W, align);
  const auto ay = SampleAxis<acc_t>::make(g.H, align);
  return SamplePoint<acc_t>{ax, ay, ax.coordinate(to_acc(gp[0]), padding), ay.coordinate(to_acc(gp[1]), padding)};
}

template <typename scalar_t, int MODE>
__global__ void __launch_bounds__(kFwdThreads)
    fwd_planar_kernel(const scalar_t* __restrict__ in, const scalar_t* __restrict__ grid, scalar_t* __restrict__ out,
                      GridSampleGeometry g, int padding, bool align, int64_t c_per_block, int64_t n_offset) {
  using acc_t = acc_type_t<scalar_t>;
  const int64_t P = g.Ho * g.Wo;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kFwdThreads + threadIdx.x;
  if (p >= P) return;
  const int64_t n = n_offset + blockIdx.y;
  const int64_t c0 = static_cast<int64_t>(blockIdx.z) * c_per_block;
  const int64_t c1 = c0 + c_per_block < g.C ? c0 + c_per_block : g.C;
  const auto [ax, ay, x, y] = sample_point<scalar_t>(grid + (n * P + p) * 2, g, padding, align);
  const scalar_t* in_n = in + n * g.in_sN;
  scalar_t* o = out + n * g.out_sN + p * g.out_sP;
  if (MODE == kModeNearest) {
    const auto t = NearestTap<acc_t>::make(x, y, ax, ay);
    const scalar_t* q = in_n + t.y * g.in_sH + t.x * g.in_sW;
#pragma unroll 4
    for (int64_t c = c0; c < c1; ++c) o[c * g.out_sC] = t.inside ? q[c * g.in_sC] : zero_of<scalar_t>();
    return;
  }
  const auto t = BilinearTaps<acc_t>::make(x, y, ax, ay);
  const scalar_t* q = in_n + t.y0 * g.in_sH + t.x0 * g.in_sW;
  const int64_t sW = g.in_sW, sH = g.in_sH;
#pragma unroll 4
  for (int64_t c = c0; c < c1; ++c) {
    const scalar_t* qc = q + c * g.in_sC;
    const acc_t v_nw = t.in_nw ? to_acc(qc[0]) : acc_t(0);
    const acc_t v_ne = t.in_ne ? to_acc(qc[sW]) : acc_t(0);
    const acc_t v_sw = t.in_sw ? to_acc(qc[sH]) : acc_t(0);
    const acc_t v_se = t.in_se ? to_acc(qc[sH + sW]) : acc_t(0);
    o[c * g.out_sC] = from_acc<scalar_t>(t.interpolate(v_nw, v_ne, v_sw, v_se));
  }
}

// Channels-last (in_sC == out_sC == 1): threadIdx.x runs over channels, threadIdx.y over pixels.
template <typename scalar_t, int MODE>
__global__ void __launch_bounds__(kClLanes * kClPixels)
    fwd_channels_last_kernel(const scalar_t* __restrict__ in, const scalar_t* __restrict__ grid,
                             scalar_t* __restrict__ out, GridSampleGeometry g, int padding, bool align,
                             int64_t n_offset) {
  using acc_t = acc_type_t<scalar_t>;
  const int64_t P = g.Ho * g.Wo;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * kClPixels + threadIdx.y;
  if (p >= P) return;
  const int64_t n = n_offset + blockIdx.y;
  const auto [ax, ay, x, y] = sample_point<scalar_t>(grid + (n * P + p) * 2, g, padding, align);
  const scalar_t* in_n = in + n * g.in_sN;
  scalar_t* o = out + n * g.out_sN + p * g.out_sP;
  if (MODE == kModeNearest) {
    const auto t = NearestTap<acc_t>::make(x, y, ax, ay);
    const scalar_t* q = in_n + t.y * g.in_sH + t.x * g.in_sW;
    for (int64_t c = threadIdx.x; c < g.C; c += kClLanes) o[c] = t.inside ? q[c] : zero_of<scalar_t>();
    return;
  }
  const auto t = BilinearTaps<acc_t>::make(x, y, ax, ay);
  const scalar_t* q = in_n + t.y0 * g.in_sH + t.x0 * g.in_sW;
  const int64_t sW = g.in_sW, sH = g.in_sH;
  for (int64_t c = threadIdx.x; c < g.C; c += kClLanes) {
    const acc_t v_nw = t.in_nw ? to_acc(q[c]) : acc_t(0);
    const acc_t v_ne = t.in_ne ? to_acc(q[c + sW]) : acc_t(0);
    const acc_t v_sw = t.in_sw ? to_acc(q[c + sH]) : acc_t(0);
    const acc_t v_se = t.in_se ? to_acc(q[c + sH + sW]) : acc_t(0);
    o[c] = from_acc<scalar_t>(t.interpolate(v_nw, v_ne, v_sw, v_se));
  }
}

// ----------------------------------------------------------------------------------- backward

// Backward with warp-combined atomics: threadIdx.x = column within a 32-pixel run of one output
// row, threadIdx.y = row. See the file comment.
template <typename scalar_t, int MODE, bool INPUT_GRAD, bool GRID_GRAD>
__global__ void __launch_bounds__(32 * kWarpRows, 6)
    bwd_warp_kernel(const scalar_t* __restrict__ gout, const scalar_t* __restrict__ in,
                    const scalar_t* __restrict__ grid, acc_type_t<scalar_t>* __restrict__ gin,
                    acc_type_t<scalar_t>* __restrict__ slots, GridSampleGeometry g, int padding, bool align,
                    int64_t c_per_block, int blocks_x, int64_t n_offset) {
  using acc_t = acc_type_t<scalar_t>;
  const int lane = threadIdx.x;
  const int64_t P = g.Ho * g.Wo;
  const int64_t i = static_cast<int64_t>(blockIdx.x / blocks_x) * kWarpRows + threadIdx.y;
  const int64_t j = static_cast<int64_t>(blockIdx.x % blocks_x) * 32 + lane;
  const bool active = i < g.Ho && j < g.Wo;
  const int64_t p = i * g.Wo + j;
  const int64_t n = n_offset + blockIdx.y;
  const int64_t c0 = static_cast<int64_t>(blockIdx.z) * c_per_block;
  const int64_t c1 = c0 + c_per_block < g.C ? c0 + c_per_block : g.C;
  const auto ax = SampleAxis<acc_t>::make(g.W, align);
  const auto ay = SampleAxis<acc_t>::make(g.H, align);
  BilinearTaps<acc_t> t{};
  NearestTap<acc_t> nt{};
  acc_t dx = 0, dy = 0;
  if (active) {
    const scalar_t* gp = grid + (n * P + p) * 2;
    const acc_t gx = to_acc(gp[0]), gy = to_acc(gp[1]);
    if (MODE == kModeNearest) {
      nt = NearestTap<acc_t>::make(ax.coordinate(gx, padding), ay.coordinate(gy, padding), ax, ay);
    } else {
      const acc_t x = ax.coordinate_with_grad(gx, padding, &dx);
      const acc_t y = ay.coordinate_with_grad(gy, padding, &dy);
      t = BilinearTaps<acc_t>::make(x, y, ax, ay);
    }
  }
  const bool in_nw = active && (MODE == kModeNearest ? nt.inside : t.in_nw);
  const bool in_ne = active && MODE == kModeBilinear && t.in_ne;
  const bool in_sw = active && MODE == kModeBilinear && t.in_sw;
  const bool in_se = active && MODE == kModeBilinear && t.in_se;
  const int64_t tx0 = MODE == kModeNearest ? nt.x : t.x0, ty0 = MODE == kModeNearest ? nt.y : t.y0;
  // Does this lane add the left lane's east corners (north / south row) to its own west ones?
  const int64_t left_x = __shfl_up_sync(0xffffffffu, tx0, 1), left_y = __shfl_up_sync(0xffffffffu, ty0, 1);
  const bool left_ne = __shfl_up_sync(0xffffffffu, in_ne, 1), left_se = __shfl_up_sync(0xffffffffu, in_se, 1);
  const bool same_cell = MODE == kModeBilinear && lane > 0 && left_x + 1 == tx0 && left_y == ty0;
  const bool take_n = same_cell && left_ne && in_nw;
  const bool take_s = same_cell && left_se && in_sw;
  // Does the right lane take this lane's east corners?
  const bool given_n = __shfl_down_sync(0xffffffffu, take_n, 1) && lane < 31;
  const bool given_s = __shfl_down_sync(0xffffffffu, take_s, 1) && lane < 31;
  constexpr bool grid_grad = GRID_GRAD && MODE == kModeBilinear;

  const int64_t sW = g.in_sW, sH = g.in_sH, sC = g.in_sC;
  const int64_t o_nw = n * g.in_sN + ty0 * sH + tx0 * sW;
  const acc_t w_nw = MODE == kModeNearest ? acc_t(1) : t.w_nw;
  const scalar_t* gout_p = gout + n * g.out_sN + p * g.out_sP;
  acc_t sx = 0, sy = 0;
#pragma unroll 2
  for (int64_t c = c0; c < c1; ++c) {
    const acc_t gg = active ? to_acc(gout_p[c * g.out_sC]) : acc_t(0);
    if (grid_grad && active) {
      const scalar_t* qc = in + o_nw + c * sC;
      const acc_t v_nw = in_nw ? to_acc(qc[0]) : acc_t(0);
      const acc_t v_ne = in_ne ? to_acc(qc[sW]) : acc_t(0);
      const acc_t v_sw = in_sw ? to_acc(qc[sH]) : acc_t(0);
      const acc_t v_se = in_se ? to_acc(qc[sH + sW]) : acc_t(0);
      acc_t ddx, ddy;
      t.grad_coord(v_nw, v_ne, v_sw, v_se, gg, &ddx, &ddy);
      sx += ddx;
      sy += ddy;
    }
    if (!INPUT_GRAD) continue;
    acc_t* d = gin + o_nw + c * sC;
    if (MODE == kModeNearest) {
      if (in_nw) atomicAdd(d, gg);
      continue;
    }
    const acc_t e_n = t.w_ne * gg, e_s = t.w_se * gg;
    const acc_t from_left_n = __shfl_up_sync(0xffffffffu, e_n, 1);
    const acc_t from_left_s = __shfl_up_sync(0xffffffffu, e_s, 1);
    if (in_nw) atomicAdd(d, take_n ? w_nw * gg + from_left_n : w_nw * gg);
    if (in_ne && !given_n) atomicAdd(d + sW, e_n);
    if (in_sw) atomicAdd(d + sH, take_s ? t.w_sw * gg + from_left_s : t.w_sw * gg);
    if (in_se && !given_s) atomicAdd(d + sH + sW, e_s);
  }
  if (grid_grad && active) {
    acc_t* s = slots + ((static_cast<int64_t>(blockIdx.z) * g.N + n) * P + p) * 2;
    s[0] = sx * dx;
    s[1] = sy * dy;
  }
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Channels per block so that (blocks x channel groups) reaches kTargetBlocks.
int64_t channel_split(int64_t blocks, int64_t C, int64_t min_per_block) {
  int64_t split = 1;
  const int64_t most = std::max<int64_t>(1, cdiv(C, min_per_block));
  while (split < most && blocks * split < kTargetBlocks) split *= 2;
  return std::min(split, most);
}

}  // namespace

template <typename scalar_t>
cudaError_t grid_sample_forward_cuda(const scalar_t* input, const scalar_t* grid, scalar_t* output,
                                     const GridSampleGeometry& g, int mode, int padding, bool align_corners,
                                     cudaStream_t stream) {
  const int64_t P = g.Ho * g.Wo;
  if (g.N == 0 || g.C == 0 || P == 0) return cudaSuccess;
  const bool cl = g.in_sC == 1 && g.out_sC == 1 && g.C > 1;
  for (int64_t n0 = 0; n0 < g.N; n0 += kMaxGridYZ) {
    const unsigned nb = static_cast<unsigned>(std::min<int64_t>(kMaxGridYZ, g.N - n0));
    if (cl) {
      const dim3 grid_dim(static_cast<unsigned>(cdiv(P, kClPixels)), nb);
      const dim3 block(kClLanes, kClPixels);
      if (mode == kModeNearest) {
        fwd_channels_last_kernel<scalar_t, kModeNearest><<<grid_dim, block, 0, stream>>>(input, grid, output, g,
                                                                                         padding, align_corners, n0);
      } else {
        fwd_channels_last_kernel<scalar_t, kModeBilinear><<<grid_dim, block, 0, stream>>>(input, grid, output, g,
                                                                                          padding, align_corners, n0);
      }
    } else {
      const int64_t blocks = cdiv(P, kFwdThreads) * nb;
      const int64_t split = channel_split(blocks, g.C, 4);
      const int64_t per = cdiv(g.C, split);
      const dim3 grid_dim(static_cast<unsigned>(cdiv(P, kFwdThreads)), nb, static_cast<unsigned>(cdiv(g.C, per)));
      if (mode == kModeNearest) {
        fwd_planar_kernel<scalar_t, kModeNearest><<<grid_dim, kFwdThreads, 0, stream>>>(input, grid, output, g,
                                                                                        padding, align_corners, per, n0);
      } else {
        fwd_planar_kernel<scalar_t, kModeBilinear><<<grid_dim, kFwdThreads, 0, stream>>>(input, grid, output, g,
                                                                                         padding, align_corners, per, n0);
      }
    }
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

namespace {
// Blocks of one image in the backward: kWarpRows x 32 pixels each.
int64_t backward_blocks(const GridSampleGeometry& g) { return cdiv(g.Wo, 32) * cdiv(g.Ho, kWarpRows); }
int64_t backward_per_block(const GridSampleGeometry& g) {
  const int64_t blocks = backward_blocks(g) * std::min<int64_t>(g.N, kMaxGridYZ);
  return cdiv(g.C, channel_split(blocks, g.C, 4));
}
}  // namespace

int64_t grid_sample_backward_slots(const GridSampleGeometry& g) {
  if (g.C == 0) return 1;
  return cdiv(g.C, backward_per_block(g));
}

template <typename scalar_t>
cudaError_t grid_sample_backward_cuda(const scalar_t* grad_output, const scalar_t* input, const scalar_t* grid,
                                      acc_type_t<scalar_t>* grad_input, acc_type_t<scalar_t>* grid_grad_slots,
                                      const GridSampleGeometry& g, int mode, int padding, bool align_corners,
                                      cudaStream_t stream) {
  const int64_t P = g.Ho * g.Wo;
  if (g.N == 0 || g.C == 0 || P == 0) return cudaSuccess;
  if (grad_input == nullptr && (grid_grad_slots == nullptr || mode != kModeBilinear)) return cudaSuccess;
  const int64_t n_blocks = backward_blocks(g);
  const int64_t per = backward_per_block(g);
  const unsigned splits = static_cast<unsigned>(cdiv(g.C, per));
  if (n_blocks > 0x7fffffff || splits > kMaxGridYZ) return cudaErrorInvalidConfiguration;
  const int blocks_x = static_cast<int>(cdiv(g.Wo, 32));
  const bool input_grad = grad_input != nullptr, grid_grad = grid_grad_slots != nullptr;
  const dim3 block(32, kWarpRows);
  for (int64_t n0 = 0; n0 < g.N; n0 += kMaxGridYZ) {
    const unsigned nb = static_cast<unsigned>(std::min<int64_t>(kMaxGridYZ, g.N - n0));
    const dim3 grid_dim(static_cast<unsigned>(n_blocks), nb, splits);
#define FM_LAUNCH_WARP(MODE_, IN_, GRID_)                                                                        \
  bwd_warp_kernel<scalar_t, MODE_, IN_, GRID_><<<grid_dim, block, 0, stream>>>(                                 \
      grad_output, input, grid, grad_input, grid_grad_slots, g, padding, align_corners, per, blocks_x, n0)
    if (mode == kModeNearest) {
      FM_LAUNCH_WARP(kModeNearest, true, false);
    } else if (input_grad && grid_grad) {
      FM_LAUNCH_WARP(kModeBilinear, true, true);
    } else if (input_grad) {
      FM_LAUNCH_WARP(kModeBilinear, true, false);
    } else {
      FM_LAUNCH_WARP(kModeBilinear, false, true);
    }
#undef FM_LAUNCH_WARP
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

#define FASTMOTION_INSTANTIATE_GRID_SAMPLE(T)                                                                  \
  template cudaError_t grid_sample_forward_cuda<T>(const T*, const T*, T*, const GridSampleGeometry&, int, int, \
                                                   bool, cudaStream_t);                                        \
  template cudaError_t grid_sample_backward_cuda<T>(const T*, const T*, const T*, acc_type_t<T>*,              \
                                                    acc_type_t<T>*, const GridSampleGeometry&, int, int, bool, \
                                                    cudaStream_t);

FASTMOTION_INSTANTIATE_GRID_SAMPLE(float)
FASTMOTION_INSTANTIATE_GRID_SAMPLE(double)
FASTMOTION_INSTANTIATE_GRID_SAMPLE(__half)
FASTMOTION_INSTANTIATE_GRID_SAMPLE(__nv_bfloat16)

}  // namespace fastmotion
