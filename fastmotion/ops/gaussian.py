"""``render_gaussians`` and ``keypoint_heatmap_embedding``: Gaussian keypoint heatmaps.

Backends: reference (plain PyTorch). Fused backends (cpu / cuda / triton) land with issue #4.
"""
from __future__ import annotations

import numbers

import torch

from fastmotion import backends
from fastmotion.ops import _checks
from fastmotion.reference import gaussian as ref

IMPLS = {"reference": backends.Impl(None)}
EMBED_IMPLS = {"reference": backends.Impl(None)}


def _check_var(var, mean, op):
    if isinstance(var, numbers.Real) and not isinstance(var, bool):
        return _checks.positive_number(var, "var", op)
    _checks.tensor(var, "var", op)
    k_shape = tuple(mean.shape[:-1])
    if var.dim() != mean.dim() + 1 or tuple(var.shape[:-2]) != k_shape or tuple(var.shape[-2:]) not in ((2, 2), (1, 1)):
        raise ValueError(f"{op}: var must be {k_shape + (2, 2)} or {k_shape + (1, 1)} (or a number), "
                         f"got shape {tuple(var.shape)}")
    return var


def render_gaussians(mean: torch.Tensor, var, spatial_size, *, backend: str | None = None) -> torch.Tensor:
    """Gaussian heatmaps ``(..., K, H, W)`` of keypoints ``mean (..., K, 2)`` with covariance
    ``var`` ``(..., K, 2, 2)``, isotropic variance ``(..., K, 1, 1)`` or a fixed number."""
    op = "render_gaussians"
    _checks.tensor(mean, "mean", op, min_dim=2)
    if mean.shape[-1] != 2:
        raise ValueError(f"{op}: mean must be (..., K, 2), got shape {tuple(mean.shape)}")
    var = _check_var(var, mean, op)
    size = _checks.spatial_size(spatial_size, "spatial_size", op)
    backends.select(op, IMPLS, mean.device, backend)
    return ref.render_gaussians(mean, var, size)


def keypoint_heatmap_embedding(kp_driving, kp_source, spatial_size, norm_const=100, heatmap_type="difference",
                               add_background=True, kp_variance="matrix", *, backend: str | None = None):
    """Heatmap channels of Monkey-Net's movement embedding, ``(..., K+1, H, W)``
    (``(..., K, H, W)`` without ``add_background``). See the reference for the exact math."""
    op = "keypoint_heatmap_embedding"
    if heatmap_type not in ("difference", "gaussian"):
        raise ValueError(f"{op}: heatmap_type must be 'difference' or 'gaussian', got {heatmap_type!r}")
    if norm_const != "sum":
        norm_const = _checks.positive_number(norm_const, "norm_const", op)
    for name, kp in (("kp_driving", kp_driving), ("kp_source", kp_source)):
        if heatmap_type == "gaussian" and name == "kp_source":
            continue
        if not isinstance(kp, dict) or "mean" not in kp:
            raise TypeError(f"{op}: {name} must be a dict with 'mean' (and 'var'), got {type(kp).__name__}")
        if kp_variance in ("matrix", "single") and "var" not in kp:
            raise ValueError(f"{op}: {name} has no 'var' but kp_variance={kp_variance!r}")
    size = _checks.spatial_size(spatial_size, "spatial_size", op)
    backends.select(op, EMBED_IMPLS, kp_driving["mean"].device, backend)
    return ref.keypoint_heatmap_embedding(kp_driving, kp_source, size, norm_const, heatmap_type,
                                          add_background, kp_variance)
