// Helpers shared by the torch bindings of the CUDA kernels (csrc/ops/cuda/*_cuda.cpp): dtype
// dispatch to the kernels' storage types, CUDA error checks, the current stream. Includes only
// c10/cuda stream headers (no cuBLAS/cuSPARSE), so the bindings build against any CUDA torch.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace fastmotion {

// Calls fn(scalar_t*) (a null pointer used as a type tag) with the CUDA storage type of dtype t.
template <typename Fn>
void dispatch_cuda_float(at::ScalarType t, const char* name, Fn&& fn) {
  switch (t) {
    case at::kFloat: fn(static_cast<float*>(nullptr)); break;
    case at::kDouble: fn(static_cast<double*>(nullptr)); break;
    case at::kHalf: fn(static_cast<__half*>(nullptr)); break;
    case at::kBFloat16: fn(static_cast<__nv_bfloat16*>(nullptr)); break;
    default: TORCH_CHECK(false, name, ": unsupported dtype ", t);
  }
}

inline void check_cuda(cudaError_t err, const char* what) {
  TORCH_CHECK(err == cudaSuccess, what, ": CUDA error: ", cudaGetErrorString(err));
}

inline cudaStream_t stream_of(const at::Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

}  // namespace fastmotion
