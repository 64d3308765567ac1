// CUDA launchers of warp_features: several feature maps warped by one grid resized to each map's
// size (nearest, or linear with align_corners=False), bilinear / zeros / align_corners=True
// sampling. Torch-free. scalar_t: float, double, __half, __nv_bfloat16; the grid and its
// gradient are acc_type_t<scalar_t> (float; double for double) and contiguous (N, h, w, 2).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "fastmotion/cuda_types.h"

namespace fastmotion {

// One feature map of a call. Pointers are of the call's scalar_t.
struct WarpFeatureMap {
  const void* feature;  // (N, C, H, W) with strides (sn, sc, sh, sw), in elements
  void* out;            // forward: warped map (N, C, H, W) contiguous; backward: grad_feature (or null)
  const void* grad;     // backward: grad_out (N, C, H, W) contiguous
  int64_t C, H, W;
  int64_t sn, sc, sh, sw;
};

// Maps warped by one launch (a call with more maps uses several launches).
constexpr int kMaxWarpMaps = 8;

template <typename scalar_t>
cudaError_t warp_features_forward_cuda(const WarpFeatureMap* maps, int count, const acc_type_t<scalar_t>* grid,
                                       int64_t N, int64_t h, int64_t w, bool nearest, cudaStream_t stream);

// Bytes of device workspace the backward needs: the coordinate-gradient partials and, for
// half / bfloat16 maps, float32 scratch for the feature gradients.
size_t warp_features_backward_workspace(const WarpFeatureMap* maps, int count, int64_t N, bool features_requires_grad,
                                        bool grid_requires_grad, size_t scalar_size, size_t acc_size);

// grad_grid (N, h, w, 2) is written when not null; maps[i].out (grad_feature, contiguous) when
// not null. Per group of maps: one kernel scatters grad_out into the feature gradients (atomics:
// an arbitrary grid has no gather form) and reduces grad_out * d(sample)/d(coordinate) over a
// chunk of channels per pixel; one kernel gathers, for every grid cell, the partials of the
// output pixels whose resize reads it (the transpose of the resize, deterministic); half and
// bfloat16 feature gradients are accumulated in float32 and converted by a third kernel.
template <typename scalar_t>
cudaError_t warp_features_backward_cuda(const WarpFeatureMap* maps, int count, const acc_type_t<scalar_t>* grid,
                                        int64_t N, int64_t h, int64_t w, bool nearest,
                                        acc_type_t<scalar_t>* grad_grid, void* workspace, cudaStream_t stream);

}  // namespace fastmotion
