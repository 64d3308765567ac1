// CPU kernels of warp_features: every feature map sampled at one grid resized to its size, with
// the resize (nearest, or linear with align_corners=False) folded into the sampling.
//
// Forward: a task owns (n, a block of output rows, a range of channels). It computes each
// pixel's resized grid value and its four taps once (int32 offsets into a channel plane,
// weights with out-of-image taps zeroed), then runs the gather for every channel of its range.
// No resized grid is ever stored; any memory layout of the features works (offsets use their
// strides). The per-axis resize indices are computed once per map, the taps of a row in
// unit-stride loops, and the gathers are plain indexed loads: all of it auto-vectorizes (AVX2
// gathers) in the AVX2 copy of the kernels.
// Backward: a task owns (n, a range of channels). It rebuilds the taps block by block, scatters
// grad_out into its own channels' feature gradients (no other task writes there), and sums
// grad_out * d(sample)/d(coordinate) over its channels per pixel into a partial buffer. The
// grid gradient then reduces the partials over channel ranges and pushes each pixel's value
// back through the resize (the transpose of nearest / linear interpolation) into the small
// grid, per sample, in a fixed order: deterministic, no atomics.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "fastmotion/dense_motion.h"
#include "ops/cpu/vec_math.h"
#include "ops/register.h"
#include "ops/warp_features.h"

namespace fastmotion {
namespace cpu {

// One axis of the grid's resize to a map: for every map index, the two grid indices and weights
// (nearest: the same index twice, weights 1 and 0).
template <typename acc_t>
struct AxisResize {
  std::vector<int32_t> i0, i1;
  std::vector<acc_t> w0, w1;

  void build(int64_t grid_size, int64_t map_size, bool nearest) {
    i0.resize(map_size);
    i1.resize(map_size);
    w0.resize(map_size);
    w1.resize(map_size);
    for (int64_t d = 0; d < map_size; ++d) {
      if (nearest) {
        i0[d] = i1[d] = static_cast<int32_t>(nearest_source_index(d, grid_size, map_size));
        w0[d] = acc_t(1);
        w1[d] = acc_t(0);
      } else {
        const ResizeTaps<acc_t> t = linear_resize_taps<acc_t>(d, grid_size, map_size);
        i0[d] = static_cast<int32_t>(t.i0);
        i1[d] = static_cast<int32_t>(t.i1);
        w0[d] = t.w0;
        w1[d] = t.w1;
      }
    }
  }
};

// The four taps (00, 01, 10, 11: (row, column) + (0|1, 0|1)) of a block of output pixels.
template <typename acc_t>
struct TapBlock {
  std::vector<int32_t> off[4];  // offsets into a channel plane (0 for taps outside the map)
  std::vector<acc_t> w[4];      // bilinear weights
  std::vector<acc_t> in[4];     // 1 inside the map, 0 outside (such taps read 0)
  std::vector<acc_t> fx, fy;    // second-tap weights along x and y
  std::vector<acc_t> gx, gy;    // scratch: resized grid values of one row

