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

#include <ATen/Parallel.h>

#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define FASTMOTION_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FASTMOTION_CPU_CLONES
#endif

namespace fastmotion {
namespace cpu {

// exp for the inner loops, in a form compilers auto-vectorize: no libm call, no branches (only
// selects). Cephes-style 2^n * e^r with a degree-6 polynomial on |r| <= ln2/2, about 1 ulp on
// the range the kernels use (x <= 0). Below log(FLT_MIN) it returns 0 where expf would return a
// denormal; above 88 it returns inf; NaN propagates (n > -127 is false for NaN, so n becomes
// -127 and y = p * 2^-127 stays NaN through p).
inline float exp_poly(float x) {
  constexpr float kLo = -87.33654475f;  // log(FLT_MIN)
  constexpr float kHi = 88.0f;
  float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round(x / ln2): 1.5 * 2^23 trick
  float r = x - n * 0.693359375f;                                      // Cody-Waite: ln2 in two parts
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // Keep the float -> int conversion defined (out-of-range and NaN inputs): those lanes are
  // replaced below anyway. Range handling is done with selects on the result, not by clamping
  // the input: a clamped input lets GCC constant-fold that path into a branch and the loop
  // then stays scalar.
  n = n > -127.0f ? n : -127.0f;
  n = n < 128.0f ? n : 128.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float y = p * __builtin_bit_cast(float, bits);
  y = x < kLo ? 0.0f : y;
  y = x > kHi ? __builtin_inff() : y;
  return y;
}

// Double inputs take libm's exp (they serve gradcheck and the float64 paths, not speed).
inline double exp_poly(double x) { return __builtin_exp(x); }

// Explicit two-copy dispatch, for kernels that pick a copy once per call instead of through
// FASTMOTION_CPU_CLONES: FASTMOTION_TARGET_AVX2 marks the AVX2+FMA copy, has_avx2_fma() picks.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define FASTMOTION_HAVE_AVX2_COPIES 1
#define FASTMOTION_TARGET_AVX2 __attribute__((target("avx2,fma")))
inline bool has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}
#else
#define FASTMOTION_TARGET_AVX2
inline bool has_avx2_fma() { return false; }
#endif

// Run a hot loop body compiled for AVX2+FMA when the CPU has them, else for baseline x86-64:
// `run_vectorized([&]() FASTMOTION_ALWAYS_INLINE { ... })` instantiates the lambda inside a
// target("avx2,fma") function and inside a plain one and picks one at run time. Kernels it calls
// are FASTMOTION_INLINE templates, so they are inlined into both copies and GCC auto-vectorizes
// them for each instruction set.
#define FASTMOTION_ALWAYS_INLINE __attribute__((always_inline))
#define FASTMOTION_INLINE inline FASTMOTION_ALWAYS_INLINE

#ifdef FASTMOTION_HAVE_AVX2_COPIES
template <typename Body>
FASTMOTION_TARGET_AVX2 __attribute__((noinline)) void run_avx2_fma(const Body& body) {
  body();
}
#endif

template <typename Body>
__attribute__((noinline)) void run_baseline(const Body& body) {
  body();
}

template <typename Body>
void run_vectorized(const Body& body) {
#ifdef FASTMOTION_HAVE_AVX2_COPIES
  if (has_avx2_fma()) {
    run_avx2_fma(body);
    return;
  }
#endif
  run_baseline(body);
}

// Grain size for at::parallel_for over tasks of `work_per_task` elements each: calls with less
// than ~256K elements of work stay on one thread (a fraction of a millisecond: on a busy machine
// one parallel region's barrier can cost a whole scheduler time slice).
inline int64_t grain_for(int64_t work_per_task, int64_t min_work = int64_t(1) << 18) {
  const int64_t w = work_per_task > 0 ? work_per_task : 1;
  return (min_work + w - 1) / w;
}

// at::parallel_for over [0, n) (grain: items of work_per_item elements, grain_for) with
// body(begin, end) compiled for AVX2+FMA and for baseline x86-64 (run_vectorized). The body must be
// a FASTMOTION_ALWAYS_INLINE lambda, so that it is compiled into both copies.
template <typename Body>
void parallel_vectorized(int64_t n, int64_t work_per_item, const Body& body) {
  at::parallel_for(0, n, grain_for(work_per_item), [&](int64_t begin, int64_t end) {
    run_vectorized([&]() FASTMOTION_ALWAYS_INLINE { body(begin, end); });
  });
}

// out[n * Q + q] = sum over t of part[(n * T + t) * Q + q], added in t order: the per-task
// partial gradients that the kernels write in parallel, reduced deterministically.
template <typename acc_t>
void sum_task_partials(const acc_t* part, int64_t N, int64_t T, int64_t Q, acc_t* out) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t q = 0; q < Q; ++q) {
      acc_t sum = 0;
      for (int64_t t = 0; t < T; ++t) sum += part[(n * T + t) * Q + q];
      out[n * Q + q] = sum;
    }
  }
}

}  // namespace cpu
}  // namespace fastmotion
