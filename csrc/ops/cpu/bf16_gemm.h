// A bfloat16 GEMM micro-kernel for Winograd's per-plane products (winograd_conv.cpp) on CPUs with
// AVX512_BF16: vdpbf16ps multiplies pairs of bfloat16 and accumulates in float32, twice the
// multiply-adds of a float32 FMA per instruction. oneDNN's brgemm takes bfloat16 only in the VNNI
// layout it cannot pack on every such CPU, and its plain-layout path runs at a third of the speed.
#pragma once

#include <cstdint>

namespace fastmotion {
namespace cpu {

// Output columns of one packed weight panel: three AVX-512 vectors of float32 accumulators.
constexpr int64_t kBf16PanelWidth = 48;

// Whether this CPU runs the kernels below (AVX512_BF16, and this build has them).
bool bf16_gemm_supported();

// C[m][n] = sum_k A[m][k] * B[k][n] for m < M, n < N (N a multiple of 16), k < 2 * K2.
//   A: bfloat16 bits, row stride lda (even), its columns [2 * K2 - 1] zero where K is odd;
//   B: bfloat16 bits packed by panels of kBf16PanelWidth columns (the last one N's remainder):
//      panel p, at B + p * kBf16PanelWidth * 2 * K2, holds [k2][column][k % 2];
//   C: float32, row stride ldc.
void bf16_gemm(int64_t M, int64_t N, int64_t K2, const uint16_t* A, int64_t lda, const uint16_t* B, float* C,
               int64_t ldc);

}  // namespace cpu
}  // namespace fastmotion
