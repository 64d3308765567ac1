// The warp_features op: its schema and the checks that the CPU kernel and the CUDA binding share.
//
// warp_features_forward(features [(N,C_i,H_i,W_i)], grid (N,h,w,2), mode) -> [(N,C_i,H_i,W_i)]
//     each feature map sampled (bilinear, zeros, align_corners=True) at the grid resized to its
//     (H_i, W_i) by F.interpolate - mode 1 'nearest', or 0 linear ('bilinear' / 'trilinear',
//     align_corners=False; GridSampleMode) - with the resize folded into the sampling.
// warp_features_backward(grad_outs, features, grid, mode, features_requires_grad, grid_requires_grad)
//     -> ([grad_feature_i] (empty list if not features_requires_grad), grad_grid (N,h,w,2) or (0,))
// grid and grad_grid are in the features' accumulation dtype (float; double for double).
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "fastmotion/sampling.h"
#include "ops/dense_motion.h"

namespace fastmotion {

// Registers the schema above; called once, by the CPU kernel file.
inline void define_warp_features_schema(torch::Library& m) {
  m.def("warp_features_forward(Tensor[] features, Tensor grid, int mode) -> Tensor[]");
  m.def(
      "warp_features_backward(Tensor[] grad_outs, Tensor[] features, Tensor grid, int mode, "
      "bool features_requires_grad, bool grid_requires_grad) -> (Tensor[], Tensor)");
}

// true for mode kModeNearest, false for kModeBilinear (the linear resize, align_corners=False).
inline bool warp_features_nearest(int64_t mode) {
  TORCH_CHECK(mode == kModeBilinear || mode == kModeNearest,
              "warp_features: mode must be 0 (linear: 'bilinear' / 'trilinear') or 1 ('nearest'), got ", mode);
  return mode == kModeNearest;
}

// features: (N, C_i, H_i, W_i), one floating dtype, H_i, W_i >= 1; grid (N, h, w, 2) in the
// accumulation dtype of the features (float; double for double), h, w >= 1; one device.
// Returns warp_features_nearest(mode).
inline bool check_warp_features_forward(at::TensorList features, const at::Tensor& grid, int64_t mode) {
  const char* op = "warp_features";
  const bool nearest = warp_features_nearest(mode);
  TORCH_CHECK(grid.dim() == 4 && grid.size(3) == 2, op, ": grid must be (N, h, w, 2), got ", grid.sizes());
  TORCH_CHECK(grid.size(1) >= 1 && grid.size(2) >= 1, op, ": grid's h and w must be >= 1, got ", grid.sizes());
  for (size_t i = 0; i < features.size(); ++i) {
    const at::Tensor& f = features[i];
    TORCH_CHECK(f.dim() == 4, op, ": features[", i, "] must be (N, C, H, W), got ", f.sizes());
    TORCH_CHECK(at::isFloatingType(f.scalar_type()), op, ": features[", i, "] must be floating, got ",
                f.scalar_type());
    TORCH_CHECK(f.scalar_type() == features[0].scalar_type(), op, ": all features must share one dtype; features[",
                i, "] is ", f.scalar_type(), ", features[0] is ", features[0].scalar_type());
    TORCH_CHECK(f.size(0) == grid.size(0), op, ": features[", i, "] has batch ", f.size(0), ", grid has ",
                grid.size(0));
    TORCH_CHECK(f.size(2) >= 1 && f.size(3) >= 1, op, ": features[", i, "] must have H, W >= 1, got ", f.sizes());
    TORCH_CHECK(f.device() == grid.device(), op, ": features[", i, "] is on ", f.device(), ", grid on ",
                grid.device());
  }
  if (!features.empty()) {
    const auto acc = dense_motion_acc_type(features[0].scalar_type());
    TORCH_CHECK(grid.scalar_type() == acc, op, ": grid must have the accumulation dtype ", acc, ", got ",
                grid.scalar_type());
  }
  return nearest;
}

// grad_outs match features one to one (shape and dtype). Returns warp_features_nearest(mode).
inline bool check_warp_features_backward(at::TensorList grad_outs, at::TensorList features, const at::Tensor& grid,
                                         int64_t mode) {
  const bool nearest = check_warp_features_forward(features, grid, mode);
  TORCH_CHECK(grad_outs.size() == features.size(), "warp_features_backward: got ", grad_outs.size(),
              " gradients for ", features.size(), " feature maps");
  for (size_t i = 0; i < features.size(); ++i) {
    TORCH_CHECK(grad_outs[i].sizes() == features[i].sizes() && grad_outs[i].scalar_type() == features[i].scalar_type(),
                "warp_features_backward: grad_outs[", i, "] must be ", features[i].sizes(), " ",
                features[i].scalar_type(), ", got ", grad_outs[i].sizes(), " ", grad_outs[i].scalar_type());
    TORCH_CHECK(grad_outs[i].device() == grid.device(), "warp_features_backward: grad_outs[", i,
                "] is on another device");
  }
  return nearest;
}

}  // namespace fastmotion
