// CPU kernels of warp_features: every feature map sampled at one grid resized to its size, with
// the resize (nearest, or linear with align_corners=False) folded into the sampling.
//
// Forward: a task owns (n, a block of output rows, a range of channels). It computes each
// pixel's resized grid value and its four taps once (offsets into a channel plane, weights with
// out-of-image taps zeroed), then runs the gather for every channel of its range. No resized
// grid is ever stored; any memory layout of the features works (offsets use their strides).
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
#include "ops/warp_features.h"

#define FM_HOT __attribute__((target_clones("avx2,fma", "default")))

namespace fastmotion {
namespace cpu {

// The four taps (00, 01, 10, 11 = (row, column) offsets) of a block of output pixels.
template <typename acc_t>
struct TapBlock {
  std::vector<int64_t> off[4];
  std::vector<acc_t> w[4];   // bilinear weights, zero for taps outside the map
  std::vector<acc_t> in[4];  // 1 inside the map, 0 outside
  std::vector<acc_t> fx, fy;

  void resize(int64_t n) {
    for (int t = 0; t < 4; ++t) {
      off[t].resize(n);
      w[t].resize(n);
      in[t].resize(n);
    }
    fx.resize(n);
    fy.resize(n);
  }
};

// The grid resized to (Hf, Wf) at output pixel (y, x) of sample n: grid (N, h, w, 2), contiguous.
template <typename acc_t>
inline void resized_grid_value(const acc_t* grid_n, int64_t h, int64_t w, int64_t Hf, int64_t Wf, bool nearest,
                               int64_t y, int64_t x, acc_t* gx, acc_t* gy) {
  if (nearest) {
    const acc_t* g = grid_n + (nearest_source_index(y, h, Hf) * w + nearest_source_index(x, w, Wf)) * 2;
    *gx = g[0];
    *gy = g[1];
    return;
  }
  const ResizeTaps<acc_t> ry = linear_resize_taps<acc_t>(y, h, Hf), rx = linear_resize_taps<acc_t>(x, w, Wf);
  const acc_t* g00 = grid_n + (ry.i0 * w + rx.i0) * 2;
  const acc_t* g01 = grid_n + (ry.i0 * w + rx.i1) * 2;
  const acc_t* g10 = grid_n + (ry.i1 * w + rx.i0) * 2;
  const acc_t* g11 = grid_n + (ry.i1 * w + rx.i1) * 2;
  *gx = ry.w0 * (rx.w0 * g00[0] + rx.w1 * g01[0]) + ry.w1 * (rx.w0 * g10[0] + rx.w1 * g11[0]);
  *gy = ry.w0 * (rx.w0 * g00[1] + rx.w1 * g01[1]) + ry.w1 * (rx.w0 * g10[1] + rx.w1 * g11[1]);
}

// Taps of output rows [y0, y1) of a (Hf, Wf) map with plane strides (sh, sw).
template <typename acc_t>
void build_taps(const acc_t* grid_n, int64_t h, int64_t w, int64_t Hf, int64_t Wf, int64_t sh, int64_t sw,
                bool nearest, int64_t y0, int64_t y1, TapBlock<acc_t>& tb) {
  tb.resize((y1 - y0) * Wf);
  int64_t p = 0;
  for (int64_t y = y0; y < y1; ++y) {
    for (int64_t x = 0; x < Wf; ++x, ++p) {
      acc_t gx, gy;
      resized_grid_value(grid_n, h, w, Hf, Wf, nearest, y, x, &gx, &gy);
      const AxisTaps<acc_t> tx = axis_taps<acc_t>(unnormalize_align_corners<acc_t>(gx, Wf), Wf);
      const AxisTaps<acc_t> ty = axis_taps<acc_t>(unnormalize_align_corners<acc_t>(gy, Hf), Hf);
      const bool cx[2] = {tx.in0(Wf), tx.in1(Wf)}, cy[2] = {ty.in0(Hf), ty.in1(Hf)};
      const acc_t wx[2] = {acc_t(1) - tx.frac, tx.frac}, wy[2] = {acc_t(1) - ty.frac, ty.frac};
      for (int t = 0; t < 4; ++t) {
        const int a = t >> 1, b = t & 1;
        const bool inside = cy[a] && cx[b];
        tb.off[t][p] = inside ? (ty.i0 + a) * sh + (tx.i0 + b) * sw : 0;
        tb.in[t][p] = inside ? acc_t(1) : acc_t(0);
        tb.w[t][p] = inside ? wy[a] * wx[b] : acc_t(0);
      }
      tb.fx[p] = tx.frac;
      tb.fy[p] = ty.frac;
    }
  }
}

template <typename scalar_t, typename acc_t>
FM_HOT void gather_block(const scalar_t* plane, const TapBlock<acc_t>& tb, int64_t np, scalar_t* out) {
  const int64_t *o0 = tb.off[0].data(), *o1 = tb.off[1].data(), *o2 = tb.off[2].data(), *o3 = tb.off[3].data();
  const acc_t *w0 = tb.w[0].data(), *w1 = tb.w[1].data(), *w2 = tb.w[2].data(), *w3 = tb.w[3].data();
  for (int64_t p = 0; p < np; ++p) {
    const acc_t v = w0[p] * static_cast<acc_t>(plane[o0[p]]) + w1[p] * static_cast<acc_t>(plane[o1[p]]) +
                    w2[p] * static_cast<acc_t>(plane[o2[p]]) + w3[p] * static_cast<acc_t>(plane[o3[p]]);
    out[p] = static_cast<scalar_t>(v);
  }
}

// d(sample)/d(coordinate) of one channel, weighted by grad_out, added to (gcx, gcy) per pixel.
template <typename scalar_t, typename acc_t>
FM_HOT void coord_grad_block(const scalar_t* plane, const scalar_t* g, const TapBlock<acc_t>& tb, int64_t np,
                             acc_t* gcx, acc_t* gcy) {
  for (int64_t p = 0; p < np; ++p) {
    const acc_t v00 = tb.in[0][p] * static_cast<acc_t>(plane[tb.off[0][p]]);
    const acc_t v01 = tb.in[1][p] * static_cast<acc_t>(plane[tb.off[1][p]]);
    const acc_t v10 = tb.in[2][p] * static_cast<acc_t>(plane[tb.off[2][p]]);
    const acc_t v11 = tb.in[3][p] * static_cast<acc_t>(plane[tb.off[3][p]]);
    const acc_t fx = tb.fx[p], fy = tb.fy[p];
    const acc_t gv = static_cast<acc_t>(g[p]);
    gcx[p] += gv * ((acc_t(1) - fy) * (v01 - v00) + fy * (v11 - v10));
    gcy[p] += gv * ((acc_t(1) - fx) * (v10 - v00) + fx * (v11 - v01));
  }
}

// grad_out scattered into one channel's feature gradient (acc_t plane, contiguous (Hf, Wf) when
// the taps were built with the contiguous strides).
template <typename scalar_t, typename acc_t>
void scatter_block(const scalar_t* g, const TapBlock<acc_t>& tb, int64_t np, acc_t* gplane) {
  for (int64_t p = 0; p < np; ++p) {
    const acc_t gv = static_cast<acc_t>(g[p]);
    for (int t = 0; t < 4; ++t) {
      if (tb.in[t][p] != acc_t(0)) gplane[tb.off[t][p]] += tb.w[t][p] * gv;
    }
  }
}

namespace {

int64_t wanted_tasks() { return 4 * std::max<int64_t>(1, at::get_num_threads()); }

std::vector<at::Tensor> warp_features_forward_cpu(at::TensorList features, const at::Tensor& grid_in,
                                                  c10::string_view mode) {
  check_warp_features_forward(features, grid_in, mode);
  const bool nearest = warp_features_nearest(mode);
  std::vector<at::Tensor> outs;
  outs.reserve(features.size());
  const at::Tensor grid = grid_in.contiguous();
  const int64_t N = grid.size(0), h = grid.size(1), w = grid.size(2);
  for (const at::Tensor& f : features) {
    TORCH_CHECK(f.device().is_cpu(), "warp_features (cpu): features must be CPU tensors");
    const int64_t C = f.size(1), Hf = f.size(2), Wf = f.size(3);
    at::Tensor out = at::empty({N, C, Hf, Wf}, f.options());
    outs.push_back(out);
    if (out.numel() == 0) continue;
    const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(Hf, 2048 / Wf));
    const int64_t blocks = (Hf + rows - 1) / rows;
    const int64_t cchunks = std::max<int64_t>(1, std::min<int64_t>(C, (wanted_tasks() + N * blocks - 1) / (N * blocks)));
    const int64_t cper = (C + cchunks - 1) / cchunks;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "warp_features_forward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* fp = f.const_data_ptr<scalar_t>();
      const acc_t* gp = grid.const_data_ptr<acc_t>();
      scalar_t* op = out.mutable_data_ptr<scalar_t>();
      const int64_t sn = f.stride(0), sc = f.stride(1), sh = f.stride(2), sw = f.stride(3);
      at::parallel_for(0, N * blocks * cchunks, 1, [&](int64_t begin, int64_t end) {
        TapBlock<acc_t> tb;
        for (int64_t task = begin; task < end; ++task) {
          const int64_t n = task / (blocks * cchunks), b = (task / cchunks) % blocks, cc = task % cchunks;
          const int64_t y0 = b * rows, y1 = std::min(Hf, y0 + rows);
          const int64_t c0 = cc * cper, c1 = std::min(C, c0 + cper);
          if (c0 >= c1) continue;
          build_taps(gp + n * h * w * 2, h, w, Hf, Wf, sh, sw, nearest, y0, y1, tb);
          for (int64_t c = c0; c < c1; ++c) {
            gather_block<scalar_t, acc_t>(fp + n * sn + c * sc, tb, (y1 - y0) * Wf, op + ((n * C + c) * Hf + y0) * Wf);
          }
        }
      });
    });
  }
  return outs;
}

