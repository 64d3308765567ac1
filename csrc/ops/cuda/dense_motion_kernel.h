// CUDA launchers of the dense-motion ops (compose_flow, shifted_warps). Torch-free: raw pointers,
// sizes and a stream, so TensorRT plugins can reuse them. scalar_t: float, double, __half,
// __nv_bfloat16; the keypoint shifts and their gradients are acc_type_t<scalar_t> (float;
// double for double). All tensors contiguous except where strides are passed.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "fastmotion/cuda_types.h"

namespace fastmotion {

// mask_logits (N, K1, H, W), shift (N, K1, 2), correction (N, 2, H, W) or null -> grid (N, H, W, 2).
template <typename scalar_t>
cudaError_t compose_flow_forward_cuda(const scalar_t* logits, const acc_type_t<scalar_t>* shift,
                                      const scalar_t* correction, int64_t N, int64_t K1, int64_t H, int64_t W,
                                      scalar_t* grid, cudaStream_t stream);

// Bytes of device workspace compose_flow_backward_cuda needs (partial sums and counters).
size_t compose_flow_backward_workspace(int64_t N, int64_t K1, int64_t H, int64_t W, size_t acc_size);

// grad_grid (N, H, W, 2) -> grad_logits (N, K1, H, W), grad_shift (N, K1, 2). One kernel (plus a
// memset of the workspace's counters): blocks write per-block partial sums of the kp_shift
// gradient and the last block of each sample adds them up in a fixed order.
template <typename scalar_t>
cudaError_t compose_flow_backward_cuda(const scalar_t* grad_grid, const scalar_t* logits,
                                       const acc_type_t<scalar_t>* shift, int64_t N, int64_t K1, int64_t H,
                                       int64_t W, scalar_t* grad_logits, acc_type_t<scalar_t>* grad_shift,
                                       void* workspace, cudaStream_t stream);

// Strides of the source (N, C, H, W), in elements.
struct SourceStrides {
  int64_t n, c, h, w;
};

// source (N, C, H, W) (any strides), shift (N, K1, 2) -> out (N, K1, C, H, W).
template <typename scalar_t>
cudaError_t shifted_warps_forward_cuda(const scalar_t* source, SourceStrides strides, const acc_type_t<scalar_t>* shift,
                                       int64_t N, int64_t C, int64_t H, int64_t W, int64_t K1, scalar_t* out,
                                       cudaStream_t stream);

size_t shifted_warps_backward_workspace(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K1, size_t acc_size);

// grad_out (N, K1, C, H, W) -> grad_source (N, C, H, W, contiguous; may be null) and grad_shift
// (N, K1, 2; may be null). One kernel: its first blocks reduce the kp_shift gradient (with a
// last-block reduction per (n, k)), the others gather the source gradient (transposed stencil).
template <typename scalar_t>
cudaError_t shifted_warps_backward_cuda(const scalar_t* grad_out, const scalar_t* source, SourceStrides strides,
                                        const acc_type_t<scalar_t>* shift, int64_t N, int64_t C, int64_t H, int64_t W,
                                        int64_t K1, scalar_t* grad_source, acc_type_t<scalar_t>* grad_shift,
                                        void* workspace, cudaStream_t stream);

}  // namespace fastmotion
