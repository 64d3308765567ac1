"""Reference of Gaussian keypoint rendering (the original ``kp2gaussian``) and of the heatmap
channels of the original ``MovementEmbeddingModule``.

Degenerate input (the same rule in every backend; the original raised in ``torch.gesv`` on a
singular covariance and produced 0/0 = NaN for an empty sum-normalised heatmap):

* The 2x2 covariance is inverted in closed form, ``adj(var) / max(det(var), DET_EPS)``. For every
  covariance with ``det >= DET_EPS`` (a Gaussian wider than ~1e-3 grid units, i.e. far below a
  pixel) this is exactly the inverse the original computes. A singular or nearly singular
  covariance gets its determinant clamped (the original's ``matrix_inverse(eps)`` rule): the
  heatmap stays finite; an all-zero covariance renders as a flat map of ones.
* An isotropic variance ``v`` (``'single'`` or a fixed number) is the matrix ``v * I``:
  precision ``v / max(v**2, DET_EPS)``.
* The quadratic form is clamped at 0 before the exponential, so a matrix that is not positive
  semi-definite (not a covariance) still gives heatmaps in [0, 1] instead of overflowing.
* ``norm_const="sum"``: a heatmap whose discrete sum is 0 (the Gaussian lies entirely off the
  grid or underflows) normalises to zeros instead of 0/0.
* A finite keypoint so far off the grid that the quadratic form exceeds ``FAR_QUAD`` on every
  pixel (its heatmap is exp(-1000) = 0 in any precision) is moved towards the grid to where that
  still holds: the heatmap stays exactly 0 and its gradients 0, but the quadratic form no longer
  overflows (a mean of 1e19 in float32 made inf - inf = NaN, and 0 * inf = NaN gradients).

So finite input never produces inf or NaN; NaN in the input propagates to the heatmaps it
touches. Half and bfloat16 inputs are computed in float32 (as the fused kernels do) and the
result is rounded to the input dtype.
"""
from __future__ import annotations

import numbers

import torch

from fastmotion.reference.grid import make_coordinate_grid

