"""Exact rewrites of conv layers for the fast path.

- BatchNorm folding: in eval mode ``norm(conv(x))`` is a conv with rescaled weights and bias.
- Sub-pixel up-sampling: ``conv3x3(nearest_upsample_2x(x))`` equals four 2x2 convolutions of
  ``x`` (one per output phase) whose taps are sums of the 3x3 taps; it needs 16 instead of 36
  multiply-adds per low-resolution pixel and never materialises the 4x larger up-sampled input
  (which autograd would otherwise keep for the backward).

Both are the same math as the original up to float rounding (a different summation order).
Weights derived for inference are cached and recomputed when a source tensor changes (its
version counter moves: optimizer steps, ``load_state_dict``, ``.to()``).
"""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# Below this many low-resolution positions (N * H * W) the up-sampling conv is dominated by
# its weights, and the plain path (no weight rewrite) is as fast.
SUBPIXEL_MIN_POSITIONS = 256


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """Activation layout of the fast path: channels_last on CPU, where oneDNN convolutions run
    faster in it (markedly for few channels and large images); unchanged elsewhere."""
    if x.device.type == "cpu" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def cat_channels(parts, fast: bool) -> torch.Tensor:
    """``torch.cat(parts, dim=1)``; on the fast CPU path written straight into a channels_last
    buffer (converting an NCHW part while concatenating costs no extra pass)."""
    parts = list(parts)
    if not fast or parts[0].device.type != "cpu":
        return torch.cat(parts, dim=1)
    if needs_grad(*parts):  # out= does not record autograd
        return torch.cat([fast_layout(p) for p in parts], dim=1)
    n, _, h, w = parts[0].shape
    out = torch.empty((n, sum(p.shape[1] for p in parts), h, w), dtype=parts[0].dtype, device=parts[0].device,
                      memory_format=torch.channels_last)
    return torch.cat(parts, dim=1, out=out)


def needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def foldable(norm: nn.Module) -> bool:
    """BatchNorm that normalises with its running statistics (eval mode)."""
    return (isinstance(norm, nn.modules.batchnorm._BatchNorm) and not norm.training and norm.track_running_stats
            and norm.running_mean is not None and norm.running_var is not None)


def _key(tensors: Sequence[torch.Tensor]):
    return tuple((t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) if t is not None else None
                 for t in tensors)


def cached_weights(owner: nn.Module, name: str, sources: Sequence[torch.Tensor],
                   compute: Callable[[], Tuple[torch.Tensor, ...]]):
    """``compute()`` once per state of ``sources``, kept on ``owner`` (not in its state_dict)."""
    attr = "_fm_cache_" + name
    key = _key(sources)
    entry = owner.__dict__.get(attr)
    if entry is not None and entry[0] == key:
        return entry[1]
    # Plain tensors even inside inference_mode, so the cache stays usable outside it.
    with torch.inference_mode(False), torch.no_grad():
        value = compute()
    owner.__dict__[attr] = (key, value)
    return value


def fold_batchnorm(weight: torch.Tensor, bias, norm: nn.modules.batchnorm._BatchNorm):
    """Weight and bias of ``norm(conv(x))`` with norm's running statistics."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if bias is not None:
        shift = shift + bias * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return weight * scale.view(-1, *([1] * (weight.dim() - 1))), shift


def subpixel_ok(conv: nn.Conv2d) -> bool:
    return (tuple(conv.kernel_size) == (3, 3) and tuple(conv.padding) == (1, 1) and tuple(conv.stride) == (1, 1)
            and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def _phase_taps(w: torch.Tensor, dim: int):
    """3 taps along ``dim`` -> (phase 0, phase 1) pairs of 2 taps each."""
    t0, t1, t2 = w.unbind(dim)
    return torch.stack([t0, t1 + t2], dim), torch.stack([t0 + t1, t2], dim)


def subpixel_weights(weight: torch.Tensor, bias):
    """(Cout, Cin, 3, 3) -> (4 * Cout, Cin, 2, 2): the four output phases (a, b) of a 3x3 conv
    (padding 1) applied after nearest 2x up-sampling, phase-major."""
    phases = []
    for rows in _phase_taps(weight, 2):
        phases.extend(_phase_taps(rows, 3))
    w = torch.cat(phases, 0)
    b = None if bias is None else bias.repeat(4)
    return w, b


def subpixel_conv(x: torch.Tensor, weight4: torch.Tensor, bias4) -> torch.Tensor:
    """``conv3x3(upsample2x(x))`` from the phase weights of :func:`subpixel_weights`."""
    n, _, h, w = x.shape
    cout = weight4.shape[0] // 4
    out = F.conv2d(x, weight4, bias4, padding=1)  # (N, 4 Cout, H + 1, W + 1)
    # Phase (a, b) of output pixel (2i + a, 2j + b) sits at (i + a, j + b) of the phase's channels.
    if out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
        nhwc = out.permute(0, 2, 3, 1).view(n, h + 1, w + 1, 2, 2, cout)
        rows = [torch.stack([nhwc[:, a:a + h, b:b + w, a, b] for b in (0, 1)], dim=3) for a in (0, 1)]
        return torch.stack(rows, dim=2).view(n, 2 * h, 2 * w, cout).permute(0, 3, 1, 2)
    out = out.view(n, 2, 2, cout, h + 1, w + 1)
    rows = [torch.stack([out[:, a, b, :, a:a + h, b:b + w] for b in (0, 1)], dim=-1) for a in (0, 1)]
    return torch.stack(rows, dim=-3).reshape(n, cout, 2 * h, 2 * w)


def use_subpixel(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    return subpixel_ok(conv) and x.shape[0] * x.shape[2] * x.shape[3] >= SUBPIXEL_MIN_POSITIONS
