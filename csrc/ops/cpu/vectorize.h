// Run a hot loop compiled for AVX2+FMA when the CPU has them, else for baseline x86-64.
//
// setup.py builds for baseline x86-64 (SSE2). `run_vectorized([&]() FM_ALWAYS_INLINE {...})`
// instantiates the lambda twice: inside a function compiled with target("avx2,fma") and inside a plain one,
// and picks one at run time. The kernels it calls are FM_INLINE templates, so they are inlined
// into both copies and GCC auto-vectorizes them for each instruction set. (target_clones would
// not do: an "avx2,fma" list makes separate avx2 and fma clones, and "arch=haswell" tests the
// CPU model, not its features.)
#pragma once

#define FM_ALWAYS_INLINE __attribute__((always_inline))
#define FM_INLINE inline FM_ALWAYS_INLINE

namespace fastmotion {
namespace cpu {

inline bool has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

#if defined(__x86_64__) || defined(__i386__)
template <typename Body>
__attribute__((target("avx2,fma"), noinline)) void run_avx2_fma(const Body& body) {
  body();
}
#endif

template <typename Body>
__attribute__((noinline)) void run_baseline(const Body& body) {
  body();
}

template <typename Body>
void run_vectorized(const Body& body) {
#if defined(__x86_64__) || defined(__i386__)
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

}  // namespace cpu
}  // namespace fastmotion
