// winograd_conv2d: float32 CPU inference convolution with Winograd's minimal filtering on
// channels_last activations (fastmotion/models/winograd_conv.py), for 3x3 convolutions and for the
// 3x3 convolutions of nearest 2x up-sampled inputs (the decoders' up-sampling layers).
//
// F(2x2, 3x3): each 2x2 block of outputs ("tile") reads a 4x4 input patch d. With g a filter and
// B, G, A the transform matrices, the tile is A^T [(G g G^T) . (B^T d B)] A, so the Cin -> Cout
// channel mixing becomes 16 independent GEMMs, tiles x Cin times Cin x Cout, over transformed
// inputs V and pre-transformed weights U (computed once, in float64, in Python): 16 multiply-adds
// per 4 outputs instead of 36. The points are 0, 1, -1 and infinity, so the input and output
// transforms only add and subtract and the rounding error stays that of a direct convolution
// (tests/models/test_winograd_conv.py); larger tiles need points like 2 and 1/2, which multiply it.
//
// Tiles are processed in blocks of tile rows small enough that the block's V and GEMM output stay
// in the core's L2 cache: input transform -> GEMMs (oneDNN's brgemm micro-kernel through
// at::native::cpublas) -> output transform with the epilogue (bias, then either a residual add or
// a ReLU; optionally an input pre-op relu(scale * x + shift), a folded BatchNorm + ReLU applied to
// in-image pixels only, so the zero padding stays zero).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/native/CPUBlas.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "ops/cpu/bf16_gemm.h"
#include "ops/cpu/vec_math.h"