  void resize(int64_t n, int64_t row) {
    for (int t = 0; t < 4; ++t) {
      off[t].resize(n);
      w[t].resize(n);
      in[t].resize(n);
    }
    fx.resize(n);
    fy.resize(n);
    gx.resize(row);
    gy.resize(row);
  }
};

// The grid resized to a map, along one output row: g0, g1 are the two grid rows it reads (with
// weights a0, a1), the columns come from the per-column resize taps.
template <typename acc_t>
FASTMOTION_INLINE void grid_row(const acc_t* __restrict__ g0, const acc_t* __restrict__ g1, acc_t a0, acc_t a1,
                        const int32_t* __restrict__ cx0, const int32_t* __restrict__ cx1,
                        const acc_t* __restrict__ bx0, const acc_t* __restrict__ bx1, bool nearest, int64_t Wf,
                        acc_t* __restrict__ gx, acc_t* __restrict__ gy) {
  if (nearest) {
    for (int64_t x = 0; x < Wf; ++x) {
      gx[x] = g0[2 * cx0[x]];
      gy[x] = g0[2 * cx0[x] + 1];
    }
    return;
  }
  for (int64_t x = 0; x < Wf; ++x) {
    const int32_t c0 = 2 * cx0[x], c1 = 2 * cx1[x];
    const acc_t b0 = bx0[x], b1 = bx1[x];
    gx[x] = a0 * (b0 * g0[c0] + b1 * g0[c1]) + a1 * (b0 * g1[c0] + b1 * g1[c1]);
    gy[x] = a0 * (b0 * g0[c0 + 1] + b1 * g0[c1 + 1]) + a1 * (b0 * g1[c0 + 1] + b1 * g1[c1 + 1]);
  }
}

// Taps of one row of output pixels from their (resized) grid values gx, gy. Restrict-qualified
// parameters so that GCC vectorizes the loop (it gives up on aliasing between 16 arrays).
template <typename acc_t>
FASTMOTION_INLINE void taps_row(const acc_t* __restrict__ gx, const acc_t* __restrict__ gy, int64_t Wf, int64_t Hf,
                        int32_t sh, int32_t sw, int32_t* __restrict__ o00, int32_t* __restrict__ o01,
                        int32_t* __restrict__ o10, int32_t* __restrict__ o11, acc_t* __restrict__ w00,
                        acc_t* __restrict__ w01, acc_t* __restrict__ w10, acc_t* __restrict__ w11,
                        acc_t* __restrict__ m00, acc_t* __restrict__ m01, acc_t* __restrict__ m10,
                        acc_t* __restrict__ m11, acc_t* __restrict__ fxs, acc_t* __restrict__ fys) {
  const acc_t scale_x = acc_t(Wf - 1), scale_y = acc_t(Hf - 1);
  const acc_t hi_x = acc_t(Wf + 1), hi_y = acc_t(Hf + 1), lo = acc_t(-2);
  const acc_t last_x = acc_t(Wf - 1), last_y = acc_t(Hf - 1);
  // Float compares and selects only (masks of one type), integer 0/1 products instead of
  // integer selects: the form GCC's vectorizer accepts.
  for (int64_t x = 0; x < Wf; ++x) {
    // grid_sample's unnormalize (align_corners=True), clamped as in axis_taps
    acc_t cx = ((gx[x] + acc_t(1)) / acc_t(2)) * scale_x;
    acc_t cy = ((gy[x] + acc_t(1)) / acc_t(2)) * scale_y;
    const acc_t nonfinite_x = cx - cx, nonfinite_y = cy - cy;  // NaN for NaN / inf: NaN weights
    cx = cx >= lo ? cx : lo;
    cy = cy >= lo ? cy : lo;
    cx = cx <= hi_x ? cx : hi_x;
    cy = cy <= hi_y ? cy : hi_y;
    const acc_t flx = fm_floor(cx), fly = fm_floor(cy);
    const acc_t fx = (cx - flx) + nonfinite_x, fy = (cy - fly) + nonfinite_y;
    const acc_t vx0 = (flx >= acc_t(0) && flx <= last_x) ? acc_t(1) : acc_t(0);
    const acc_t vx1 = (flx >= acc_t(-1) && flx <= last_x - acc_t(1)) ? acc_t(1) : acc_t(0);
    const acc_t vy0 = (fly >= acc_t(0) && fly <= last_y) ? acc_t(1) : acc_t(0);
    const acc_t vy1 = (fly >= acc_t(-1) && fly <= last_y - acc_t(1)) ? acc_t(1) : acc_t(0);
    const acc_t i00 = vy0 * vx0, i01 = vy0 * vx1, i10 = vy1 * vx0, i11 = vy1 * vx1;
    const int32_t base = static_cast<int32_t>(fly) * sh + static_cast<int32_t>(flx) * sw;
    o00[x] = static_cast<int32_t>(i00) * base;
    o01[x] = static_cast<int32_t>(i01) * (base + sw);
    o10[x] = static_cast<int32_t>(i10) * (base + sh);
    o11[x] = static_cast<int32_t>(i11) * (base + sh + sw);
    m00[x] = i00;
    m01[x] = i01;
    m10[x] = i10;
    m11[x] = i11;
    // weights stay as they are for taps outside the map, which read 0 (grid_sample's rule: a NaN
    // weight still makes the sample NaN)
    w00[x] = (acc_t(1) - fy) * (acc_t(1) - fx);
    w01[x] = (acc_t(1) - fy) * fx;
    w10[x] = fy * (acc_t(1) - fx);
    w11[x] = fy * fx;
    fxs[x] = fx;
    fys[x] = fy;
  }
}

// Taps of output rows [y0, y1) of a (Hf, Wf) map whose channel planes have strides (sh, sw),
// from grid_n (h, w, 2) resized by (ry, rx).
template <typename acc_t>
FASTMOTION_INLINE void build_taps(const acc_t* grid_n, int64_t w, const AxisResize<acc_t>& ry, const AxisResize<acc_t>& rx,
                          bool nearest, int64_t Hf, int64_t Wf, int32_t sh, int32_t sw, int64_t y0, int64_t y1,
                          TapBlock<acc_t>& tb) {
  tb.resize((y1 - y0) * Wf, Wf);
  acc_t* gx = tb.gx.data();
  acc_t* gy = tb.gy.data();
  const int32_t* cx0 = rx.i0.data();
  const int32_t* cx1 = rx.i1.data();
  const acc_t* bx0 = rx.w0.data();
  const acc_t* bx1 = rx.w1.data();
  for (int64_t y = y0; y < y1; ++y) {
    const acc_t* g0 = grid_n + static_cast<int64_t>(ry.i0[y]) * w * 2;
    const acc_t* g1 = grid_n + static_cast<int64_t>(ry.i1[y]) * w * 2;
    grid_row<acc_t>(g0, g1, ry.w0[y], ry.w1[y], cx0, cx1, bx0, bx1, nearest, Wf, gx, gy);
    const int64_t p0 = (y - y0) * Wf;
    taps_row<acc_t>(gx, gy, Wf, Hf, sh, sw, tb.off[0].data() + p0, tb.off[1].data() + p0, tb.off[2].data() + p0,
                    tb.off[3].data() + p0, tb.w[0].data() + p0, tb.w[1].data() + p0, tb.w[2].data() + p0,
                    tb.w[3].data() + p0, tb.in[0].data() + p0, tb.in[1].data() + p0, tb.in[2].data() + p0,
                    tb.in[3].data() + p0, tb.fx.data() + p0, tb.fy.data() + p0);
  }
}

// A TapBlock's offsets and masks as plain pointers, taken once outside the pixel loops, and the
// read of one pixel's four taps that the gather and the coordinate gradient share.
template <typename acc_t>
struct TapReader {
  const int32_t *o0, *o1, *o2, *o3;
  const acc_t *m0, *m1, *m2, *m3;