// Pushes one map's per-pixel coordinate gradient (already summed over channels) back through the
// resize into grad_grid_n (h, w, 2).
template <typename acc_t>
void resize_transpose(const acc_t* gc, int64_t Hf, int64_t Wf, int64_t h, int64_t w, bool nearest, acc_t* gg) {
  const acc_t sx = acc_t(Wf - 1) / acc_t(2), sy = acc_t(Hf - 1) / acc_t(2);
  for (int64_t y = 0; y < Hf; ++y) {
    for (int64_t x = 0; x < Wf; ++x) {
      const acc_t vx = gc[(y * Wf + x) * 2] * sx, vy = gc[(y * Wf + x) * 2 + 1] * sy;
      if (nearest) {
        acc_t* d = gg + (nearest_source_index(y, h, Hf) * w + nearest_source_index(x, w, Wf)) * 2;
        d[0] += vx;
        d[1] += vy;
        continue;
      }
      const ResizeTaps<acc_t> ry = linear_resize_taps<acc_t>(y, h, Hf), rx = linear_resize_taps<acc_t>(x, w, Wf);
      const int64_t rows[2] = {ry.i0, ry.i1}, cols[2] = {rx.i0, rx.i1};
      const acc_t wr[2] = {ry.w0, ry.w1}, wc[2] = {rx.w0, rx.w1};
      for (int a = 0; a < 2; ++a) {
        for (int b = 0; b < 2; ++b) {
          acc_t* d = gg + (rows[a] * w + cols[b]) * 2;
          const acc_t wt = wr[a] * wc[b];
          d[0] += wt * vx;
          d[1] += wt * vy;
        }
      }
    }
  }
}