namespace fastmotion {
namespace cpu {

namespace {

// The transforms are add / subtract loops bound by load and store throughput: an AVX-512 copy as
// well as vec_math.h's AVX2 and baseline ones (additions round the same in every copy).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WINOGRAD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define WINOGRAD_CLONES
#endif

constexpr int64_t kLanes = 16;   // channel chunk of the inner loops (one AVX-512 / two AVX2 vectors)
constexpr int64_t kPanel = 48;  // output columns of a weight panel (one GEMM call)
static_assert(kPanel == kBf16PanelWidth, "float32 and bfloat16 weights share the panel width");

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The two tilings:
//   Conv3x3:   F(2x2, 3x3): 4x4 input patches, one every 2 pixels, 2x2 outputs each.
//   Upsampled: F(2x2, 3x3) on the nearest 2x up-sampled input, read from the low-resolution one:
//              the 4x4 up-sampled patch of output tile (2i, 2j) is low-res rows i-1, i, i, i+1
//              (and columns), whose transform (x[i-1] - x[i], 2 x[i], 0, x[i] - x[i+1]) has a zero
//              component: 3x3 low-res patches, one every pixel, 9 GEMMs instead of 16 and 9 of the
//              16 weight planes (the 2 folded into them). Each low-res pixel's four outputs cost 9
//              multiply-adds a channel pair, where the sub-pixel phase kernels take 16 and the
//              up-sampled 3x3 convolution 36, and the up-sampled input is never formed.
enum class Tiling { Conv3x3, Upsampled };

template <Tiling K>
struct Traits {
  // patch side, outputs a tile side, input pixels a tile
  static constexpr int T = K == Tiling::Conv3x3 ? 4 : 3, m = 2, in_step = K == Tiling::Conv3x3 ? 2 : 1;
};

// The 1-D transforms, on one channel:
//   input  B^T d: T values in, T out;  output A^T m: T in, 2 out.
//   Conv3x3:   v = (d0 - d2, d1 + d2, d2 - d1, d1 - d3);  y = (m0 + m1 + m2, m1 - m2 - m3)
//   Upsampled: v = (d0 - d1, d1, d1 - d2);                y = (m0 + m1, m1 - m2)
template <Tiling K>
struct Transform1d {
  static constexpr int T = Traits<K>::T;
  template <typename F>  // float, or a vector of floats
  static FASTMOTION_INLINE void input(const F* d, F* v) {
    if constexpr (K == Tiling::Upsampled) {
      v[0] = d[0] - d[1];
      v[1] = d[1];
      v[2] = d[1] - d[2];
    } else {
      v[0] = d[0] - d[2];
      v[1] = d[1] + d[2];
      v[2] = d[2] - d[1];
      v[3] = d[1] - d[3];
    }
  }
  static FASTMOTION_INLINE void output(const float* m, float* y) {
    if constexpr (K == Tiling::Upsampled) {
      y[0] = m[0] + m[1];
      y[1] = m[1] - m[2];
    } else {
      y[0] = m[0] + m[1] + m[2];
      y[1] = m[1] - m[2] - m[3];
    }
  }
};

// bfloat16 <-> float32 on the raw 16 bits (loops over these vectorize; c10::BFloat16's do not
// everywhere). Rounding is to nearest even, NaN stays NaN.
FASTMOTION_INLINE float bf16_to_float(uint16_t v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
FASTMOTION_INLINE uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  return (bits & 0x7fffffffu) > 0x7f800000u ? static_cast<uint16_t>((bits >> 16) | 0x40u) : static_cast<uint16_t>(rounded);
}
FASTMOTION_INLINE float load_value(const float* p, int64_t i) { return p[i]; }
FASTMOTION_INLINE float load_value(const uint16_t* p, int64_t i) { return bf16_to_float(p[i]); }
FASTMOTION_INLINE void store_value(float* p, int64_t i, float v) { p[i] = v; }
FASTMOTION_INLINE void store_value(uint16_t* p, int64_t i, float v) { p[i] = float_to_bf16(v); }

// A 1-D transform applied lane-wise to vectors of n floats (n a multiple of kLanes), through
// strided views: in[j] = in0 + j * in_step (T of them), out[k] = out0 + k * out_step (T for the
// input transform, 2 for the output one).
template <Tiling K, bool kInput>
FASTMOTION_INLINE void transform_1d(const float* __restrict in, int64_t in_step, float* __restrict out,
                                    int64_t out_step, int64_t n) {
  constexpr int T = Traits<K>::T, n_out = kInput ? T : 2;
  for (int64_t c0 = 0; c0 < n; c0 += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const int64_t c = c0 + l;
      float d[T], v[T];
      for (int j = 0; j < T; ++j) d[j] = in[j * in_step + c];
      if constexpr (kInput) {
        Transform1d<K>::input(d, v);
      } else {
        Transform1d<K>::output(d, v);
      }
      for (int k = 0; k < n_out; ++k) out[k * out_step + c] = v[k];
    }
  }
}

// body(k) for k in [0, n) in chunks of kLanes, all full width where n >= kLanes: the last chunk
// overlaps the one before it rather than leaving a scalar remainder (45 channels: 3 vector
// chunks, not 2 and 13 scalar steps). Only for bodies that write out[k] from other arrays' [k].
template <typename Body>
FASTMOTION_INLINE void channel_chunks(int64_t n, Body body) {
  if (n < kLanes) {
    for (int64_t k = 0; k < n; ++k) body(k);
    return;
  }
  for (int64_t k0 = 0;; k0 += kLanes) {
    const int64_t start = std::min(k0, n - kLanes);
    for (int64_t l = 0; l < kLanes; ++l) body(start + l);
    if (start == n - kLanes) break;
  }
}

// The input transform down the columns of T rows (each n floats, n a multiple of kLanes): out[a]
// at out + a * n.
template <Tiling K>
FASTMOTION_INLINE void column_transform(const float* const* rows, float* __restrict out, int64_t n) {
  constexpr int T = Traits<K>::T;
  const float* __restrict r0 = rows[0];
  const float* __restrict r1 = rows[1];
  const float* __restrict r2 = rows[2];
  const float* __restrict r3 = rows[T - 1];  // unused for T = 3
  for (int64_t c0 = 0; c0 < n; c0 += kLanes) {
    for (int64_t l = 0; l < kLanes; ++l) {
      const int64_t c = c0 + l;
      float d[4] = {r0[c], r1[c], r2[c], r3[c]}, v[T];
      Transform1d<K>::input(d, v);
      for (int a = 0; a < T; ++a) out[a * n + c] = v[a];
    }
  }
}

// A tensor's channels, concatenated from up to kMaxParts (N, C_i, H, W) tensors, each channels_last
// (channel stride 1) or contiguous (channel stride H * W), float32 or bfloat16: a decoder's
// up-sampled map, warped skip and keypoint embedding are read where they lie, never concatenated.
constexpr int kMaxParts = 4;
struct Parts {
  const void* data[kMaxParts];
  bool bf16[kMaxParts];
  int64_t channels[kMaxParts];
  int64_t pixel_stride[kMaxParts];    // between pixels (C_i for channels_last, 1 for contiguous)
  int64_t channel_stride[kMaxParts];  // between channels (1 for channels_last, H * W for contiguous)
  int64_t image_stride[kMaxParts];    // between images (C_i * H * W for both)
  int count;
};

// Columns [lo, hi) of input row iy of image n (column col is pixel x0 + col) into dst (column col at
// dst + col * dst_step, channels [0, C)), through op(value, channel). A contiguous part is read
// channel row by channel row (a transpose), not pixel by pixel across H * W-strided channels.
template <typename Op>
FASTMOTION_INLINE void gather_row(const Parts& x, int64_t n, int64_t iy, int64_t W, int64_t x0, int64_t lo,
                                  int64_t hi, int64_t dst_step, float* __restrict dst, Op op) {
  int64_t c = 0;
  for (int part = 0; part < x.count; ++part) {
    const int64_t cs = x.channels[part];
    auto read = [&](const auto* data) FASTMOTION_ALWAYS_INLINE {
      const auto* base = data + n * x.image_stride[part];
      if (x.channel_stride[part] == 1) {
        for (int64_t col = lo; col < hi; ++col) {
          const auto* __restrict src = base + (iy * W + x0 + col) * cs;
          float* __restrict out = dst + col * dst_step + c;
          channel_chunks(cs, [&](int64_t k) { out[k] = op(load_value(src, k), c + k); });
        }
      } else {
        for (int64_t k = 0; k < cs; ++k) {
          const auto* __restrict src = base + k * x.channel_stride[part] + iy * W + x0;
          for (int64_t col = lo; col < hi; ++col) dst[col * dst_step + c + k] = op(load_value(src, col), c + k);
        }
      }
    };
    if (x.bf16[part]) {
      read(static_cast<const uint16_t*>(x.data[part]));
    } else {
      read(static_cast<const float*>(x.data[part]));
    }
    c += cs;
  }
}

// Channels [0, C) of pixel yx (y * W + x) of image n into dst, through op(value, channel).
template <typename Op>
FASTMOTION_INLINE void gather_pixel(const Parts& x, int64_t n, int64_t yx, float* __restrict dst, Op op) {
  int64_t c = 0;
  for (int part = 0; part < x.count; ++part) {
    const int64_t cs = x.channels[part], step = x.channel_stride[part];
    auto read = [&](const auto* data) FASTMOTION_ALWAYS_INLINE {
      const auto* __restrict src = data + n * x.image_stride[part] + yx * x.pixel_stride[part];
      if (step == 1) {
        channel_chunks(cs, [&](int64_t k) { dst[c + k] = op(load_value(src, k), c + k); });
      } else {
        for (int64_t k = 0; k < cs; ++k) dst[c + k] = op(load_value(src, k * step), c + k);
      }
    };
    if (x.bf16[part]) {
      read(static_cast<const uint16_t*>(x.data[part]));
    } else {
      read(static_cast<const float*>(x.data[part]));
    }
    c += cs;
  }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WINOGRAD_BF16_STORE 1
// The input transform along a tile row for the bfloat16 kernel, which runs only on AVX512_BF16
// CPUs: vcvtneps2bf16 rounds 16 floats in one instruction, where the portable rounding
// (float_to_bf16) takes seven. cols: [a][column][c] (planes `plane` floats apart); V as in
// input_transform.
template <Tiling K>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))) void row_transform_bf16(
    const float* cols, int64_t plane, int64_t Cp, int64_t tiles_w, uint16_t* vq, int64_t e_step) {
  constexpr int T = Traits<K>::T, in_step = Traits<K>::in_step;
  for (int a = 0; a < T; ++a) {
    for (int64_t tj = 0; tj < tiles_w; ++tj) {
      const float* in = cols + a * plane + in_step * tj * Cp;
      uint16_t* out = vq + a * T * e_step + tj * Cp;
      for (int64_t c = 0; c < Cp; c += kLanes) {
        __m512 d[T], v[T];
        for (int b = 0; b < T; ++b) d[b] = _mm512_loadu_ps(in + b * Cp + c);
        Transform1d<K>::input(d, v);
        for (int b = 0; b < T; ++b) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + b * e_step + c), (__m256i)_mm512_cvtneps_pbh(v[b]));
        }
      }
    }
  }
}
#endif

