// Helpers for auto-vectorized CPU kernels.
//
// The extension is compiled for baseline x86-64 (SSE2) so one wheel runs everywhere. Hot loops
// are marked FASTMOTION_CPU_CLONES: GCC/Clang then emit an x86-64-v3 (AVX2+FMA) copy and a
// baseline copy and pick one at load time from the CPU's features (function multi-versioning,
// an ifunc; "arch=haswell" would instead test the CPU *model* and miss e.g. AMD parts). Loops
// inside must be free of library calls and branches to vectorize: hence exp_poly below instead
// of std::exp, written with selects, and -fno-trapping-math in setup.py (lets GCC if-convert
// comparisons that could raise FP exceptions; fastmotion never reads the FP exception flags).
#pragma once

#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define FASTMOTION_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FASTMOTION_CPU_CLONES
#endif

namespace fastmotion {
namespace cpu {

// exp(x) for float without a libm call (Cephes-style: 2^n * e^r with a degree-6 polynomial on
// |r| <= ln2/2), within ~2 ulp of std::exp on [-87, 88]; below -87 it returns 0, above 88 inf,
// and NaN propagates. Range limits are applied as final selects, not input clamps: a clamped
// input lets GCC constant-fold the clamped branch and then refuse to vectorize the loop.
inline float exp_poly(float x) {
  const float magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  const float n = (x * 1.44269504088896341f + magic) - magic;
  float r = x - n * 0.693359375f;  // ln2 split in two for an exact product with n
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float y = p * __builtin_bit_cast(float, bits);
  y = x < -87.0f ? 0.0f : y;
  y = x > 88.0f ? __builtin_inff() : y;
  return y;
}

}  // namespace cpu
}  // namespace fastmotion