  explicit TapReader(const TapBlock<acc_t>& tb)
      : o0(tb.off[0].data()), o1(tb.off[1].data()), o2(tb.off[2].data()), o3(tb.off[3].data()),
        m0(tb.in[0].data()), m1(tb.in[1].data()), m2(tb.in[2].data()), m3(tb.in[3].data()) {}

  // Every offset is inside the plane (0 for taps outside the map), so the loads are
  // unconditional (vectorizable gathers); a select, not a product with the mask, then makes a
  // tap outside the map read 0 whatever plane[0] holds.
  template <typename scalar_t>
  FASTMOTION_INLINE void read(const scalar_t* __restrict__ plane, int64_t p, acc_t& v00, acc_t& v01, acc_t& v10,
                              acc_t& v11) const {
    const acc_t zero = acc_t(0);
    const acc_t x00 = static_cast<acc_t>(plane[o0[p]]), x01 = static_cast<acc_t>(plane[o1[p]]);
    const acc_t x10 = static_cast<acc_t>(plane[o2[p]]), x11 = static_cast<acc_t>(plane[o3[p]]);
    v00 = m0[p] != zero ? x00 : zero;
    v01 = m1[p] != zero ? x01 : zero;
    v10 = m2[p] != zero ? x10 : zero;
    v11 = m3[p] != zero ? x11 : zero;
  }
};

template <typename scalar_t, typename acc_t>
FASTMOTION_INLINE void gather_block(const scalar_t* __restrict__ plane, const TapBlock<acc_t>& tb, int64_t np,
                            scalar_t* __restrict__ out) {
  const TapReader<acc_t> taps(tb);
  const acc_t *w0 = tb.w[0].data(), *w1 = tb.w[1].data(), *w2 = tb.w[2].data(), *w3 = tb.w[3].data();
  for (int64_t p = 0; p < np; ++p) {
    acc_t v00, v01, v10, v11;
    taps.read(plane, p, v00, v01, v10, v11);
    out[p] = static_cast<scalar_t>(w0[p] * v00 + w1[p] * v01 + w2[p] * v10 + w3[p] * v11);
  }
}

// grad_out * d(sample)/d(coordinate) of one channel, added to (gcx, gcy) per pixel.
template <typename scalar_t, typename acc_t>
FASTMOTION_INLINE void coord_grad_block(const scalar_t* __restrict__ plane, const scalar_t* __restrict__ g,
                                const TapBlock<acc_t>& tb, int64_t np, acc_t* __restrict__ gcx,
                                acc_t* __restrict__ gcy) {
  const TapReader<acc_t> taps(tb);
  const acc_t *fxs = tb.fx.data(), *fys = tb.fy.data();
  for (int64_t p = 0; p < np; ++p) {
    acc_t v00, v01, v10, v11;
    taps.read(plane, p, v00, v01, v10, v11);
    const acc_t fx = fxs[p], fy = fys[p];
    const acc_t gv = static_cast<acc_t>(g[p]);
    gcx[p] += gv * ((acc_t(1) - fy) * (v01 - v00) + fy * (v11 - v10));
    gcy[p] += gv * ((acc_t(1) - fx) * (v10 - v00) + fx * (v11 - v01));
  }
}

// grad_out scattered into one channel's feature gradient: a contiguous acc_t plane with one
// extra slot at `trash` that absorbs the taps outside the map (no branches). One pass per tap
// position: consecutive pixels then hit different addresses, so the read-modify-writes of
// neighbouring pixels do not wait on each other (pixel p's right tap is pixel p+1's left tap).
template <typename scalar_t, typename acc_t>
FASTMOTION_INLINE void scatter_block(const scalar_t* __restrict__ g, const TapBlock<acc_t>& tb, int64_t np, int32_t trash,
                             acc_t* __restrict__ gbuf, int32_t* __restrict__ tgt, acc_t* __restrict__ gplane) {
  for (int64_t p = 0; p < np; ++p) gbuf[p] = static_cast<acc_t>(g[p]);
  for (int t = 0; t < 4; ++t) {
    const int32_t* __restrict__ off = tb.off[t].data();
    const acc_t* __restrict__ wt = tb.w[t].data();
    const acc_t* __restrict__ in = tb.in[t].data();
    acc_t* __restrict__ contrib = gbuf + np;
    for (int64_t p = 0; p < np; ++p) {  // vectorized: targets and contributions
      tgt[p] = in[p] != acc_t(0) ? off[p] : trash;
      contrib[p] = wt[p] * gbuf[p];
    }
    for (int64_t p = 0; p < np; ++p) gplane[tgt[p]] += contrib[p];
  }
}

// The same scatter for a block of channels stored pixel-major (channels innermost): g_t holds the
// block's grad_out as (np, cc), gacc the gradients as (Hf * Wf + 1, cc). Each tap adds a
// weighted channel vector: the channel loop vectorizes, where the planar scatter above is one
// scalar read-modify-write per channel and tap.
template <typename acc_t>
FASTMOTION_INLINE void add_scaled(acc_t* __restrict__ dst, const acc_t* __restrict__ src, acc_t w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] += w * src[i];
}

template <typename acc_t>
FASTMOTION_INLINE void scatter_block_channels(const acc_t* __restrict__ g_t, const TapBlock<acc_t>& tb, int64_t np,
                                      int64_t cc, int32_t trash, int32_t* __restrict__ tgt,
                                      acc_t* __restrict__ gacc) {
  for (int t = 0; t < 4; ++t) {
    const int32_t* __restrict__ off = tb.off[t].data();
    const acc_t* __restrict__ in = tb.in[t].data();
    const acc_t* wt = tb.w[t].data();
    for (int64_t p = 0; p < np; ++p) tgt[p] = in[p] != acc_t(0) ? off[p] : trash;
    for (int64_t p = 0; p < np; ++p) add_scaled(gacc + static_cast<int64_t>(tgt[p]) * cc, g_t + p * cc, wt[p], cc);
  }
}

namespace {

// Work (elements) per task: an eighth of a thread's share, at least 64K. at::parallel_for hands
// each thread one contiguous range of tasks, so tasks of similar size keep the threads balanced
// even though the maps differ in size by orders of magnitude.
int64_t task_target(int64_t total_work) {
  return std::max<int64_t>(int64_t(1) << 16, total_work / (8 * std::max<int64_t>(1, at::get_num_threads())));
}

// Channels per task from which the feature gradient is accumulated pixel-major.
constexpr int64_t kChannelBlock = 8;

void check_int32_plane(const at::Tensor& f, int64_t i) {
  const int64_t extent = (f.size(2) - 1) * f.stride(2) + (f.size(3) - 1) * f.stride(3) + f.stride(2) + f.stride(3);
  TORCH_CHECK(extent < (int64_t(1) << 31), "warp_features (cpu): features[", i,
              "] has a channel plane spanning more than 2^31 elements, which the CPU kernel does not support");
}

// How one map's work is cut into tasks; all maps' tasks run in one parallel region (one barrier
// per call: on a busy machine every barrier can cost a scheduler time slice).
struct MapTasks {
  int64_t C = 0, Hf = 0, Wf = 0;
  int64_t rows = 1, blocks = 0, cchunks = 0, cper = 0;  // row blocks x channel chunks (per sample)
  int64_t first = 0, count = 0;                         // task range
};

int64_t map_of_task(const std::vector<MapTasks>& maps, int64_t task) {
  int64_t m = 0;
  while (m + 1 < static_cast<int64_t>(maps.size()) && task >= maps[m + 1].first) ++m;
  return m;
}

std::vector<at::Tensor> warp_features_forward_cpu(at::TensorList features, const at::Tensor& grid_in,
                                                  int64_t mode) {
  const bool nearest = check_warp_features_forward(features, grid_in, mode);
  std::vector<at::Tensor> outs;
  if (features.empty()) return outs;
  const at::Tensor grid = grid_in.contiguous();
  const int64_t N = grid.size(0), h = grid.size(1), w = grid.size(2);
  std::vector<MapTasks> plan(features.size());
  int64_t tasks = 0, work = 0;
  for (const at::Tensor& f : features) work += N * f.size(1) * f.size(2) * f.size(3);
  const int64_t target = task_target(work);
  for (size_t m = 0; m < features.size(); ++m) {
    const at::Tensor& f = features[m];
    TORCH_CHECK(f.device().is_cpu(), "warp_features (cpu): features must be CPU tensors");
    MapTasks& t = plan[m];
    t.C = f.size(1), t.Hf = f.size(2), t.Wf = f.size(3);
    outs.push_back(at::empty({N, t.C, t.Hf, t.Wf}, f.options()));
    t.first = tasks;
    if (N * t.C == 0) continue;
    check_int32_plane(f, static_cast<int64_t>(m));
    t.rows = std::max<int64_t>(1, std::min<int64_t>(t.Hf, 2048 / t.Wf));
    t.blocks = (t.Hf + t.rows - 1) / t.rows;
    const int64_t block_work = t.C * t.rows * t.Wf;  // one sample, one row block, all channels
    t.cchunks = std::max<int64_t>(1, std::min<int64_t>(t.C, (block_work + target - 1) / target));
    t.cper = (t.C + t.cchunks - 1) / t.cchunks;
    t.count = N * t.blocks * t.cchunks;
    tasks += t.count;
  }
  if (tasks == 0) return outs;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features[0].scalar_type(), "warp_features_forward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* gp = grid.const_data_ptr<acc_t>();
    std::vector<AxisResize<acc_t>> ry(features.size()), rx(features.size());
    for (size_t m = 0; m < features.size(); ++m) {
      ry[m].build(h, plan[m].Hf, nearest);
      rx[m].build(w, plan[m].Wf, nearest);
    }
    at::parallel_for(0, tasks, grain_for(work / tasks), [&](int64_t begin, int64_t end) {
      run_vectorized([&]() FASTMOTION_ALWAYS_INLINE {
        TapBlock<acc_t> tb;
        for (int64_t task = begin; task < end; ++task) {
          const int64_t m = map_of_task(plan, task);
          const MapTasks& t = plan[m];
          const at::Tensor& f = features[m];
          const int64_t local = task - t.first;
          const int64_t n = local / (t.blocks * t.cchunks), b = (local / t.cchunks) % t.blocks;
          const int64_t cc = local % t.cchunks;
          const int64_t y0 = b * t.rows, y1 = std::min(t.Hf, y0 + t.rows);
          const int64_t c0 = cc * t.cper, c1 = std::min(t.C, c0 + t.cper);
          if (c0 >= c1) continue;
          const int32_t sh = static_cast<int32_t>(f.stride(2)), sw = static_cast<int32_t>(f.stride(3));
          build_taps(gp + n * h * w * 2, w, ry[m], rx[m], nearest, t.Hf, t.Wf, sh, sw, y0, y1, tb);
          const scalar_t* fp = f.const_data_ptr<scalar_t>() + n * f.stride(0);
          scalar_t* op = outs[m].mutable_data_ptr<scalar_t>();
          for (int64_t c = c0; c < c1; ++c) {
            gather_block<scalar_t, acc_t>(fp + c * f.stride(1), tb, (y1 - y0) * t.Wf,
                                          op + ((n * t.C + c) * t.Hf + y0) * t.Wf);
          }
        }
      });
    });
  });
  return outs;
}