// Tile (ti, tj) reads the input patch at (in_step * ti - pad, in_step * tj - pad); its outputs
// (m * ti + i, m * tj + j) within the (Ho, Wo) output.
struct Geometry {
  int64_t H, W, C, Cp, Ho, Wo, Co, Cop, tiles_h, tiles_w, pad;
};

// V[e][k][c] (row stride Cp; float, or rounded to bfloat16 bits) for the tiles of tile rows
// [row0, row0 + rows) of image n, k counting tiles from the first; e = a * T + b. scratch:
// 2 * T * width * Cp floats, width = in_step * (tiles_w - 1) + T.
template <Tiling K, typename VT>
WINOGRAD_CLONES void input_transform(const Parts& x, const float* __restrict scale,
                                           const float* __restrict shift, const Geometry& g, int64_t n, int64_t row0,
                                           int64_t rows, VT* __restrict V, float* __restrict scratch) {
  constexpr int T = Traits<K>::T, in_step = Traits<K>::in_step;
  const int64_t C = g.C, Cp = g.Cp, width = in_step * (g.tiles_w - 1) + T, plane = width * Cp;
  const int64_t nt = rows * g.tiles_w, e_step = nt * Cp;
  // [slot][column][c]: input rows, pre-op applied, zero padded; row iy in slot iy mod T, so a
  // tile row gathers only the in_step rows the one above it did not (tiles overlap T - in_step rows)
  float* patch = scratch;
  float* cols = scratch + T * plane;  // [a][column][c]: B^T applied down the columns
  for (int64_t q = 0; q < rows; ++q) {
    const int64_t y0 = in_step * (row0 + q) - g.pad, x0 = -g.pad;
    const float* slots[T];
    for (int r = 0; r < T; ++r) {
      const int64_t iy = y0 + r;
      float* __restrict row = patch + (((iy % T) + T) % T) * plane;
      slots[r] = row;
      if (q > 0 && r < T - in_step) continue;  // gathered for the tile row above
      const int64_t lo = std::clamp<int64_t>(-x0, 0, width), hi = std::clamp<int64_t>(g.W - x0, lo, width);
      if (iy < 0 || iy >= g.H || lo == hi) {
        for (int64_t i = 0; i < width * Cp; ++i) row[i] = 0.0f;
        continue;
      }
      for (int64_t i = 0; i < lo * Cp; ++i) row[i] = 0.0f;  // columns left and right of the image
      for (int64_t i = hi * Cp; i < width * Cp; ++i) row[i] = 0.0f;
      if (scale != nullptr) {
        gather_row(x, n, iy, g.W, x0, lo, hi, Cp, row, [&](float v, int64_t ch) {
          const float r = v * scale[ch] + shift[ch];
          return r > 0.0f ? r : 0.0f;
        });
      } else {
        gather_row(x, n, iy, g.W, x0, lo, hi, Cp, row, [](float v, int64_t) { return v; });
      }
      for (int64_t col = lo; col < hi; ++col) {
        for (int64_t c = C; c < Cp; ++c) row[col * Cp + c] = 0.0f;
      }
    }
    column_transform<K>(slots, cols, plane);  // all columns at once
    VT* vq = V + q * g.tiles_w * Cp;
    if constexpr (std::is_same_v<VT, uint16_t>) {
#ifdef WINOGRAD_BF16_STORE  // elsewhere the bfloat16 kernel never runs (bf16_gemm_supported() is false)
      row_transform_bf16<K>(cols, plane, Cp, g.tiles_w, vq, e_step);
#endif
    } else {
      for (int a = 0; a < T; ++a) {
        for (int64_t tj = 0; tj < g.tiles_w; ++tj) {  // along the row, into the T planes e = a * T + b
          transform_1d<K, true>(cols + a * plane + in_step * tj * Cp, Cp, vq + a * T * e_step + tj * Cp, e_step, Cp);
        }
      }
    }
  }
}

