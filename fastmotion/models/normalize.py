"""Test-time keypoint normalisation of the original ``transfer.py`` (``normalize_kp``).

Motion transfer moves the *relative* motion of the driving video onto the source keypoints:

- ``move_location``: ``kp = (kp_driving - kp_driving_initial) * mult + kp_source``;
- ``movement_mult``: ``mult = sqrt(area(source kp hull) / area(initial driving kp hull))``
  (area of the 2-D convex hull of the keypoint means);
- ``clip_mean``: clamp the means to [-1, 1];
- ``adapt_variance``: ``var = var_driving @ inv(var_driving_initial) @ var_source``, then made
  symmetric positive definite (symmetrised, eigenvalues <= 0 replaced by 1e-6).

The hull area is computed here (Andrew's monotone chain + shoelace) instead of with scipy: the
areas of K points are tiny problems, and this keeps scipy out of the dependencies.
The original takes the area of batch element 0 for the whole batch (it ran with batch 1); this
uses each element's own hull, which is the same for batch 1.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch


def convex_hull_area(points) -> float:
    """Area of the convex hull of 2-D points ``(K, 2)`` (0 for fewer than 3 non-collinear points)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = np.unique(pts, axis=0)  # sorted by x, then y
    if len(pts) < 3:
        return 0.0

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def chain(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = chain(pts), chain(pts[::-1])
    hull = np.array(lower[:-1] + upper[:-1])
    x, y = hull[:, 0], hull[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _movement_mult(kp_source_mean: torch.Tensor, kp_initial_mean: torch.Tensor) -> torch.Tensor:
    """Per batch element ``sqrt(source hull area) / sqrt(initial driving hull area)``, shape ``(B,)``."""
    src = kp_source_mean.detach().reshape(kp_source_mean.shape[0], -1, 2).cpu().double().numpy()
    ini = kp_initial_mean.detach().reshape(kp_initial_mean.shape[0], -1, 2).cpu().double().numpy()
    mult = []
    for b in range(src.shape[0]):
        a_src, a_ini = convex_hull_area(src[b]), convex_hull_area(ini[b])
        if a_src <= 0 or a_ini <= 0:
            raise ValueError(f"normalize_kp(movement_mult=True): the keypoints of batch element {b} are collinear "
                             "(convex hull area 0), so the movement scale is undefined")
        mult.append(np.sqrt(a_src) / np.sqrt(a_ini))
    return torch.tensor(mult, dtype=kp_source_mean.dtype, device=kp_source_mean.device)


def make_symmetric_positive(var: torch.Tensor, min_eig: float = 1e-6) -> torch.Tensor:
    """Symmetrise ``(..., 2, 2)`` matrices and replace eigenvalues <= 0 by ``min_eig`` (the original's
    ``make_symetric_matrix``)."""
    sym = (var + var.transpose(-1, -2)) / 2
    eig, vec = torch.linalg.eigh(sym.double())
    eig = torch.where(eig <= 0, torch.full_like(eig, min_eig), eig)
    out = vec @ torch.diag_embed(eig) @ vec.transpose(-1, -2)
    return out.to(var.dtype)


def normalize_kp(kp_video: Dict[str, torch.Tensor], kp_appearance: Dict[str, torch.Tensor], movement_mult=False,
                 move_location=False, adapt_variance=False, clip_mean=False, *,
                 kp_initial: Optional[Dict[str, torch.Tensor]] = None) -> Dict[str, torch.Tensor]:
    """The original's ``normalize_kp(kp_video, kp_appearance, ...)``.

    Video keypoints ``(B, D, K, 2)`` use their first frame as the initial driving pose (as the
    original); for single frames ``(B, K, 2)`` pass ``kp_initial`` (the driving video's first
    frame). ``kp_appearance``: the source keypoints, ``(B, 1, K, 2)`` or ``(B, K, 2)``.
    Returns a new dict; the inputs are not modified.
    """
    for name, kp in (("kp_video", kp_video), ("kp_appearance", kp_appearance)):
        if not isinstance(kp, dict) or "mean" not in kp:
            raise TypeError(f"normalize_kp: {name} must be a keypoint dict with 'mean', got {type(kp).__name__}")
    mean = kp_video["mean"]
    if mean.dim() not in (3, 4) or mean.shape[-1] != 2:
        raise ValueError(f"normalize_kp: kp_video['mean'] must be (B, D, K, 2) or (B, K, 2), got {tuple(mean.shape)}")
    video = mean.dim() == 4
    needs_initial = movement_mult or move_location or adapt_variance
    if kp_initial is None:
        if needs_initial and not video:
            raise ValueError("normalize_kp: single-frame keypoints (B, K, 2) need kp_initial (the keypoints of the "
                             "driving video's first frame)")
        kp_initial = {k: v[:, 0:1] for k, v in kp_video.items()} if video else None

    def like_video(kp):  # source / initial keypoints (B, K, ...) -> (B, 1, K, ...) against a video
        if kp is None or not video or kp["mean"].dim() == 4:
            return kp
        return {k: v.unsqueeze(1) for k, v in kp.items()}

    kp_initial = like_video(kp_initial)
    appearance = like_video(kp_appearance)
    out = dict(kp_video)
    if move_location or movement_mult:
        mult = _movement_mult(appearance["mean"], kp_initial["mean"]) if movement_mult else None
    if move_location:
        diff = mean - kp_initial["mean"]
        if mult is not None:
            diff = diff * mult.view(-1, *([1] * (diff.dim() - 1)))
        out["mean"] = diff + appearance["mean"]
    if clip_mean:
        out["mean"] = out["mean"].clamp(-1, 1)
    if adapt_variance and "var" in kp_video:
        if "var" not in kp_initial or "var" not in appearance:
            raise ValueError("normalize_kp(adapt_variance=True): kp_initial and kp_appearance need 'var'")
        var = kp_video["var"] @ torch.linalg.inv(kp_initial["var"]) @ appearance["var"]
        out["var"] = make_symmetric_positive(var)
    return out
