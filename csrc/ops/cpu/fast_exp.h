// exp(x) for x <= 0 that GCC can auto-vectorize (no libm call in the loop), for the softmax
// weights of the CPU kernels. Float: Cody-Waite reduction x = n ln2 + r and a degree-6
// polynomial (Cephes' expf coefficients), about 2 ulp on [-87, 0]; below -87 it returns 0 (the
// true value is under FLT_MIN there), NaN stays NaN. Branch-free so that loops calling it vectorize. Double: std::exp (double inputs serve
// gradcheck, not speed).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace fastmotion {
namespace cpu {

inline __attribute__((always_inline)) float exp_nonpositive(float x) {
  const float lo = -87.0f;
  const float xc = x < lo ? lo : x;  // NaN stays NaN and propagates through the arithmetic
  // n = round(xc / ln2) with the 1.5 * 2^23 trick (|xc / ln2| < 2^22): t's low mantissa bits
  // hold n, so 2^n comes from integer arithmetic on t's bits (no float-to-int conversion,
  // which would keep GCC from vectorizing the loop).
  const float magic = 12582912.0f;
  const float t = xc * 1.44269504088896341f + magic;
  const float nf = t - magic;
  const float r = (xc - nf * 0.693359375f) + nf * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t tb, mb;
  std::memcpy(&tb, &t, sizeof(tb));
  std::memcpy(&mb, &magic, sizeof(mb));
  const int32_t bits = (tb - mb + 127) << 23;  // n in [-126, 0]
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  const float e = p * scale;
  return x < lo ? 0.0f : e;
}

inline __attribute__((always_inline)) double exp_nonpositive(double x) { return std::exp(x); }

}  // namespace cpu
}  // namespace fastmotion
