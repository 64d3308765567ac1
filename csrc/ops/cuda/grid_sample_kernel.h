// CUDA launchers of grid_sample (F.grid_sample for 4-D input). Torch-free: raw pointers, sizes,
// strides and a stream, so TensorRT plugins can reuse them. scalar_t: float, double, __half,
// __nv_bfloat16; interpolation math and gradient accumulation in acc_type_t<scalar_t>.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "fastmotion/cuda_types.h"

namespace fastmotion {

// Sizes and element strides. The input and grad_input share (in_s*); the output and
// grad_output share (out_s*), where the output pixel index is p = i * Wo + j (so out_sP is the
// stride of W_out; outputs must have stride(H_out) == Wo * out_sP). The grid is contiguous
// (N, Ho, Wo, 2).
struct GridSampleGeometry {
  int64_t N, C, H, W, Ho, Wo;
  int64_t in_sN, in_sC, in_sH, in_sW;
  int64_t out_sN, out_sC, out_sP;
};

// output = grid_sample(input, grid). mode: 0 bilinear, 1 nearest; padding: 0 zeros, 1 border,
// 2 reflection.
template <typename scalar_t>
cudaError_t grid_sample_forward_cuda(const scalar_t* input, const scalar_t* grid, scalar_t* output,
                                     const GridSampleGeometry& g, int mode, int padding, bool align_corners,
                                     cudaStream_t stream);

// Number of grid-gradient slots grid_sample_backward_cuda writes for this geometry (channels are
// split over that many blocks when the batch is too small to fill the GPU).
int64_t grid_sample_backward_slots(const GridSampleGeometry& g);

// grad_input (acc type, the input's strides, zero-filled by the caller; nullptr: not needed)
// += d loss / d input. grid_grad_slots (acc type, slots * N * Ho * Wo * 2; nullptr: not needed)
// receives each slot's share of d loss / d grid; the caller adds the slots in order
// (bilinear only: nearest has no grid gradient).
template <typename scalar_t>
cudaError_t grid_sample_backward_cuda(const scalar_t* grad_output, const scalar_t* input, const scalar_t* grid,
                                      acc_type_t<scalar_t>* grad_input, acc_type_t<scalar_t>* grid_grad_slots,
                                      const GridSampleGeometry& g, int mode, int padding, bool align_corners,
                                      cudaStream_t stream);

}  // namespace fastmotion
