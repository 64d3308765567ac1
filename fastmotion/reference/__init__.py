"""Plain-PyTorch oracles of every fastmotion op: readable, differentiable, the spec.

Each function here is what the fused kernels must compute. They follow the original
Monkey-Net code (Siarohin et al., CVPR 2019) operation for operation, generalised to any
number of leading dimensions; they are also the export and fallback path.
"""
from fastmotion.reference.grid import make_coordinate_grid
from fastmotion.reference.heatmap_moments import heatmap_moments, smallest_singular

__all__ = ["make_coordinate_grid", "heatmap_moments", "smallest_singular"]
