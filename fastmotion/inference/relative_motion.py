"""The original ``normalize_kp`` for a stream of frames, with everything that depends only on the
source and the anchor frame computed once.

Per frame only tensor arithmetic remains (no host round trip, no ``eigh``), so the step can be
captured in a CUDA graph: the movement scale (convex hulls, on the host) and the inverse of the
anchor's covariance are computed when the anchor is set and kept in buffers that a new anchor
overwrites in place. Equal to :func:`fastmotion.models.normalize_kp` with ``kp_initial`` = the
anchor's keypoints (tested).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from fastmotion.models.normalize import _movement_mult

MIN_EIGENVALUE = 1e-6  # the original's make_symetric_matrix


def symmetric_positive_2x2(var: torch.Tensor, min_eig: float = MIN_EIGENVALUE) -> torch.Tensor:
    """``make_symmetric_positive`` for ``(..., 2, 2)`` in closed form: symmetrise, then replace
    eigenvalues <= 0 by ``min_eig`` (spectral projectors of a 2x2 matrix; float64 inside as the
    original's eigen-decomposition)."""
    sym = ((var + var.transpose(-1, -2)) / 2).double()
    a, b, c = sym[..., 0, 0], sym[..., 0, 1], sym[..., 1, 1]
    mid = (a + c) / 2
    rad = torch.sqrt(((a - c) / 2) ** 2 + b * b)
    low, high = mid - rad, mid + rad
    eye = torch.eye(2, dtype=sym.dtype, device=sym.device)
    distinct = (rad > 0)[..., None, None]
    # projector on the eigenvector of `low`: (sym - high I) / (low - high); I/2 when the eigenvalues are equal
    denom = torch.where(distinct, (low - high)[..., None, None], torch.ones_like(sym))
    p_low = torch.where(distinct, (sym - high[..., None, None] * eye) / denom, eye / 2)
    p_high = eye - p_low
    low = torch.where(low <= 0, torch.full_like(low, min_eig), low)
    high = torch.where(high <= 0, torch.full_like(high, min_eig), high)
    out = low[..., None, None] * p_low + high[..., None, None] * p_high
    return out.to(var.dtype)


class RelativeMotion:
    """``kp_norm = normalize(kp_driving)`` against a fixed source and anchor.

    Args: the config's ``normalization_params`` as keywords (``move_location`` = relative
    motion, ``movement_mult``, ``adapt_variance``, ``clip_mean``).
    """

    def __init__(self, move_location=False, movement_mult=False, adapt_variance=False, clip_mean=False):
        self.move_location = bool(move_location)
        self.movement_mult = bool(movement_mult) and self.move_location
        self.adapt_variance = bool(adapt_variance)
        self.clip_mean = bool(clip_mean)
        self._buffers: Optional[Dict[str, torch.Tensor]] = None

    @property
    def needs_anchor(self) -> bool:
        return self.move_location or self.adapt_variance

    @torch.no_grad()
    def set(self, kp_source: Dict[str, torch.Tensor], kp_anchor: Optional[Dict[str, torch.Tensor]]) -> None:
        """Source keypoints ``(B, K, 2)`` and the anchor frame's; buffers are overwritten in place
        when their shapes are unchanged (a captured CUDA graph keeps reading them)."""
        if self.needs_anchor and kp_anchor is None:
            raise ValueError("RelativeMotion.set: relative motion / adapt_variance needs the anchor frame's keypoints")
        new = {"source_mean": kp_source["mean"]}
        if self.move_location:
            new["anchor_mean"] = kp_anchor["mean"]
            if self.movement_mult:
                mult = _movement_mult(kp_source["mean"], kp_anchor["mean"])
            else:
                mult = torch.ones(kp_source["mean"].shape[0], dtype=kp_source["mean"].dtype,
                                  device=kp_source["mean"].device)
            new["mult"] = mult.view(-1, 1, 1)
        if self.adapt_variance:
            if "var" not in kp_source or "var" not in kp_anchor:
                raise ValueError("RelativeMotion: adapt_variance needs keypoint covariances ('var')")
            new["anchor_var_inv"] = torch.linalg.inv(kp_anchor["var"])
            new["source_var"] = kp_source["var"]
        old = self._buffers
        if old is not None and old.keys() == new.keys() and all(old[k].shape == v.shape and old[k].dtype == v.dtype
                                                                 and old[k].device == v.device
                                                                 for k, v in new.items()):
            for k, v in new.items():
                old[k].copy_(v)
        else:
            self._buffers = {k: v.clone() for k, v in new.items()}

    def __call__(self, kp_driving: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if self._buffers is None:
            raise RuntimeError("RelativeMotion: call set(kp_source, kp_anchor) first")
        buf = self._buffers
        out = dict(kp_driving)
        if self.move_location:
            out["mean"] = (kp_driving["mean"] - buf["anchor_mean"]) * buf["mult"] + buf["source_mean"]
        if self.clip_mean:
            out["mean"] = out["mean"].clamp(-1, 1)
        if self.adapt_variance and "var" in kp_driving:
            out["var"] = symmetric_positive_2x2(kp_driving["var"] @ buf["anchor_var_inv"] @ buf["source_var"])
        return out