// Output tiles from M[e][k][co] (row stride Cop) for the same tiles: bias, then residual add or ReLU,
// stored as Out (float, or bfloat16 bits). A^T down the columns runs on whole planes (into
// scratch: m * T * nt * Cop floats); then each tile's m x T values of a 16-channel chunk go
// across in registers and straight to its pixels. residual_rows: m * m * Cop floats (the tile's
// residual pixels, gathered once).
template <Tiling K, typename Out>
WINOGRAD_CLONES void output_transform(const float* __restrict M, const float* __restrict bias,
                                            const Parts* residual, bool relu, const Geometry& g, int64_t n,
                                            int64_t row0, int64_t rows, Out* __restrict y, float* __restrict scratch,
                                            float* __restrict residual_rows) {
  constexpr int T = Traits<K>::T, m = Traits<K>::m;
  const int64_t Co = g.Co, Cop = g.Cop, nt = rows * g.tiles_w, e_step = nt * Cop;
  // u[i][b] = sum_a A^T[i][a] M[a][b], plane i * T + b
  for (int b = 0; b < T; ++b) transform_1d<K, false>(M + b * e_step, T * e_step, scratch + b * e_step, T * e_step, e_step);
  for (int64_t k = 0; k < nt; ++k) {
    const int64_t oy = m * (row0 + k / g.tiles_w), ox = m * (k % g.tiles_w);
    const int mi = static_cast<int>(std::min<int64_t>(m, g.Ho - oy)), mj = static_cast<int>(std::min<int64_t>(m, g.Wo - ox));
    if (residual != nullptr) {
      for (int i = 0; i < mi; ++i) {
        for (int j = 0; j < mj; ++j) {
          gather_pixel(*residual, n, (oy + i) * g.Wo + ox + j, residual_rows + (m * i + j) * Cop,
                       [](float r, int64_t) { return r; });
        }
      }
    }
    const float* __restrict tile = scratch + k * Cop;
    // chunks of 16 channels; where Co is not a multiple of 16 the last one overlaps the one before
    // (M has Cop >= 16 columns, so a chunk of fewer than 16 outputs still reads 16)
    for (int64_t c0 = 0;; c0 += kLanes) {
      const int64_t start = Co >= kLanes ? std::min(c0, Co - kLanes) : 0;
      float out[m * m][kLanes];
      for (int64_t l = 0; l < kLanes; ++l) {
        for (int i = 0; i < m; ++i) {
          float u[T], r[m];
          for (int b = 0; b < T; ++b) u[b] = tile[(i * T + b) * e_step + start + l];
          Transform1d<K>::output(u, r);
          for (int j = 0; j < m; ++j) out[m * i + j][l] = r[j];
        }
      }
      const int64_t lanes = std::min(kLanes, Co);
      for (int i = 0; i < mi; ++i) {
        for (int j = 0; j < mj; ++j) {
          Out* __restrict dst = y + ((n * g.Ho + oy + i) * g.Wo + ox + j) * Co + start;
          const float* __restrict o = out[m * i + j];
          const float* __restrict bs = bias + start;
          if (residual != nullptr) {
            const float* __restrict rs = residual_rows + (m * i + j) * Cop + start;
            for (int64_t l = 0; l < lanes; ++l) store_value(dst, l, (o[l] + bs[l]) + rs[l]);
          } else if (relu) {
            for (int64_t l = 0; l < lanes; ++l) {
              const float r = o[l] + bs[l];
              store_value(dst, l, r > 0.0f ? r : 0.0f);
            }
          } else {
            for (int64_t l = 0; l < lanes; ++l) store_value(dst, l, o[l] + bs[l]);
          }
        }
      }
      if (start + kLanes >= Co) break;
    }
  }
}