std::tuple<std::vector<at::Tensor>, at::Tensor> warp_features_backward_cpu(at::TensorList grad_outs,
                                                                           at::TensorList features,
                                                                           const at::Tensor& grid_in,
                                                                           c10::string_view mode, bool features_grad,
                                                                           bool grid_grad) {
  check_warp_features_backward(grad_outs, features, grid_in, mode);
  const bool nearest = warp_features_nearest(mode);
  const at::Tensor grid = grid_in.contiguous();
  const int64_t N = grid.size(0), h = grid.size(1), w = grid.size(2);
  std::vector<at::Tensor> grad_features;
  at::Tensor grad_grid = grid_grad ? at::zeros({N, h, w, 2}, grid.options()) : at::empty({0}, grid.options());
  // per map: partial coordinate gradients (N, chunks, Hf * Wf, 2), reduced after all maps
  std::vector<std::vector<char>> partial_bytes(features.size());
  std::vector<int64_t> chunks_of(features.size(), 0);
  for (size_t m = 0; m < features.size(); ++m) {
    const at::Tensor& f = features[m];
    TORCH_CHECK(f.device().is_cpu(), "warp_features_backward (cpu): features must be CPU tensors");
    const at::Tensor g = grad_outs[m].contiguous();
    const int64_t C = f.size(1), Hf = f.size(2), Wf = f.size(3);
    at::Tensor gf;
    if (features_grad) {
      gf = at::empty({N, C, Hf, Wf}, f.options());
      grad_features.push_back(gf);
    }
    if (N * C == 0) continue;
    const int64_t cchunks = std::max<int64_t>(1, std::min<int64_t>(C, (wanted_tasks() + N - 1) / N));
    const int64_t cper = (C + cchunks - 1) / cchunks;
    chunks_of[m] = cchunks;
    const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(Hf, 1024 / Wf));
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.scalar_type(), "warp_features_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      std::vector<char>& bytes = partial_bytes[m];
      if (grid_grad) bytes.assign(N * cchunks * Hf * Wf * 2 * sizeof(acc_t), 0);
      acc_t* partial = reinterpret_cast<acc_t*>(bytes.data());
      const scalar_t* fp = f.const_data_ptr<scalar_t>();
      const scalar_t* gp = g.const_data_ptr<scalar_t>();
      scalar_t* gfp = features_grad ? gf.mutable_data_ptr<scalar_t>() : nullptr;
      const acc_t* gridp = grid.const_data_ptr<acc_t>();
      const int64_t sn = f.stride(0), sc = f.stride(1), sh = f.stride(2), sw = f.stride(3);
      const bool contiguous_plane = (sh == Wf || Hf == 1) && (sw == 1 || Wf == 1);
      at::parallel_for(0, N * cchunks, 1, [&](int64_t begin, int64_t end) {
        TapBlock<acc_t> tb, tbc;  // taps with the features' strides / with contiguous strides
        std::vector<acc_t> gacc, gcx, gcy;
        for (int64_t task = begin; task < end; ++task) {
          const int64_t n = task / cchunks, cc = task % cchunks;
          const int64_t c0 = cc * cper, c1 = std::min(C, c0 + cper);
          if (c0 >= c1) continue;
          if (features_grad) gacc.assign((c1 - c0) * Hf * Wf, acc_t(0));
          for (int64_t y0 = 0; y0 < Hf; y0 += rows) {
            const int64_t y1 = std::min(Hf, y0 + rows), np = (y1 - y0) * Wf;
            const acc_t* grid_n = gridp + n * h * w * 2;
            build_taps(grid_n, h, w, Hf, Wf, sh, sw, nearest, y0, y1, tb);
            if (features_grad && !contiguous_plane) build_taps(grid_n, h, w, Hf, Wf, Wf, int64_t(1), nearest, y0, y1, tbc);
            if (grid_grad) {
              gcx.assign(np, acc_t(0));
              gcy.assign(np, acc_t(0));
            }
            for (int64_t c = c0; c < c1; ++c) {
              const scalar_t* gpl = gp + ((n * C + c) * Hf + y0) * Wf;
              if (grid_grad) coord_grad_block<scalar_t, acc_t>(fp + n * sn + c * sc, gpl, tb, np, gcx.data(), gcy.data());
              if (features_grad) {
                scatter_block<scalar_t, acc_t>(gpl, contiguous_plane ? tb : tbc, np, gacc.data() + (c - c0) * Hf * Wf);
              }
            }
            if (grid_grad) {
              acc_t* part = partial + ((n * cchunks + cc) * Hf * Wf + y0 * Wf) * 2;
              for (int64_t p = 0; p < np; ++p) {
                part[2 * p] = gcx[p];
                part[2 * p + 1] = gcy[p];
              }
            }
          }
          if (features_grad) {
            scalar_t* dst = gfp + (n * C + c0) * Hf * Wf;
            for (int64_t i = 0; i < (c1 - c0) * Hf * Wf; ++i) dst[i] = static_cast<scalar_t>(gacc[i]);
          }
        }
      });
    });
  }
  if (grid_grad && N > 0) {
    AT_DISPATCH_FLOATING_TYPES(grid.scalar_type(), "warp_features_grid_grad_cpu", [&] {
      using acc_t = scalar_t;
      acc_t* gg = grad_grid.mutable_data_ptr<acc_t>();
      at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
        std::vector<acc_t> gc;
        for (int64_t n = begin; n < end; ++n) {
          for (size_t m = 0; m < features.size(); ++m) {
            const int64_t cchunks = chunks_of[m];
            if (cchunks == 0) continue;
            const int64_t Hf = features[m].size(2), Wf = features[m].size(3);
            const acc_t* partial = reinterpret_cast<const acc_t*>(partial_bytes[m].data());
            gc.assign(Hf * Wf * 2, acc_t(0));
            for (int64_t cc = 0; cc < cchunks; ++cc) {
              const acc_t* part = partial + (n * cchunks + cc) * Hf * Wf * 2;
              for (int64_t i = 0; i < Hf * Wf * 2; ++i) gc[i] += part[i];
            }
            resize_transpose(gc.data(), Hf, Wf, h, w, nearest, gg + n * h * w * 2);
          }
        }
      });
    });
  }
  return {grad_features, grad_grid};
}

}  // namespace
}  // namespace cpu
}  // namespace fastmotion

TORCH_LIBRARY_IMPL(fastmotion, CPU, m) {
  m.impl("warp_features_forward", &fastmotion::cpu::warp_features_forward_cpu);
  m.impl("warp_features_backward", &fastmotion::cpu::warp_features_backward_cpu);
}
