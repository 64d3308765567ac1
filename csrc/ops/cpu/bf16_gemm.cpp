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
using Pair = int32_t __attribute__((may_alias));  // two bfloat16 read as one word

// accumulate: C += A B (a later K block) rather than C = A B. Fully unrolled over the register tile
// (without the pragmas GCC spills the accumulators around the K loop: a fifth slower).
template <int MR, int NV, bool kAccumulate>
BF16_TARGET void tile(int64_t pairs, const uint16_t* A, int64_t lda, const uint16_t* B, int64_t panel, float* C,
                      int64_t ldc) {
  __m512 c[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) c[i][j] = kAccumulate ? _mm512_loadu_ps(C + i * ldc + 16 * j) : _mm512_setzero_ps();
  }
  // A's bfloat16 pairs as 32-bit words (lda is even)
  const auto* a32 = reinterpret_cast<const Pair*>(A);
  const int64_t lda32 = lda / 2;
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh b[NV];
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) b[j] = (__m512bh)_mm512_loadu_si512(B + 2 * (p * panel + 16 * j));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(a32[i * lda32 + p]);
#pragma GCC unroll 3
      for (int j = 0; j < NV; ++j) c[i][j] = _mm512_dpbf16_ps(c[i][j], a, b[j]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(C + i * ldc + 16 * j, c[i][j]);
  }
}

using TileFn = void (*)(int64_t, const uint16_t*, int64_t, const uint16_t*, int64_t, float*, int64_t);

template <int NV, bool kAccumulate>
constexpr TileFn kRows[8] = {tile<1, NV, kAccumulate>, tile<2, NV, kAccumulate>, tile<3, NV, kAccumulate>,
                             tile<4, NV, kAccumulate>, tile<5, NV, kAccumulate>, tile<6, NV, kAccumulate>,
                             tile<7, NV, kAccumulate>, tile<8, NV, kAccumulate>};

template <bool kAccumulate>
TileFn pick(int64_t rows, int64_t vectors) {
  const int64_t r = rows - 1;
  return vectors == 3 ? kRows<3, kAccumulate>[r] : vectors == 2 ? kRows<2, kAccumulate>[r] : kRows<1, kAccumulate>[r];
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
      const bool accumulate = k0 > 0;
      const TileFn full = accumulate ? pick<true>(8, panel / 16) : pick<false>(8, panel / 16);
      for (int64_t m0 = 0; m0 < M; m0 += 8) {
        const int64_t rows = std::min<int64_t>(8, M - m0);
        const TileFn fn = rows == 8 ? full : accumulate ? pick<true>(rows, panel / 16) : pick<false>(rows, panel / 16);
        fn(pairs, A + m0 * lda + 2 * k0, lda, b, panel, C + m0 * ldc + n0, ldc);
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
