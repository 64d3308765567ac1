// CUDA kernels of warp_features (math in csrc/include/fastmotion/dense_motion.h).
//
// All maps of a group (up to kMaxWarpMaps) go through one launch per pass: the block range is
// cut into one contiguous range per map and each block reads its map's pointers and sizes from
// a __grid_constant__ parameter struct. A block covers `ppb` pixels (a power of two, at most the
// block size, fewer for small maps) times `cpb` channel lanes, and each thread loops over a few
// channels of its lane: the pixel's resized grid value and taps are computed once per thread and
// reused for its channels, and small maps with many channels (2x2 x 1024) still fill the block.
//
// forward: gather the four taps per (pixel, channel); write the output once.
// backward A: scatter grad_out into the feature gradients (atomicAdd; float32 scratch for half /
//   bfloat16) and reduce grad_out * d(sample)/d(coordinate) over the block's channels (threads
//   of a pixel summed in shared memory in lane order) into one partial per (n, channel block,
//   pixel).
// backward B: one thread per grid cell gathers, per map, the partials of the output pixels whose
//   resize reads the cell (a window around the cell's image; the exact resize taps decide) in a
//   fixed order: the transpose of the resize without atomics.
// backward C (half / bfloat16 only): float32 scratch -> feature gradients.
#include "ops/cuda/warp_features_kernel.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "fastmotion/dense_motion.h"

