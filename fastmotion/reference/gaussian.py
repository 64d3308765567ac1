"""Reference of Gaussian keypoint rendering (the original ``kp2gaussian``) and of the heatmap
channels of the original ``MovementEmbeddingModule``."""
from __future__ import annotations

import numbers

import torch

from fastmotion.reference.grid import make_coordinate_grid


def render_gaussians(mean: torch.Tensor, var, spatial_size) -> torch.Tensor:
    """``exp(-0.5 (g - mean)^T var^-1 (g - mean))`` on the ``(H, W)`` grid.

    mean ``(..., K, 2)``; var ``(..., K, 2, 2)`` (full covariance), ``(..., K, 1, 1)``
    (isotropic) or a number (fixed variance). Returns ``(..., K, H, W)``.
    """
    grid = make_coordinate_grid(spatial_size, dtype=mean.dtype, device=mean.device)
    mean_sub = grid - mean.unsqueeze(-2).unsqueeze(-2)  # (..., K, H, W, 2)
    if isinstance(var, numbers.Number):
        under_exp = (mean_sub**2).sum(-1) / var
    elif var.shape[-2:] == (1, 1):
        under_exp = (mean_sub**2).sum(-1) / var  # (..., K, 1, 1) broadcasts over H, W
    else:
        inv_var = torch.linalg.inv(var).unsqueeze(-3).unsqueeze(-3)  # (..., K, 1, 1, 2, 2)
        under_exp = torch.matmul(torch.matmul(mean_sub.unsqueeze(-2), inv_var), mean_sub.unsqueeze(-1))
        under_exp = under_exp.squeeze(-1).squeeze(-1)
    return torch.exp(-0.5 * under_exp)


def _variance(kp, kp_variance):
    if kp_variance in ("matrix", "single"):
        return kp["var"]
    return kp_variance


def _normalize(heatmap, norm_const):
    if norm_const == "sum":
        return heatmap / heatmap.sum(dim=(-2, -1), keepdim=True)
    return heatmap / norm_const


def keypoint_heatmap_embedding(kp_driving, kp_source, spatial_size, norm_const=100,
                               heatmap_type="difference", add_background=True, kp_variance="matrix"):
    """Heatmap channels of the movement embedding, ``(..., K (+1), H, W)``.

    ``"difference"``: normalised driving Gaussians minus normalised source Gaussians;
    ``"gaussian"``: the driving Gaussians alone. Normalisation divides by ``norm_const`` or,
    for ``"sum"``, by each heatmap's sum. With ``add_background`` a zero channel comes first.
    """
    heatmap = _normalize(render_gaussians(kp_driving["mean"], _variance(kp_driving, kp_variance), spatial_size),
                         norm_const)
    if heatmap_type == "difference":
        source = render_gaussians(kp_source["mean"], _variance(kp_source, kp_variance), spatial_size)
        heatmap = heatmap - _normalize(source, norm_const)
    if add_background:
        zeros = heatmap.new_zeros(heatmap.shape[:-3] + (1,) + heatmap.shape[-2:])
        heatmap = torch.cat([zeros, heatmap], dim=-3)
    return heatmap