// Out float: U (T^2, C, Cop) float32, GEMMs on brgemm; Out uint16_t (bfloat16): U (T^2, packed
// panels of ceil(C / 2) x Cop x 2) bfloat16, V rounded to bfloat16, GEMMs on bf16_gemm.
template <Tiling K, typename Out>
void winograd_conv2d_impl(const Parts& x, int64_t N, const at::Tensor& U, const at::Tensor& bias, const float* scale,
                          const float* shift, const Parts* residual, bool relu, const Geometry& g, at::Tensor& y) {
  constexpr int T = Traits<K>::T, m = Traits<K>::m;
  constexpr bool kBf16 = !std::is_same_v<Out, float>;
  // A block is `rows` tile rows of one image. Its V (T^2 x tiles x Cp) and M (T^2 x tiles x Cop)
  // stay within ~768 KiB (L2) for one tile row of a wide map; weight-heavy layers (large C x Cop)
  // take at least 256 tiles a block, so the weights are not re-read from memory every few tiles.
  const int64_t row_bytes = T * T * g.tiles_w * (g.Cp * (kBf16 ? 2 : 4) + g.Cop * 4);
  int64_t rows = std::max<int64_t>(1, (768 << 10) / row_bytes);
  if (g.C * g.Cop >= 256 * 256) rows = std::max<int64_t>(rows, (256 + g.tiles_w - 1) / g.tiles_w);
  rows = std::min(rows, g.tiles_h);
  const int64_t per_image = (g.tiles_h + rows - 1) / rows, blocks = N * per_image;
  const int64_t width = Traits<K>::in_step * (g.tiles_w - 1) + T;
  const void* up = U.const_data_ptr();
  const float* bp = bias.const_data_ptr<float>();
  Out* yp = static_cast<Out*>(y.data_ptr());
  const int64_t K2 = (g.C + 1) / 2;  // bfloat16 channel pairs
  const int64_t max_tiles = rows * g.tiles_w, panels = (g.Cop + kPanel - 1) / kPanel;
  struct Buffers {  // one thread's
    std::unique_ptr<float[]> V, M, scratch, residual_rows;
    std::unique_ptr<uint16_t[]> Vb;
  };
  auto allocate = [&] {
    Buffers b;
    if constexpr (kBf16) {
      b.Vb.reset(new uint16_t[T * T * max_tiles * g.Cp]);
    } else {
      b.V.reset(new float[T * T * max_tiles * g.Cp]);
    }
    b.M.reset(new float[T * T * max_tiles * g.Cop]);
    b.scratch.reset(new float[std::max(2 * T * width * g.Cp, m * T * max_tiles * g.Cop)]);
    if (residual != nullptr) b.residual_rows.reset(new float[m * m * g.Cop]);
    return b;
  };
  // Plane e's GEMM for output columns [c0, c0 + kPanel): one weight panel (C x at most kPanel
  // columns, contiguous). A wide layer's weights would not stay in cache while the micro-kernel
  // walks the tiles, and a panel streams from memory in order (rows of a C x Cop matrix lie a page
  // apart, beyond the hardware prefetchers).
  auto gemm = [&](const Buffers& b, int64_t nt, int64_t e, int64_t c0) {
    const int64_t cols = std::min(kPanel, g.Cop - c0);
    float* out = b.M.get() + e * nt * g.Cop + c0;
    if constexpr (kBf16) {
      bf16_gemm(nt, cols, K2, b.Vb.get() + e * nt * g.Cp, g.Cp,
                static_cast<const uint16_t*>(up) + (e * g.Cop + c0) * 2 * K2, out, g.Cop);
    } else {
      at::native::cpublas::brgemm(nt, cols, g.C, g.Cp, cols, g.Cop, false, b.V.get() + e * nt * g.Cp,
                                  static_cast<const float*>(up) + (e * g.Cop + c0) * g.C, out, false);
    }
  };
  auto input = [&](Buffers& b, int64_t n, int64_t row0, int64_t nr) {
    if constexpr (kBf16) {
      input_transform<K>(x, scale, shift, g, n, row0, nr, b.Vb.get(), b.scratch.get());
    } else {
      input_transform<K>(x, scale, shift, g, n, row0, nr, b.V.get(), b.scratch.get());
    }
  };
  auto output = [&](Buffers& b, int64_t n, int64_t row0, int64_t nr) {
    output_transform<K, Out>(b.M.get(), bp, residual, relu, g, n, row0, nr, yp, b.scratch.get(),
                             b.residual_rows.get());
  };
  auto release = [] {
    if constexpr (!kBf16) at::native::cpublas::brgemm_release(false);
  };
  if (blocks >= at::get_num_threads() || at::in_parallel_region()) {
    // threads take whole blocks
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      Buffers b = allocate();
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t n = blk / per_image, row0 = (blk % per_image) * rows, nr = std::min(rows, g.tiles_h - row0);
        input(b, n, row0, nr);
        for (int64_t e = 0; e < T * T; ++e) {
          for (int64_t c0 = 0; c0 < g.Cop; c0 += kPanel) gemm(b, nr * g.tiles_w, e, c0);
        }
        output(b, n, row0, nr);
      }
      release();
    });
    return;
  }
  // Fewer blocks than threads (the small maps of weight-heavy layers, whose GEMMs dominate): the
  // transforms run on this thread, the (plane, weight panel) GEMMs on all.
  Buffers b = allocate();
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t n = blk / per_image, row0 = (blk % per_image) * rows, nr = std::min(rows, g.tiles_h - row0);
    input(b, n, row0, nr);
    at::parallel_for(0, T * T * panels, 1, [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) gemm(b, nr * g.tiles_w, u / panels, u % panels * kPanel);
      release();
    });
    output(b, n, row0, nr);
  }
}

}  // namespace

