"""Reference of the keypoint detector head: softmax heatmap -> keypoint mean and covariance.

The original ``gaussian2kp`` (Monkey-Net, modules/keypoint_detector.py) after its softmax,
for any number of leading dimensions: logits ``(..., K, H, W)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastmotion.reference.grid import make_coordinate_grid

# The original adds this to the softmax heatmap "to avoid nan in variance" (not renormalised).
HEATMAP_EPS = 1e-7


def smallest_singular(var: torch.Tensor) -> torch.Tensor:
    """Smallest singular value of ``(..., 2, 2)`` matrices, as the original computes it.

    Returns ``(..., 1)``. The radicands are clamped at 0 (the original's would round below zero,
    giving NaN, for nearly rank-1 matrices), with a zero gradient there (not sqrt's NaN).
    """
    a, b, c, d = var[..., 0, 0], var[..., 0, 1], var[..., 1, 0], var[..., 1, 1]
    s1 = a**2 + b**2 + c**2 + d**2
    s2 = (a**2 + b**2 - c**2 - d**2) ** 2
    s2 = _sqrt0(s2 + 4 * (a * c + b * d) ** 2)
    return _sqrt0((s1 - s2) / 2).unsqueeze(-1)


def _sqrt0(x: torch.Tensor) -> torch.Tensor:
    """sqrt(max(x, 0)) with gradient 0 where x <= 0 (sqrt's own would be inf * 0 = NaN there)."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))), torch.zeros_like(x))


def clip_covariance(var: torch.Tensor, clip_variance: float) -> torch.Tensor:
    """Rescale each covariance whose smallest singular value ``sg`` is below ``clip_variance``
    by ``clip_variance / sg`` (the original's ``max(min_norm, sg) * var / sg``). A singular
    matrix (``sg == 0``) cannot be fixed by scaling and is returned unchanged."""
    sg = smallest_singular(var).unsqueeze(-1)
    positive = sg > 0
    safe = torch.where(positive, sg, torch.ones_like(sg))
    scale = torch.where(positive, torch.clamp(safe, min=clip_variance) / safe, torch.ones_like(sg))
    return var * scale


def heatmap_moments(logits: torch.Tensor, temperature: float = 0.1, kp_variance="matrix",
                    clip_variance=None):
    """Keypoint mean ``(..., K, 2)`` and variance of ``softmax(logits / temperature)``.

    var is ``(..., K, 2, 2)`` for ``"matrix"``, ``(..., K, 1, 1)`` for ``"single"`` and ``None``
    when ``kp_variance`` is a number (a fixed variance the detector does not estimate). Half and
    bfloat16 logits are computed in float32 and the results rounded to their dtype.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        # computed in float32, as the original's softmax under autocast (and the fused kernels);
        # logits / T in half would overflow to inf for a small temperature
        mean, var = heatmap_moments(logits.float(), temperature, kp_variance, clip_variance)
        return mean.to(logits.dtype), (None if var is None else var.to(logits.dtype))
    shape = logits.shape
    h, w = shape[-2:]
    heatmap = F.softmax(logits.reshape(*shape[:-2], h * w) / temperature, dim=-1).view(shape)
    heatmap = heatmap.unsqueeze(-1) + HEATMAP_EPS  # (..., K, H, W, 1)
    # In the heatmap's dtype, as the original (float32 under autocast, whose softmax runs in float32).
    grid = make_coordinate_grid((h, w), dtype=heatmap.dtype, device=logits.device)
    mean = (heatmap * grid).sum(dim=(-3, -2))  # (..., K, 2)

    if kp_variance == "matrix":
        mean_sub = grid - mean.unsqueeze(-2).unsqueeze(-2)  # (..., K, H, W, 2)
        var = torch.matmul(mean_sub.unsqueeze(-1), mean_sub.unsqueeze(-2))
        var = (var * heatmap.unsqueeze(-1)).sum(dim=(-4, -3))  # (..., K, 2, 2)
        if clip_variance:
            var = clip_covariance(var, clip_variance)
    elif kp_variance == "single":
        mean_sub = grid - mean.unsqueeze(-2).unsqueeze(-2)
        var = (mean_sub**2 * heatmap).sum(dim=(-3, -2))
        var = var.mean(dim=-1, keepdim=True).unsqueeze(-1)  # (..., K, 1, 1)
    else:
        var = None
    return mean, var
