"""Public fastmotion ops: argument checks, autograd and backend dispatch.

Every op takes a keyword-only ``backend=`` ('reference' | 'cpu' | 'cuda' | 'triton');
see :mod:`fastmotion.backends` for how the default is chosen.

Every op is twice differentiable on every backend (gradient penalties, torch.func hessians):
the first-order backward runs the fused kernels; while a graph of the backward is being built
(``create_graph=True``, torch.func) it runs the reference's differentiable math instead
(:func:`fastmotion.ops._eager.builds_graph`).
"""
from fastmotion.ops.compose_flow import compose_flow
from fastmotion.ops.grid_sample import grid_sample
from fastmotion.ops.heatmap_moments import heatmap_moments
from fastmotion.ops.render_gaussians import keypoint_heatmap_embedding, render_gaussians
from fastmotion.ops.shifted_warps import shifted_warps
from fastmotion.ops.warp_features import warp_features

__all__ = [
    "heatmap_moments",
    "render_gaussians",
    "keypoint_heatmap_embedding",
    "grid_sample",
    "compose_flow",
    "shifted_warps",
    "warp_features",
]
