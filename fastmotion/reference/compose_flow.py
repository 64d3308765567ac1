"""Reference of ``compose_flow``: the dense motion module's sampling grid from its mask logits."""
from __future__ import annotations

import torch.nn.functional as F

from fastmotion.reference.grid import make_coordinate_grid


def compose_flow(mask_logits, kp_shift, correction=None):
    """Absolute sampling grid ``(N, H, W, 2)`` of the dense motion module.

    ``identity + sum_k softmax(mask_logits)_k * kp_shift_k (+ correction)``, with
    mask_logits ``(N, K+1, H, W)``, kp_shift ``(N, K+1, 2)`` and correction ``(N, 2, H, W)``.
    """
    n, k1, h, w = mask_logits.shape
    mask = F.softmax(mask_logits, dim=1).unsqueeze(2)  # (N, K+1, 1, H, W)
    shift = kp_shift.view(n, k1, 2, 1, 1)
    flow = (mask * shift).sum(dim=1)  # (N, 2, H, W)
    if correction is not None:
        flow = flow + correction
    grid = make_coordinate_grid((h, w), dtype=flow.dtype, device=flow.device)
    return flow.permute(0, 2, 3, 1) + grid
