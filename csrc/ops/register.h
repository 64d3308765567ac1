// Registration of an op family's kernels, written once. An op family `foo` is the pair of ops
// foo_forward / foo_backward; its schema is define_foo_schema (csrc/ops/foo.h), its CPU kernels
// foo_forward_cpu / foo_backward_cpu and its CUDA ones foo_forward_cuda_op / foo_backward_cuda_op.
// Every name is built from the family's, so an op, its schema and its kernels share one name.
#pragma once

#include <torch/library.h>

// In the CPU kernel file: the schema (once for the whole library) and the CPU kernels, which
// live in namespace ns.
#define FASTMOTION_REGISTER_CPU(family, ns)                                           \
  TORCH_LIBRARY_FRAGMENT(fastmotion, m) { fastmotion::define_##family##_schema(m); }  \
  TORCH_LIBRARY_IMPL(fastmotion, CPU, m) {                                             \
    m.impl(#family "_forward", &ns::family##_forward_cpu);                             \
    m.impl(#family "_backward", &ns::family##_backward_cpu);                           \
  }

// In the CUDA binding: the CUDA kernels.
#define FASTMOTION_REGISTER_CUDA(family)                                  \
  TORCH_LIBRARY_IMPL(fastmotion, CUDA, m) {                               \
    m.impl(#family "_forward", &fastmotion::family##_forward_cuda_op);    \
    m.impl(#family "_backward", &fastmotion::family##_backward_cuda_op);  \
  }