// Parts of `what` (all with the first one's N, H, W), or an error naming it.
Parts make_parts(at::TensorList tensors, const char* what) {
  TORCH_CHECK(!tensors.empty() && tensors.size() <= kMaxParts, "winograd_conv2d: ", what, " must be 1 to ", kMaxParts,
              " tensors (channel parts), got ", tensors.size());
  Parts parts{};
  parts.count = static_cast<int>(tensors.size());
  const at::Tensor& first = tensors[0];
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    const bool ok = t.dim() == 4 && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16) &&
                    t.device().is_cpu() &&
                    t.size(0) == first.size(0) && t.size(2) == first.size(2) && t.size(3) == first.size(3);
    const bool channels_last = ok && t.is_contiguous(at::MemoryFormat::ChannelsLast);
    TORCH_CHECK(channels_last || (ok && t.is_contiguous()),
                "winograd_conv2d: ", what, " must be float32 or bfloat16 CPU (N, C, H, W) tensors, channels_last or "
                "contiguous, "
                "with one N, H, W; got ", t.scalar_type(), " ", t.sizes(), " as part ", i);
    parts.data[i] = t.const_data_ptr();
    parts.bf16[i] = t.scalar_type() == at::kBFloat16;
    parts.channels[i] = t.size(1);
    parts.pixel_stride[i] = channels_last ? t.size(1) : 1;
    parts.channel_stride[i] = channels_last ? 1 : t.size(2) * t.size(3);
    parts.image_stride[i] = t.size(1) * t.size(2) * t.size(3);
  }
  return parts;
}