namespace fastmotion {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxChannelIters = 8;

// Launch parameters of one map (host-computed).
struct MapLaunch {
  const void* feature;
  void* out;        // forward: output; backward: feature-gradient accumulator (acc_t)
  void* grad_feat;  // backward C: the feature gradient in scalar_t (scratch mode)
  const void* grad;
  int64_t C, H, W, sn, sc, sh, sw;
  int64_t ppb, cpb, cchunk;  // pixels per block, channel lanes, channels per block
  int64_t pblocks, cblocks;  // per sample
  int64_t gc_offset;         // this map's partials in the coordinate-gradient buffer (acc_t elements)
  int64_t win_y, win_x;      // backward B: window lengths
  int64_t total;             // backward C: N*C*H*W
  int64_t block_start;
};

struct LaunchGroup {
  MapLaunch m[kMaxWarpMaps];
  int count;
};

__device__ __forceinline__ int map_of(const LaunchGroup& g, int64_t block) {
  int m = 0;
  while (m + 1 < g.count && block >= g.m[m + 1].block_start) ++m;
  return m;
}

// The grid (h, w, 2) of one sample resized to (H, W), at (y, x).
template <typename acc_t>
__device__ __forceinline__ void resized_grid(const acc_t* __restrict__ grid_n, int64_t h, int64_t w, int64_t H,
                                             int64_t W, bool nearest, int64_t y, int64_t x, acc_t* gx, acc_t* gy) {
  if (nearest) {
    const acc_t* g = grid_n + (nearest_source_index(y, h, H) * w + nearest_source_index(x, w, W)) * 2;
    *gx = g[0];
    *gy = g[1];
    return;
  }
  const ResizeTaps<acc_t> ry = linear_resize_taps<acc_t>(y, h, H), rx = linear_resize_taps<acc_t>(x, w, W);
  const acc_t* g00 = grid_n + (ry.i0 * w + rx.i0) * 2;
  const acc_t* g01 = grid_n + (ry.i0 * w + rx.i1) * 2;
  const acc_t* g10 = grid_n + (ry.i1 * w + rx.i0) * 2;
  const acc_t* g11 = grid_n + (ry.i1 * w + rx.i1) * 2;
  *gx = ry.w0 * (rx.w0 * g00[0] + rx.w1 * g01[0]) + ry.w1 * (rx.w0 * g10[0] + rx.w1 * g11[0]);
  *gy = ry.w0 * (rx.w0 * g00[1] + rx.w1 * g01[1]) + ry.w1 * (rx.w0 * g10[1] + rx.w1 * g11[1]);
}

// Taps of the map at grid value (gx, gy) (bilinear, zeros, align_corners=True).
template <typename acc_t>
__device__ __forceinline__ PlaneTaps<acc_t> grid_taps(acc_t gx, acc_t gy, int64_t H, int64_t W, int64_t sh, int64_t sw) {
  return PlaneTaps<acc_t>::make(axis_taps<acc_t>(unnormalize_align_corners<acc_t>(gx, W), W),
                                axis_taps<acc_t>(unnormalize_align_corners<acc_t>(gy, H), H), H, W, sh, sw);
}

// Block position: sample n, first pixel, first channel; thread: pixel p and channel lane.
struct BlockPos {
  int64_t n, p, c0;
  int64_t lane;
  bool valid;
};

// 32-bit index arithmetic per thread (the launcher checks the ranges): 64-bit division is slow.
__device__ __forceinline__ BlockPos block_pos(const MapLaunch& a, int64_t local_block) {
  BlockPos b;
  const int32_t lb = static_cast<int32_t>(local_block);
  const int32_t pblocks = static_cast<int32_t>(a.pblocks), cblocks = static_cast<int32_t>(a.cblocks);
  const int32_t ppb = static_cast<int32_t>(a.ppb);
  const int32_t pb = lb % pblocks;
  const int32_t rest = lb / pblocks;
  const int32_t cb = rest % cblocks;
  b.n = rest / cblocks;
  b.lane = static_cast<int32_t>(threadIdx.x) / ppb;
  b.p = static_cast<int64_t>(pb) * ppb + static_cast<int32_t>(threadIdx.x) % ppb;
  b.c0 = static_cast<int64_t>(cb) * a.cchunk;
  b.valid = b.lane < a.cpb && b.p < a.H * a.W;
  return b;
}

__device__ __forceinline__ void pixel_yx(int64_t p, int64_t W, int64_t* y, int64_t* x) {
  const int32_t p32 = static_cast<int32_t>(p), w32 = static_cast<int32_t>(W);
  const int32_t yy = p32 / w32;
  *y = yy;
  *x = p32 - yy * w32;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    warp_forward_kernel(const __grid_constant__ LaunchGroup g, const acc_t* __restrict__ grid, int64_t h, int64_t w,
                        bool nearest) {
  const int mi = map_of(g, blockIdx.x);
  const MapLaunch& a = g.m[mi];
  const BlockPos b = block_pos(a, blockIdx.x - a.block_start);
  if (!b.valid) return;
  int64_t y, x;
  pixel_yx(b.p, a.W, &y, &x);
  acc_t gx, gy;
  resized_grid(grid + b.n * h * w * 2, h, w, a.H, a.W, nearest, y, x, &gx, &gy);
  const auto t = grid_taps<acc_t>(gx, gy, a.H, a.W, a.sh, a.sw);
  const scalar_t* feat = static_cast<const scalar_t*>(a.feature) + b.n * a.sn + t.off00;
  scalar_t* out = static_cast<scalar_t*>(a.out);
  const int64_t hw = a.H * a.W;
  const int64_t c_end = min(a.C, b.c0 + a.cchunk);
  for (int64_t c = b.c0 + b.lane; c < c_end; c += a.cpb) {
    const scalar_t* f = feat + c * a.sc;
    const acc_t v00 = t.in00 ? to_acc(f[0]) : acc_t(0);
    const acc_t v01 = t.in01 ? to_acc(f[a.sw]) : acc_t(0);
    const acc_t v10 = t.in10 ? to_acc(f[a.sh]) : acc_t(0);
    const acc_t v11 = t.in11 ? to_acc(f[a.sh + a.sw]) : acc_t(0);
    out[(b.n * a.C + c) * hw + b.p] = from_acc<scalar_t>(t.w00 * v00 + t.w01 * v01 + t.w10 * v10 + t.w11 * v11);
  }
}

template <typename acc_t>
__device__ __forceinline__ void atomic_add(acc_t* p, acc_t v) {
  atomicAdd(p, v);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    warp_backward_kernel(const __grid_constant__ LaunchGroup g, const acc_t* __restrict__ grid, int64_t h, int64_t w,
                         bool nearest, bool features_requires_grad, bool grid_requires_grad, acc_t* __restrict__ gc) {
  __shared__ acc_t red[2][kThreads];
  const int mi = map_of(g, blockIdx.x);
  const MapLaunch& a = g.m[mi];
  const int64_t local = blockIdx.x - a.block_start;
  const BlockPos b = block_pos(a, local);
  const int64_t hw = a.H * a.W;
  acc_t ax = 0, ay = 0;
  if (b.valid) {
    int64_t y, x;
    pixel_yx(b.p, a.W, &y, &x);
    acc_t gx, gy;
    resized_grid(grid + b.n * h * w * 2, h, w, a.H, a.W, nearest, y, x, &gx, &gy);
    const auto t = grid_taps<acc_t>(gx, gy, a.H, a.W, a.sh, a.sw);
    const acc_t fx = t.x.frac, fy = t.y.frac;
    const scalar_t* feat = static_cast<const scalar_t*>(a.feature) + b.n * a.sn + t.off00;
    const scalar_t* grad = static_cast<const scalar_t*>(a.grad);
    acc_t* gacc = static_cast<acc_t*>(a.out);
    const int64_t dst00 = t.y.i0 * a.W + t.x.i0;  // feature gradients are contiguous
    const int64_t c_end = min(a.C, b.c0 + a.cchunk);
    for (int64_t c = b.c0 + b.lane; c < c_end; c += a.cpb) {
      const acc_t gv = to_acc(grad[(b.n * a.C + c) * hw + b.p]);
      if (grid_requires_grad) {
        const scalar_t* f = feat + c * a.sc;
        const acc_t v00 = t.in00 ? to_acc(f[0]) : acc_t(0);
        const acc_t v01 = t.in01 ? to_acc(f[a.sw]) : acc_t(0);
        const acc_t v10 = t.in10 ? to_acc(f[a.sh]) : acc_t(0);
        const acc_t v11 = t.in11 ? to_acc(f[a.sh + a.sw]) : acc_t(0);
        ax += gv * ((acc_t(1) - fy) * (v01 - v00) + fy * (v11 - v10));
        ay += gv * ((acc_t(1) - fx) * (v10 - v00) + fx * (v11 - v01));
      }
      if (features_requires_grad) {
        acc_t* d = gacc + (b.n * a.C + c) * hw + dst00;
        if (t.in00) atomic_add(d, t.w00 * gv);
        if (t.in01) atomic_add(d + 1, t.w01 * gv);
        if (t.in10) atomic_add(d + a.W, t.w10 * gv);
        if (t.in11) atomic_add(d + a.W + 1, t.w11 * gv);
      }
    }
  }
  if (!grid_requires_grad) return;
  red[0][threadIdx.x] = ax;
  red[1][threadIdx.x] = ay;
  __syncthreads();
  if (threadIdx.x < a.ppb) {
    const int64_t p = b.p;  // lane 0 of this pixel
    if (p < hw) {
      acc_t sx = 0, sy = 0;
      for (int64_t l = 0; l < a.cpb; ++l) {
        sx += red[0][l * a.ppb + threadIdx.x];
        sy += red[1][l * a.ppb + threadIdx.x];
      }
      const int64_t cb = (static_cast<int32_t>(local) / static_cast<int32_t>(a.pblocks)) % static_cast<int32_t>(a.cblocks);
      acc_t* out = gc + a.gc_offset + ((b.n * a.cblocks + cb) * hw + p) * 2;
      // d(coordinate)/d(grid) of align_corners=True: (size - 1) / 2
      out[0] = sx * (acc_t(a.W - 1) / acc_t(2));
      out[1] = sy * (acc_t(a.H - 1) / acc_t(2));
    }
  }
}

// Weight with which map index d's resize reads grid index i along one axis.
template <typename acc_t>
__device__ __forceinline__ acc_t resize_weight(int64_t d, int64_t i, int64_t grid_size, int64_t map_size,
                                               bool nearest) {
  if (d < 0 || d >= map_size) return acc_t(0);
  if (nearest) return nearest_source_index(d, grid_size, map_size) == i ? acc_t(1) : acc_t(0);
  const ResizeTaps<acc_t> t = linear_resize_taps<acc_t>(d, grid_size, map_size);
  return (t.i0 == i ? t.w0 : acc_t(0)) + (t.i1 == i ? t.w1 : acc_t(0));
}

// First map index whose resize may read grid index i (a window of win_* indices from there).
__device__ __forceinline__ int64_t window_start(int64_t i, int64_t grid_size, int64_t map_size, bool nearest) {
  const double r = static_cast<double>(map_size) / static_cast<double>(grid_size);
  const double lo = nearest ? floor(static_cast<double>(i) * r) - 1.0 : floor((static_cast<double>(i) - 0.5) * r - 0.5) - 1.0;
  return static_cast<int64_t>(lo);
}

template <typename acc_t>
__global__ void __launch_bounds__(kThreads)
    warp_grid_grad_kernel(const __grid_constant__ LaunchGroup g, const acc_t* __restrict__ gc, int64_t N, int64_t h,
                          int64_t w, bool nearest, bool accumulate, acc_t* __restrict__ grad_grid) {
  const int64_t cell = blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (cell >= N * h * w) return;
  const int32_t hw32 = static_cast<int32_t>(h * w), w32 = static_cast<int32_t>(w);
  const int32_t c32 = static_cast<int32_t>(cell);
  const int64_t n = c32 / hw32;
  const int32_t a = c32 - static_cast<int32_t>(n) * hw32;
  const int64_t ay = a / w32, ax = a - static_cast<int32_t>(ay) * w32;
  acc_t sx = 0, sy = 0;
  for (int mi = 0; mi < g.count; ++mi) {
    const MapLaunch& m = g.m[mi];
    const int64_t hw = m.H * m.W;
    const int64_t y0 = window_start(ay, h, m.H, nearest), x0 = window_start(ax, w, m.W, nearest);
    const acc_t* part = gc + m.gc_offset + n * m.cblocks * hw * 2;
    for (int64_t dy = 0; dy < m.win_y; ++dy) {
      const acc_t wy = resize_weight<acc_t>(y0 + dy, ay, h, m.H, nearest);
      if (wy == acc_t(0)) continue;
      for (int64_t dx = 0; dx < m.win_x; ++dx) {
        const acc_t wgt = wy * resize_weight<acc_t>(x0 + dx, ax, w, m.W, nearest);
        if (wgt == acc_t(0)) continue;
        const int64_t pix = (y0 + dy) * m.W + x0 + dx;
        acc_t px = 0, py = 0;
        for (int64_t cb = 0; cb < m.cblocks; ++cb) {
          px += part[(cb * hw + pix) * 2];
          py += part[(cb * hw + pix) * 2 + 1];
        }
        sx += wgt * px;
        sy += wgt * py;
      }
    }
  }
  if (accumulate) {
    sx += grad_grid[cell * 2];
    sy += grad_grid[cell * 2 + 1];
  }
  grad_grid[cell * 2] = sx;
  grad_grid[cell * 2 + 1] = sy;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) warp_cast_kernel(const __grid_constant__ LaunchGroup g) {
  const int mi = map_of(g, blockIdx.x);
  const MapLaunch& a = g.m[mi];
  const int64_t e = (blockIdx.x - a.block_start) * static_cast<int64_t>(kThreads) + threadIdx.x;
  if (e >= a.total) return;
  static_cast<scalar_t*>(a.grad_feat)[e] = from_acc<scalar_t>(static_cast<const acc_t*>(a.out)[e]);
}

int64_t next_pow2(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

// Shape of the blocks of one map.
void plan_blocks(const WarpFeatureMap& f, int64_t N, MapLaunch* a) {
  a->feature = f.feature;
  a->grad = f.grad;
  a->C = f.C, a->H = f.H, a->W = f.W;
  a->sn = f.sn, a->sc = f.sc, a->sh = f.sh, a->sw = f.sw;
  const int64_t hw = f.H * f.W;
  a->ppb = std::min<int64_t>(kThreads, next_pow2(hw));
  a->cpb = kThreads / a->ppb;
  const int64_t iters = std::max<int64_t>(1, std::min<int64_t>(kMaxChannelIters, (f.C + a->cpb - 1) / a->cpb));
  a->cchunk = a->cpb * iters;
  a->pblocks = (hw + a->ppb - 1) / a->ppb;
  a->cblocks = std::max<int64_t>(1, (f.C + a->cchunk - 1) / a->cchunk);
  (void)N;
}

int64_t window_len(int64_t grid_size, int64_t map_size, bool nearest) {
  const double r = static_cast<double>(map_size) / static_cast<double>(grid_size);
  return nearest ? static_cast<int64_t>(std::ceil(r)) + 3 : static_cast<int64_t>(std::ceil(2 * r)) + 4;
}

}  // namespace

size_t warp_features_backward_workspace(const WarpFeatureMap* maps, int count, int64_t N, bool features_requires_grad,
                                        bool grid_requires_grad, size_t scalar_size, size_t acc_size) {
  size_t gc = 0, scratch = 0;
  for (int i = 0; i < count; ++i) {
    MapLaunch a{};
    plan_blocks(maps[i], N, &a);
    if (grid_requires_grad) gc += static_cast<size_t>(N * a.cblocks * maps[i].H * maps[i].W * 2);
    if (features_requires_grad && scalar_size != acc_size) {
      scratch += static_cast<size_t>(N * maps[i].C * maps[i].H * maps[i].W);
    }
  }
  return ((gc * acc_size + 255) / 256) * 256 + scratch * acc_size;
}

template <typename scalar_t>
cudaError_t warp_features_forward_cuda(const WarpFeatureMap* maps, int count, const acc_type_t<scalar_t>* grid,
                                       int64_t N, int64_t h, int64_t w, bool nearest, cudaStream_t stream) {
  using acc_t = acc_type_t<scalar_t>;
  for (int first = 0; first < count; first += kMaxWarpMaps) {
    LaunchGroup g{};
    int64_t blocks = 0;
    for (int i = first; i < std::min(count, first + kMaxWarpMaps); ++i) {
      if (N * maps[i].C * maps[i].H * maps[i].W == 0) continue;
      MapLaunch& a = g.m[g.count++];
      plan_blocks(maps[i], N, &a);
      a.out = maps[i].out;
      a.block_start = blocks;
      blocks += N * a.cblocks * a.pblocks;
    }
    if (blocks == 0) continue;
    if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
    for (int i = 0; i < g.count; ++i) {
      if (g.m[i].H * g.m[i].W > 0x7fffffff - kThreads) return cudaErrorInvalidConfiguration;
    }
    warp_forward_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(g, grid, h, w, nearest);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template <typename scalar_t>
cudaError_t warp_features_backward_cuda(const WarpFeatureMap* maps, int count, const acc_type_t<scalar_t>* grid,
                                        int64_t N, int64_t h, int64_t w, bool nearest,
                                        acc_type_t<scalar_t>* grad_grid, void* workspace, cudaStream_t stream) {
  using acc_t = acc_type_t<scalar_t>;
  if (N * h * w > 0x7fffffff - kThreads) return cudaErrorInvalidConfiguration;
  for (int i = 0; i < count; ++i) {
    if (maps[i].H * maps[i].W > 0x7fffffff - kThreads) return cudaErrorInvalidConfiguration;
  }
  constexpr bool kDirect = sizeof(scalar_t) == sizeof(acc_t);  // float / double: atomics into the output
  bool features_requires_grad = false;
  for (int i = 0; i < count; ++i) features_requires_grad = features_requires_grad || maps[i].out != nullptr;
  const bool grid_requires_grad = grad_grid != nullptr;
  // workspace: coordinate-gradient partials, then (half / bfloat16) the float32 scratch
  size_t gc_elems = 0, scratch_elems = 0;
  for (int i = 0; i < count; ++i) {
    MapLaunch a{};
    plan_blocks(maps[i], N, &a);
    if (grid_requires_grad) gc_elems += static_cast<size_t>(N * a.cblocks * maps[i].H * maps[i].W * 2);
    if (features_requires_grad && !kDirect) scratch_elems += static_cast<size_t>(N * maps[i].C * maps[i].H * maps[i].W);
  }
  acc_t* gc = static_cast<acc_t*>(workspace);
  acc_t* scratch = reinterpret_cast<acc_t*>(static_cast<char*>(workspace) + ((gc_elems * sizeof(acc_t) + 255) / 256) * 256);
  cudaError_t err = cudaSuccess;
  if (features_requires_grad) {
    if (kDirect) {
      for (int i = 0; i < count; ++i) {
        const size_t bytes = static_cast<size_t>(N * maps[i].C * maps[i].H * maps[i].W) * sizeof(acc_t);
        if (maps[i].out != nullptr && bytes > 0) err = cudaMemsetAsync(maps[i].out, 0, bytes, stream);
        if (err != cudaSuccess) return err;
      }
    } else if (scratch_elems > 0) {
      err = cudaMemsetAsync(scratch, 0, scratch_elems * sizeof(acc_t), stream);
      if (err != cudaSuccess) return err;
    }
  }
  // per map: where its partials and its gradient accumulator live
  std::vector<int64_t> gc_off(count), acc_off(count);
  {
    int64_t go = 0, so = 0;
    for (int i = 0; i < count; ++i) {
      MapLaunch a{};
      plan_blocks(maps[i], N, &a);
      gc_off[i] = go;
      acc_off[i] = so;
      if (grid_requires_grad) go += N * a.cblocks * maps[i].H * maps[i].W * 2;
      if (features_requires_grad && !kDirect) so += N * maps[i].C * maps[i].H * maps[i].W;
    }
  }
  bool wrote_grid = false;
  for (int pass = 0; pass < 3; ++pass) {  // A: scatter + partials, B: grid gradient, C: cast
    if (pass == 1 && !grid_requires_grad) continue;
    if (pass == 2 && (kDirect || !features_requires_grad)) continue;
    bool first_group = true;
    for (int first = 0; first < count; first += kMaxWarpMaps) {
      LaunchGroup g{};
      int64_t blocks = 0;
      for (int i = first; i < std::min(count, first + kMaxWarpMaps); ++i) {
        const int64_t total = N * maps[i].C * maps[i].H * maps[i].W;
        if (total == 0) continue;
        MapLaunch& a = g.m[g.count++];
        plan_blocks(maps[i], N, &a);
        a.out = maps[i].out == nullptr ? nullptr : (kDirect ? maps[i].out : static_cast<void*>(scratch + acc_off[i]));
        a.grad_feat = maps[i].out;
        a.gc_offset = gc_off[i];
        a.win_y = window_len(h, maps[i].H, nearest);
        a.win_x = window_len(w, maps[i].W, nearest);
        a.total = total;
        a.block_start = blocks;
        blocks += pass == 0 ? N * a.cblocks * a.pblocks : (total + kThreads - 1) / kThreads;
      }
      if (pass == 1) blocks = (N * h * w + kThreads - 1) / kThreads;
      if (g.count == 0 && pass != 1) continue;
      if (pass == 1 && g.count == 0 && !first_group) continue;
      if (blocks == 0) continue;
      if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;
      if (pass == 0) {
        warp_backward_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
            g, grid, h, w, nearest, features_requires_grad, grid_requires_grad, gc);
      } else if (pass == 1) {
        warp_grid_grad_kernel<acc_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
            g, gc, N, h, w, nearest, !first_group, grad_grid);
        wrote_grid = true;
      } else {
        warp_cast_kernel<scalar_t, acc_t><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(g);
      }
      err = cudaGetLastError();
      if (err != cudaSuccess) return err;
      first_group = false;
    }
  }
  if (grid_requires_grad && !wrote_grid && N * h * w > 0) {  // no maps: the grid gets no gradient
    err = cudaMemsetAsync(grad_grid, 0, static_cast<size_t>(N * h * w * 2) * sizeof(acc_t), stream);
  }
  return err;
}

#define FASTMOTION_INSTANTIATE_WARP_FEATURES(T)                                                                  \
  template cudaError_t warp_features_forward_cuda<T>(const WarpFeatureMap*, int, const acc_type_t<T>*, int64_t, \
                                                     int64_t, int64_t, bool, cudaStream_t);                     \
  template cudaError_t warp_features_backward_cuda<T>(const WarpFeatureMap*, int, const acc_type_t<T>*, int64_t,  \
                                                      int64_t, int64_t, bool, acc_type_t<T>*, void*, cudaStream_t);

FASTMOTION_INSTANTIATE_WARP_FEATURES(float)
FASTMOTION_INSTANTIATE_WARP_FEATURES(double)
FASTMOTION_INSTANTIATE_WARP_FEATURES(__half)
FASTMOTION_INSTANTIATE_WARP_FEATURES(__nv_bfloat16)

}  // namespace fastmotion