// Pushes one map's per-pixel coordinate gradient (summed over channels) back through the resize
// into grad_grid_n (h, w, 2).
template <typename acc_t>
void resize_transpose(const acc_t* gc, int64_t Hf, int64_t Wf, int64_t w, const AxisResize<acc_t>& ry,
                      const AxisResize<acc_t>& rx, acc_t* gg) {
  const acc_t sx = acc_t(Wf - 1) / acc_t(2), sy = acc_t(Hf - 1) / acc_t(2);
  for (int64_t y = 0; y < Hf; ++y) {
    const int64_t rows[2] = {ry.i0[y], ry.i1[y]};
    const acc_t wr[2] = {ry.w0[y], ry.w1[y]};
    for (int64_t x = 0; x < Wf; ++x) {
      const acc_t vx = gc[(y * Wf + x) * 2] * sx, vy = gc[(y * Wf + x) * 2 + 1] * sy;
      const int64_t cols[2] = {rx.i0[x], rx.i1[x]};
      const acc_t wc[2] = {rx.w0[x], rx.w1[x]};
      for (int a = 0; a < 2; ++a) {
        for (int b = 0; b < 2; ++b) {
          const acc_t wt = wr[a] * wc[b];
          if (wt == acc_t(0)) continue;
          acc_t* d = gg + (rows[a] * w + cols[b]) * 2;
          d[0] += wt * vx;
          d[1] += wt * vy;
        }
      }
    }
  }
}

