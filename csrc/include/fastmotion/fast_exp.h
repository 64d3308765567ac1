// exp for the CPU kernels' inner loops, in a form compilers auto-vectorize: no libm call, no
// branches (only selects), float only. Accuracy about 1 ulp on the range the Gaussian kernels use
// (x <= 0); below log(FLT_MIN) it returns 0 where expf would return a denormal (< 1.2e-38).
// NaN propagates. Host code only.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__GNUC__)
#define FM_FAST_EXP_INLINE inline __attribute__((always_inline))
#else
#define FM_FAST_EXP_INLINE inline
#endif

namespace fastmotion {

// Always inlined, so that it is vectorised with the target of the loop that calls it.
FM_FAST_EXP_INLINE float fast_exp(float x) {
  constexpr float kLo = -87.33654475f;  // log(FLT_MIN)
  constexpr float kHi = 88.0f;
  float xc = x < kLo ? kLo : x;
  xc = xc > kHi ? kHi : xc;
  // n = round(x / ln 2) by the 1.5 * 2^23 trick (exact for |n| < 2^22, round-to-nearest mode).
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  n = n == n ? n : 0.0f;  // keep the integer conversion below defined for NaN input
  // r = x - n ln 2 in two steps (Cody-Waite): the first product is exact.
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  // Minimax polynomial of exp on [-ln2/2, ln2/2] (Cephes expf coefficients).
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const float y = p * scale;
  return x < kLo ? 0.0f : y;
}

FM_FAST_EXP_INLINE double fast_exp(double x) { return __builtin_exp(x); }

}  // namespace fastmotion
