// How a keypoint's variance is given: the one code shared by heatmap_moments (which variance the
// detector outputs) and the Gaussian heatmaps (which variance they read). The Python ops and the
// Triton kernels pass the same integers (fastmotion/ops/_schema.py).
#pragma once

#include "fastmotion/common.h"

namespace fastmotion {

enum VarMode : int {
  kVarMatrix = 0,  // a (2, 2) covariance matrix
  kVarSingle = 1,  // an isotropic variance: one number v per keypoint, the matrix v I
  kVarFixed = 2,   // a fixed number for every keypoint: no variance tensor
};

// Entries of one keypoint's variance tensor: 4, 1 or 0.
FM_HOST_DEVICE int var_mode_numel(int mode) { return mode == kVarMatrix ? 4 : (mode == kVarSingle ? 1 : 0); }

}  // namespace fastmotion