std::tuple<std::vector<at::Tensor>, at::Tensor> warp_features_backward_cpu(at::TensorList grad_outs,
                                                                           at::TensorList features_in,
                                                                           const at::Tensor& grid_in,
                                                                           int64_t mode, bool features_requires_grad,
                                                                           bool grid_requires_grad) {
  const bool nearest = check_warp_features_backward(grad_outs, features_in, grid_in, mode);
  const at::Tensor grid = grid_in.contiguous();
  const int64_t N = grid.size(0), h = grid.size(1), w = grid.size(2);
  std::vector<at::Tensor> grad_features;
  at::Tensor grad_grid = grid_requires_grad ? at::zeros({N, h, w, 2}, grid.options()) : at::empty({0}, grid.options());
  if (features_in.empty()) return {grad_features, grad_grid};
  // The backward reads contiguous planes, so one set of tap offsets serves reads and scatters;
  // without feature gradients (no scatters) an expanded map is read through its strides instead
  // of being materialised.
  // A task owns (map, n, a chunk of channels): it scatters into those channels' gradients (no
  // other task writes there) and writes per-pixel coordinate-gradient partials of its chunk.
  std::vector<at::Tensor> features, grads;
  std::vector<MapTasks> plan(features_in.size());
  int64_t tasks = 0, work = 0;
  for (const at::Tensor& f : features_in) work += N * f.size(1) * f.size(2) * f.size(3);
  const int64_t target = task_target(work);
  for (size_t m = 0; m < features_in.size(); ++m) {
    TORCH_CHECK(features_in[m].device().is_cpu(), "warp_features_backward (cpu): features must be CPU tensors");
    const at::Tensor& f_in = features_in[m];
    bool broadcast = false;
    for (int64_t d = 0; d < f_in.dim(); ++d) broadcast |= f_in.stride(d) == 0 && f_in.size(d) > 1;
    features.push_back(broadcast && !features_requires_grad ? f_in : f_in.contiguous());
    grads.push_back(grad_outs[m].contiguous());
    MapTasks& t = plan[m];
    t.C = features[m].size(1), t.Hf = features[m].size(2), t.Wf = features[m].size(3);
    if (features_requires_grad) grad_features.push_back(at::empty({N, t.C, t.Hf, t.Wf}, features[m].options()));
    t.first = tasks;
    if (N * t.C == 0) continue;
    check_int32_plane(features[m], static_cast<int64_t>(m));
    t.rows = std::max<int64_t>(1, std::min<int64_t>(t.Hf, 1024 / t.Wf));
    const int64_t sample_work = t.C * t.Hf * t.Wf;
    t.cchunks = std::max<int64_t>(1, std::min<int64_t>(t.C, (sample_work + target - 1) / target));
    t.cper = (t.C + t.cchunks - 1) / t.cchunks;
    t.count = N * t.cchunks;
    tasks += t.count;
  }
  if (tasks == 0) return {grad_features, grad_grid};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features[0].scalar_type(), "warp_features_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t* gridp = grid.const_data_ptr<acc_t>();
    std::vector<AxisResize<acc_t>> ry(features.size()), rx(features.size());
    // per map: coordinate-gradient partials (N, chunks, Hf * Wf, 2), reduced after the region
    std::vector<std::vector<acc_t>> partial(features.size());
    for (size_t m = 0; m < features.size(); ++m) {
      ry[m].build(h, plan[m].Hf, nearest);
      rx[m].build(w, plan[m].Wf, nearest);
      if (grid_requires_grad) partial[m].resize(N * plan[m].cchunks * plan[m].Hf * plan[m].Wf * 2);
    }
    at::parallel_for(0, tasks, grain_for(work / tasks), [&](int64_t begin, int64_t end) {
      run_vectorized([&]() FASTMOTION_ALWAYS_INLINE {
        TapBlock<acc_t> tb;
        std::vector<acc_t> gacc, gcx, gcy, gbuf;
        std::vector<int32_t> tgt;
        for (int64_t task = begin; task < end; ++task) {
          const int64_t m = map_of_task(plan, task);
          const MapTasks& t = plan[m];
          const int64_t local = task - t.first;
          const int64_t n = local / t.cchunks, cc = local % t.cchunks;
          const int64_t c0 = cc * t.cper, c1 = std::min(t.C, c0 + t.cper);
          if (c0 >= c1) continue;
          const int64_t Hf = t.Hf, Wf = t.Wf, C = t.C;
          const int64_t pstride = Hf * Wf + 1;  // gradient planes with a trash slot
          const scalar_t* fp = features[m].const_data_ptr<scalar_t>();
          // the map's strides: contiguous planes unless an expanded map is read as is (see above)
          const int64_t fsn = features[m].stride(0), fsc = features[m].stride(1);
          const int32_t fsh = static_cast<int32_t>(features[m].stride(2));
          const int32_t fsw = static_cast<int32_t>(features[m].stride(3));
          const scalar_t* gp = grads[m].const_data_ptr<scalar_t>();
          // 8+ channels: accumulate pixel-major (channel vectors); fewer: one plane per channel
          const int64_t width = c1 - c0;  // channels of this task
          const bool channel_major = width < kChannelBlock;
          if (features_requires_grad) gacc.assign(width * pstride, acc_t(0));
          for (int64_t y0 = 0; y0 < Hf; y0 += t.rows) {
            const int64_t y1 = std::min(Hf, y0 + t.rows), np = (y1 - y0) * Wf;
            build_taps(gridp + n * h * w * 2, w, ry[m], rx[m], nearest, Hf, Wf, fsh, fsw, y0, y1, tb);
            if (grid_requires_grad) {
              gcx.assign(np, acc_t(0));
              gcy.assign(np, acc_t(0));
            }
            if (features_requires_grad) {
              gbuf.resize(channel_major ? 2 * np : np * width);
              tgt.resize(np);
            }
            for (int64_t c = c0; c < c1; ++c) {
              const int64_t plane = (n * C + c) * Hf * Wf;
              const scalar_t* gpl = gp + plane + y0 * Wf;
              if (grid_requires_grad) {
                coord_grad_block<scalar_t, acc_t>(fp + n * fsn + c * fsc, gpl, tb, np, gcx.data(), gcy.data());
              }
              if (features_requires_grad && channel_major) {
                scatter_block<scalar_t, acc_t>(gpl, tb, np, static_cast<int32_t>(Hf * Wf), gbuf.data(), tgt.data(),
                                               gacc.data() + (c - c0) * pstride);
              } else if (features_requires_grad) {  // transpose this channel into the (np, cc) block
                acc_t* gt = gbuf.data() + (c - c0);
                for (int64_t p = 0; p < np; ++p) gt[p * width] = static_cast<acc_t>(gpl[p]);
              }
            }
            if (features_requires_grad && !channel_major) {
              scatter_block_channels<acc_t>(gbuf.data(), tb, np, width, static_cast<int32_t>(Hf * Wf), tgt.data(),
                                            gacc.data());
            }
            if (grid_requires_grad) {
              acc_t* part = partial[m].data() + ((n * t.cchunks + cc) * Hf * Wf + y0 * Wf) * 2;
              for (int64_t p = 0; p < np; ++p) {
                part[2 * p] = gcx[p];
                part[2 * p + 1] = gcy[p];
              }
            }
          }
          if (features_requires_grad) {
            scalar_t* gfp = grad_features[m].mutable_data_ptr<scalar_t>();
            for (int64_t c = c0; c < c1; ++c) {
              scalar_t* dst = gfp + (n * C + c) * Hf * Wf;
              if (channel_major) {
                const acc_t* src = gacc.data() + (c - c0) * pstride;
                for (int64_t i = 0; i < Hf * Wf; ++i) dst[i] = static_cast<scalar_t>(src[i]);
              } else {
                const acc_t* src = gacc.data() + (c - c0);
                for (int64_t i = 0; i < Hf * Wf; ++i) dst[i] = static_cast<scalar_t>(src[i * width]);
              }
            }
          }
        }
      });
    });
    if (grid_requires_grad) {
      // per sample, maps in order, chunks in order: deterministic
      acc_t* gg = grad_grid.mutable_data_ptr<acc_t>();
      int64_t pixels = 0;
      for (const MapTasks& t : plan) pixels += t.cchunks * t.Hf * t.Wf;
      at::parallel_for(0, N, grain_for(2 * pixels), [&](int64_t begin, int64_t end) {
        std::vector<acc_t> gc;
        for (int64_t n = begin; n < end; ++n) {
          for (size_t m = 0; m < features.size(); ++m) {
            const MapTasks& t = plan[m];
            if (t.count == 0) continue;
            const int64_t hw = t.Hf * t.Wf;
            gc.assign(hw * 2, acc_t(0));
            for (int64_t cc = 0; cc < t.cchunks; ++cc) {
              const acc_t* part = partial[m].data() + (n * t.cchunks + cc) * hw * 2;
              for (int64_t i = 0; i < hw * 2; ++i) gc[i] += part[i];
            }
            resize_transpose(gc.data(), t.Hf, t.Wf, w, ry[m], rx[m], gg + n * h * w * 2);
          }
        }
      });
    }
  });
  return {grad_features, grad_grid};
}

}  // namespace
}  // namespace cpu
}  // namespace fastmotion

FASTMOTION_REGISTER_CPU(warp_features, fastmotion::cpu::warp_features_forward_cpu,
                        fastmotion::cpu::warp_features_backward_cpu)
