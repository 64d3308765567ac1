"""Plain-PyTorch oracles of every fastmotion op: readable, differentiable, the spec.

Each function here is what the fused kernels must compute; op ``foo`` is in ``reference/foo.py``
(``render_gaussians.py`` also holds ``keypoint_heatmap_embedding``, which is built on it). They
follow the original Monkey-Net code (Siarohin et al., CVPR 2019) operation for operation,
generalised to any number of leading dimensions; they are also the export and fallback path.
"""
from fastmotion.reference.compose_flow import compose_flow
from fastmotion.reference.grid import make_coordinate_grid
from fastmotion.reference.grid_sample import grid_sample
from fastmotion.reference.heatmap_moments import heatmap_moments, smallest_singular
from fastmotion.reference.render_gaussians import keypoint_heatmap_embedding, render_gaussians
from fastmotion.reference.shifted_warps import shifted_warps
from fastmotion.reference.warp_features import resize_grid, warp_features

__all__ = ["make_coordinate_grid", "heatmap_moments", "smallest_singular", "render_gaussians",
           "keypoint_heatmap_embedding", "grid_sample", "compose_flow", "shifted_warps", "resize_grid", "warp_features"]
