// Registration of an op family's kernels, written once. An op family `foo` is the pair of ops
// foo_forward / foo_backward; its schema is define_foo_schema (csrc/ops/foo.h). The names are
// built from the family's, so an op, its schema and its kernel files share one name.
#pragma once

#include <torch/library.h>

// In the CPU kernel file: the schema (once for the whole library) and the CPU kernels.
#define FASTMOTION_REGISTER_CPU(family, forward, backward)                              \
  TORCH_LIBRARY_FRAGMENT(fastmotion, m) { fastmotion::define_##family##_schema(m); }    \
  TORCH_LIBRARY_IMPL(fastmotion, CPU, m) {                                               \
    m.impl(#family "_forward", &forward);                                                \
    m.impl(#family "_backward", &backward);                                              \
  }

// In the CUDA binding: the CUDA kernels.
#define FASTMOTION_REGISTER_CUDA(family, forward, backward) \
  TORCH_LIBRARY_IMPL(fastmotion, CUDA, m) {                 \
    m.impl(#family "_forward", &forward);                   \
    m.impl(#family "_backward", &backward);                 \
  }