# Smallest determinant used when inverting a covariance (see the module docstring).
DET_EPS = 1e-12
# A quadratic form above this on every pixel renders exp(-1000) = 0 (see the module docstring).
FAR_QUAD = 2000.0


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def inverse_covariance(var: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of ``(..., 2, 2)`` covariances with the determinant clamped at DET_EPS."""
    a, b, c, d = var[..., 0, 0], var[..., 0, 1], var[..., 1, 0], var[..., 1, 1]
    det = torch.clamp(a * d - b * c, min=DET_EPS)
    adj = torch.stack([d, -b, -c, a], dim=-1).view(var.shape)
    return adj / det.unsqueeze(-1).unsqueeze(-1)


def isotropic_precision(var):
    """``1 / v`` as the inverse of ``v * I``: ``v / max(v**2, DET_EPS)`` (a number or a tensor)."""
    if isinstance(var, numbers.Number):
        return var / max(var * var, DET_EPS)
    return var / torch.clamp(var * var, min=DET_EPS)


def render_gaussians(mean: torch.Tensor, var, spatial_size) -> torch.Tensor:
    """``exp(-0.5 (g - mean)^T var^-1 (g - mean))`` on the ``(H, W)`` grid.

    mean ``(..., K, 2)``; var ``(..., K, 2, 2)`` (full covariance), ``(..., K, 1, 1)``
    (isotropic) or a number (fixed variance). Returns ``(..., K, H, W)`` in the dtype of mean
    and var promoted together.
    """
    log_heatmap, out_dtype = _render(mean, var, spatial_size)
    return torch.exp(log_heatmap).to(out_dtype)


def near_grid(mean: torch.Tensor, pa, pb, pc) -> torch.Tensor:
    """``mean (..., 2)`` with the keypoints whose Gaussian is 0 on the whole grid moved to where it
    still is (the module docstring). ``pa, pb, pc``: the quadratic form's coefficients
    ``q = pa dx^2 + pb dx dy + pc dy^2`` shaped like ``mean[..., 0]``. With lmin the smallest
    eigenvalue of the symmetrised precision, ``q >= lmin |g - mean|^2``; every pixel g is in
    [-1, 1]^2, so a mean at Chebyshev radius ``2 + sqrt(FAR_QUAD / lmin)`` is far enough."""
    # Only where the heatmap is 0 does the scale differ from 1: it needs no gradient (and sqrt(0)'s
    # would be inf * 0 = NaN for isotropic precisions).
    mean_d = mean.detach()
    pa, pb, pc = (torch.as_tensor(p).detach() for p in (pa, pb, pc))
    far = mean_d.abs().amax(dim=-1)
    hb, hd = 0.5 * pb, 0.5 * (pa - pc)
    lmax = 0.5 * (pa + pc) + torch.sqrt(hd * hd + hb * hb)
    positive = lmax > 0
    lmin = torch.where(positive, (pa * pc - hb * hb) / torch.where(positive, lmax, torch.ones_like(lmax)),
                       torch.zeros_like(lmax))
    definite = lmin > 0  # (NaN compares false: such keypoints keep their mean)
    reach = 2 + torch.sqrt(FAR_QUAD / torch.where(definite, lmin, torch.ones_like(lmin)))
    move = definite & torch.isfinite(far) & (far > reach)
    scale = torch.where(move, reach / torch.where(move, far, torch.ones_like(far)), torch.ones_like(far))
    return mean * scale.unsqueeze(-1)


def _render(mean, var, spatial_size):
    """The heatmaps' logarithms ``-0.5 max(q, 0)`` in the compute dtype, and the dtype the caller
    should return."""
    out_dtype = mean.dtype if isinstance(var, numbers.Number) else torch.promote_types(mean.dtype, var.dtype)
    dtype = _compute_dtype(out_dtype)
    mean = mean.to(dtype)
    grid = make_coordinate_grid(spatial_size, dtype=dtype, device=mean.device)
    if isinstance(var, numbers.Number):
        precision = isotropic_precision(float(var))
        p = torch.full_like(mean[..., 0], precision)
        mean_sub = grid - near_grid(mean, p, 0 * p, p).unsqueeze(-2).unsqueeze(-2)  # (..., K, H, W, 2)
        under_exp = (mean_sub**2).sum(-1) * precision
    elif var.shape[-2:] == (1, 1):
        precision = isotropic_precision(var.to(dtype))  # (..., K, 1, 1) broadcasts over H, W
        p = precision[..., 0, 0]
        mean_sub = grid - near_grid(mean, p, 0 * p, p).unsqueeze(-2).unsqueeze(-2)
        under_exp = (mean_sub**2).sum(-1) * precision
    else:
        inv_var = inverse_covariance(var.to(dtype))  # (..., K, 2, 2)
        mean = near_grid(mean, inv_var[..., 0, 0], inv_var[..., 0, 1] + inv_var[..., 1, 0], inv_var[..., 1, 1])
        mean_sub = grid - mean.unsqueeze(-2).unsqueeze(-2)
        inv_var = inv_var.unsqueeze(-3).unsqueeze(-3)  # (..., K, 1, 1, 2, 2)
        under_exp = torch.matmul(torch.matmul(mean_sub.unsqueeze(-2), inv_var), mean_sub.unsqueeze(-1))
        under_exp = under_exp.squeeze(-1).squeeze(-1)
    return -0.5 * torch.clamp(under_exp, min=0), out_dtype


def _variance(kp, kp_variance):
    if kp_variance in ("matrix", "single"):
        return kp["var"]
    return kp_variance


def _normalize(log_heatmap, norm_const):
    """The heatmaps ``exp(log_heatmap)`` divided by ``norm_const`` or by their own sum. The sum
    normalisation is written as a softmax of the logarithms: ``heatmap / sum`` is the same number,
    but its gradient ``heatmap / sum**2`` overflows in float32 when the sum nearly underflows."""
    heatmap = torch.exp(log_heatmap)
    if norm_const == "sum":
        total = heatmap.sum(dim=(-2, -1), keepdim=True)
        flat = log_heatmap.flatten(-2)
        normalized = torch.softmax(flat, dim=-1).view(log_heatmap.shape)
        return torch.where(total == 0, torch.zeros_like(normalized), normalized)
    return heatmap / norm_const


def keypoint_heatmap_embedding(kp_driving, kp_source, spatial_size, norm_const=100,
                               heatmap_type="difference", add_background=True, kp_variance="matrix"):
    """Heatmap channels of the movement embedding, ``(..., K (+1), H, W)``.

    ``"difference"``: normalised driving Gaussians minus normalised source Gaussians (the
    leading dimensions of kp_source broadcast against kp_driving's); ``"gaussian"``: the driving
    Gaussians alone. Normalisation divides by ``norm_const`` or, for ``"sum"``, by each heatmap's
    sum. With ``add_background`` a zero channel comes first.
    """
    heatmap, dtype = _render(kp_driving["mean"], _variance(kp_driving, kp_variance), spatial_size)
    heatmap = _normalize(heatmap, norm_const)
    if heatmap_type == "difference":
        source, source_dtype = _render(kp_source["mean"], _variance(kp_source, kp_variance), spatial_size)
        dtype = torch.promote_types(dtype, source_dtype)
        heatmap = heatmap - _normalize(source, norm_const)
    if add_background:
        zeros = heatmap.new_zeros(heatmap.shape[:-3] + (1,) + heatmap.shape[-2:])
        heatmap = torch.cat([zeros, heatmap], dim=-3)
    return heatmap.to(dtype)
