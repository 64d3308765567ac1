// CUDA launchers of the heatmap-moments op. Torch-free: raw pointers, sizes and a stream,
// so TensorRT plugins can reuse them. scalar_t: float, double, __half, __nv_bfloat16;
// statistics (mean, var, lse and their gradients) in acc_type_t<scalar_t> (float; double for double).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "fastmotion/cuda_types.h"

namespace fastmotion {

// logits (rows, H, W) contiguous -> mean (rows, 2), var (rows, v, v) with v = 1 for kVarSingle
// else 2 (untouched for kVarFixed; VarMode, fastmotion/var_mode.h), var_raw (rows, 2, 2), lse (rows). clip 0: none.
template <typename scalar_t>
cudaError_t heatmap_moments_forward_cuda(const scalar_t* logits, int64_t rows, int64_t H, int64_t W,
                                         double temperature, int var_mode, double clip,
                                         acc_type_t<scalar_t>* mean, acc_type_t<scalar_t>* var,
                                         acc_type_t<scalar_t>* var_raw, acc_type_t<scalar_t>* lse,
                                         cudaStream_t stream);

// grad_logits (rows, H, W) from the forward's statistics and the gradients of mean and var
// (grad_var shaped like the forward's var output).
template <typename scalar_t>
cudaError_t heatmap_moments_backward_cuda(const scalar_t* logits, const acc_type_t<scalar_t>* mean,
                                          const acc_type_t<scalar_t>* var_raw, const acc_type_t<scalar_t>* lse,
                                          const acc_type_t<scalar_t>* grad_mean,
                                          const acc_type_t<scalar_t>* grad_var, int64_t rows, int64_t H,
                                          int64_t W, double temperature, int var_mode, double clip,
                                          scalar_t* grad_logits, cudaStream_t stream);

}  // namespace fastmotion
