// bfloat16 GEMM micro-kernel (bf16_gemm.h). Register tile: MR <= 8 rows of A x NV <= 3 vectors of 16
// output columns, 24 float32 accumulators; each step broadcasts one bfloat16 pair of A per row
// against NV packed vectors of B. The K loop is cut in blocks whose panel of B (128 pairs x 48
// columns, 24 KiB) stays in L1 while the rows of A stream past it.
#include "ops/cpu/bf16_gemm.h"

#include <algorithm>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTMOTION_BF16_GEMM 1
#include <immintrin.h>
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16")))
#endif

namespace fastmotion {
namespace cpu {

#ifdef FASTMOTION_BF16_GEMM
namespace {

constexpr int64_t kBlockPairs = 128;  // K pairs of one B block

template <int MR, int NV>
BF16_TARGET void tile(int64_t pairs, const uint16_t* A, int64_t lda, const uint16_t* B, int64_t panel, float* C,
                      int64_t ldc, bool accumulate) {
  __m512 c[MR][NV];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NV; ++j) c[i][j] = accumulate ? _mm512_loadu_ps(C + i * ldc + 16 * j) : _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh b[NV];
    for (int j = 0; j < NV; ++j) b[j] = (__m512bh)_mm512_loadu_si512(B + 2 * (p * panel + 16 * j));
    for (int i = 0; i < MR; ++i) {
      int32_t pair;
      __builtin_memcpy(&pair, A + i * lda + 2 * p, sizeof(pair));
      const __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
      for (int j = 0; j < NV; ++j) c[i][j] = _mm512_dpbf16_ps(c[i][j], a, b[j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(C + i * ldc + 16 * j, c[i][j]);
  }
}

using TileFn = void (*)(int64_t, const uint16_t*, int64_t, const uint16_t*, int64_t, float*, int64_t, bool);

template <int NV>
constexpr TileFn kRows[8] = {tile<1, NV>, tile<2, NV>, tile<3, NV>, tile<4, NV>,
                             tile<5, NV>, tile<6, NV>, tile<7, NV>, tile<8, NV>};

TileFn pick(int64_t rows, int64_t vectors) {
  const int64_t r = rows - 1;
  return vectors == 3 ? kRows<3>[r] : vectors == 2 ? kRows<2>[r] : kRows<1>[r];
}

}  // namespace

bool bf16_gemm_supported() {
  static const bool ok = __builtin_cpu_supports("avx512bf16");
  return ok;
}

BF16_TARGET void bf16_gemm(int64_t M, int64_t N, int64_t K2, const uint16_t* A, int64_t lda, const uint16_t* B,
                           float* C, int64_t ldc) {
  for (int64_t k0 = 0; k0 < K2; k0 += kBlockPairs) {
    const int64_t pairs = std::min(kBlockPairs, K2 - k0);
    for (int64_t n0 = 0; n0 < N; n0 += kBf16PanelWidth) {
      const int64_t panel = std::min(kBf16PanelWidth, N - n0);
      const uint16_t* b = B + n0 * 2 * K2 + k0 * 2 * panel;
      const TileFn full = pick(8, panel / 16);
      for (int64_t m0 = 0; m0 < M; m0 += 8) {
        const int64_t rows = std::min<int64_t>(8, M - m0);
        (rows == 8 ? full : pick(rows, panel / 16))(pairs, A + m0 * lda + 2 * k0, lda, b, panel, C + m0 * ldc + n0,
                                                    ldc, k0 > 0);
      }
    }
  }
}

#else  // no AVX512_BF16 kernels in this build

bool bf16_gemm_supported() { return false; }
void bf16_gemm(int64_t, int64_t, int64_t, const uint16_t*, int64_t, const uint16_t*, float*, int64_t) {}

#endif

}  // namespace cpu
}  // namespace fastmotion
