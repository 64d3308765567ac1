"""Fused ops of Monkey-Net's dense motion module: ``compose_flow`` and ``shifted_warps``.

Backends: reference (plain PyTorch). Fused backends (cpu / cuda / triton) land with issue #5.
"""
from __future__ import annotations

import torch

from fastmotion import backends
from fastmotion.ops import _checks
from fastmotion.reference import warp as ref

COMPOSE_IMPLS = {"reference": backends.Impl(None)}
SHIFT_IMPLS = {"reference": backends.Impl(None)}


def compose_flow(mask_logits: torch.Tensor, kp_shift: torch.Tensor, correction: torch.Tensor | None = None,
                 *, backend: str | None = None) -> torch.Tensor:
    """Absolute sampling grid ``(N, H, W, 2)`` = identity + sum_k softmax(mask_logits)_k kp_shift_k
    (+ correction). mask_logits ``(N, K+1, H, W)``, kp_shift ``(N, K+1, 2)``, correction ``(N, 2, H, W)``."""
    op = "compose_flow"
    _checks.tensor(mask_logits, "mask_logits", op, dim=4)
    _checks.tensor(kp_shift, "kp_shift", op, dim=3)
    n, k1, h, w = mask_logits.shape
    if tuple(kp_shift.shape) != (n, k1, 2):
        raise ValueError(f"{op}: kp_shift must be (N={n}, K+1={k1}, 2), got {tuple(kp_shift.shape)}")
    if correction is not None:
        _checks.tensor(correction, "correction", op, dim=4)
        if tuple(correction.shape) != (n, 2, h, w):
            raise ValueError(f"{op}: correction must be ({n}, 2, {h}, {w}), got {tuple(correction.shape)}")
    _checks.same_device(op, mask_logits=mask_logits, kp_shift=kp_shift, correction=correction)
    backends.select(op, COMPOSE_IMPLS, mask_logits.device, backend)
    return ref.compose_flow(mask_logits, kp_shift, correction)


def shifted_warps(source: torch.Tensor, kp_shift: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """``(N, K+1, C, H, W)``: ``source (N, C, H, W)`` sampled at identity + ``kp_shift (N, K+1, 2)``
    (bilinear, zero padding, align_corners=True), without materialising K+1 copies of the source."""
    op = "shifted_warps"
    _checks.tensor(source, "source", op, dim=4)
    _checks.tensor(kp_shift, "kp_shift", op, dim=3)
    if kp_shift.shape[0] != source.shape[0] or kp_shift.shape[-1] != 2:
        raise ValueError(f"{op}: kp_shift must be (N={source.shape[0]}, K+1, 2), got {tuple(kp_shift.shape)}")
    _checks.same_device(op, source=source, kp_shift=kp_shift)
    backends.select(op, SHIFT_IMPLS, source.device, backend)
    return ref.shifted_warps(source, kp_shift)