// inputs: the (N, C_i, H, W) channels_last or contiguous parts of the input (C = sum C_i), float32
// or bfloat16; weight_t from transform_weights (Cop: Cout rounded up to 16, the padding columns
// zero; each plane stored by panels of 48 columns), either float32 (planes, C, Cop), panels
// [C][column], -> a float32 output, or bfloat16 (planes, ceil(C / 2) * Cop * 2) packed for
// bf16_gemm -> a bfloat16 output (float32 accumulation; AVX512_BF16 CPUs);
// bias (Cout) float32; stride 1, the same zero padding on each side.
//   upsampled false: conv2d(input, w, padding) (Conv3x3: 16 planes, padding 0 or 1);
//   upsampled true: conv2d(upsample_nearest_2x(input), w, padding=1), (N, Cout, 2H, 2W)
//   (Upsampled: 9 planes).
at::Tensor winograd_conv2d_cpu(at::TensorList inputs, const at::Tensor& weight_t, const at::Tensor& bias,
                               int64_t padding, bool upsampled, const std::optional<at::Tensor>& input_scale,
                               const std::optional<at::Tensor>& input_shift,
                               std::optional<at::TensorList> residual, bool relu) {
  TORCH_CHECK(padding == 1 || (!upsampled && padding == 0),
              "winograd_conv2d: padding must be 1 (or 0 without upsampled), got ", padding);
  const Tiling tiling = upsampled ? Tiling::Upsampled : Tiling::Conv3x3;
  const int64_t T = upsampled ? 3 : 4, m = 2;
  const Parts parts = make_parts(inputs, "inputs");
  const at::Tensor& input = inputs[0];
  int64_t C = 0;
  for (int i = 0; i < parts.count; ++i) C += parts.channels[i];
  const bool bf16 = weight_t.scalar_type() == at::kBFloat16;
  int64_t Cop = 0;
  if (bf16) {
    TORCH_CHECK(bf16_gemm_supported(), "winograd_conv2d: bfloat16 weight_t needs a CPU with AVX512_BF16");
    Cop = round_up(bias.dim() == 1 ? bias.size(0) : 0, kLanes);
    TORCH_CHECK(weight_t.dim() == 2 && weight_t.size(0) == T * T && weight_t.size(1) == (C + 1) / 2 * 2 * Cop &&
                    weight_t.is_contiguous(),
                "winograd_conv2d: bfloat16 weight_t must be contiguous (", T * T, ", ", (C + 1) / 2 * 2 * Cop,
                ") for ", C, " input and ", bias.size(0), " output channels, got ", weight_t.sizes());
  } else {
    TORCH_CHECK(weight_t.dim() == 3 && weight_t.size(0) == T * T && weight_t.size(1) == C &&
                    weight_t.scalar_type() == at::kFloat && weight_t.is_contiguous() && weight_t.size(2) % kLanes == 0,
                "winograd_conv2d: weight_t must be contiguous float32 (", T * T, ", ", C,
                ", Cout rounded up to ", kLanes, ") or bfloat16, got ", weight_t.scalar_type(), " ",
                weight_t.sizes());
    Cop = weight_t.size(2);
  }
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) <= Cop && bias.size(0) > Cop - kLanes && bias.scalar_type() == at::kFloat &&
                  bias.is_contiguous(),
              "winograd_conv2d: bias must be contiguous float32 (Cout,) with Cout rounded up to ", kLanes, " = ", Cop,
              ", got ", bias.sizes());
  TORCH_CHECK(input_scale.has_value() == input_shift.has_value(),
              "winograd_conv2d: input_scale and input_shift go together");
  for (const auto* t : {&input_scale, &input_shift}) {
    if (t->has_value()) {
      TORCH_CHECK((*t)->dim() == 1 && (*t)->size(0) == C && (*t)->scalar_type() == at::kFloat && (*t)->is_contiguous(),
                  "winograd_conv2d: input_scale / input_shift must be contiguous float32 (", C, ",), got ",
                  (*t)->sizes());
    }
  }
  TORCH_CHECK(!(relu && residual.has_value()), "winograd_conv2d: residual and relu together are not supported");
  const int64_t N = input.size(0), H = input.size(2), W = input.size(3), Co = bias.size(0);
  const int64_t Ho = upsampled ? 2 * H : H + 2 * padding - 2, Wo = upsampled ? 2 * W : W + 2 * padding - 2;
  TORCH_CHECK(Ho > 0 && Wo > 0, "winograd_conv2d: the input (", H, "x", W, ") is smaller than the kernel");
  Parts residual_parts{};
  if (residual.has_value()) {
    residual_parts = make_parts(*residual, "residual");
    int64_t cr = 0;
    for (int i = 0; i < residual_parts.count; ++i) cr += residual_parts.channels[i];
    const at::Tensor& r = (*residual)[0];
    TORCH_CHECK(r.size(0) == N && cr == Co && r.size(2) == Ho && r.size(3) == Wo,
                "winograd_conv2d: residual must be (", N, ", ", Co, ", ", Ho, ", ", Wo, ") in all, got ", cr,
                " channels of ", r.sizes());
  }
  at::Tensor y = at::empty({N, Co, Ho, Wo}, input.options().dtype(bf16 ? at::kBFloat16 : at::kFloat),
                           at::MemoryFormat::ChannelsLast);
  if (y.numel() == 0) return y;
  const Geometry g{H, W, C, round_up(C, kLanes), Ho, Wo, Co, Cop, (Ho + m - 1) / m, (Wo + m - 1) / m, padding};
  const float* scale = input_scale.has_value() ? input_scale->const_data_ptr<float>() : nullptr;
  const float* shift = input_shift.has_value() ? input_shift->const_data_ptr<float>() : nullptr;
  const Parts* res = residual.has_value() ? &residual_parts : nullptr;
  if (tiling == Tiling::Conv3x3 && bf16) {
    winograd_conv2d_impl<Tiling::Conv3x3, uint16_t>(parts, N, weight_t, bias, scale, shift, res, relu, g, y);
  } else if (tiling == Tiling::Conv3x3) {
    winograd_conv2d_impl<Tiling::Conv3x3, float>(parts, N, weight_t, bias, scale, shift, res, relu, g, y);
  } else if (bf16) {
    winograd_conv2d_impl<Tiling::Upsampled, uint16_t>(parts, N, weight_t, bias, scale, shift, res, relu, g, y);
  } else {
    winograd_conv2d_impl<Tiling::Upsampled, float>(parts, N, weight_t, bias, scale, shift, res, relu, g, y);
  }
  return y;
}

}  // namespace cpu
}  // namespace fastmotion

TORCH_LIBRARY_FRAGMENT(fastmotion, m) {
  m.def(
      "winograd_conv2d(Tensor[] inputs, Tensor weight_t, Tensor bias, int padding=1, bool upsampled=False, "
      "Tensor? input_scale=None, Tensor? input_shift=None, Tensor[]? residual=None, bool relu=False) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastmotion, CPU, m) { m.impl("winograd_conv2d", &fastmotion::cpu::winograd_conv2d_cpu); }
