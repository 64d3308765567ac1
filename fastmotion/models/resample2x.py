"""2x resampling of the fast path: nearest up-sampling and 2x2 average pooling, fast on CPU.

ATen's CPU kernels for ``upsample_nearest2d`` and ``avg_pool2d`` on NCHW tensors run far below
memory speed on the hourglass's small maps (up-sampling: bench/test_resample2x.py). Here:

- up-sampling: the compiled kernel ``fastmotion::upsample2x_nearest``
  (csrc/ops/cpu/resample2x.cpp) where it is built; else, on narrow maps, each element repeated
  along W then H with ``repeat_interleave`` (where ATen's kernel takes over: :mod:`policy`);
- pooling: the even and odd rows, then the even and odd columns, added as strided views.

For channels_last tensors ATen's kernels are fast and are used as they are. Results equal
ATen's (the same four terms, summed in another order, for the pooling). The pooling's backward
(scale by 1/4, repeat, zero the unpooled last row / column of odd sizes) is one pass of the
compiled kernel where it is built.

Backwards: up-sampling uses ATen's ``upsample_nearest2d_backward`` (fast at every size) rather
than the sum over ``repeat_interleave``'s expanded dimensions autograd would record; pooling
keeps only the input's shape (autograd's ``avg_pool2d`` keeps the whole input) and spreads the
output gradient over each 2x2 window with the up-sampling above.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastmotion import _ext
from fastmotion.models import policy

_KERNEL = "upsample2x_nearest"


def _fake_upsample2x(x, out_h, out_w, scale):
    fmt = torch.channels_last if (x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()) \
        else torch.contiguous_format
    return x.new_empty((x.shape[0], x.shape[1], out_h, out_w)).contiguous(memory_format=fmt)


if _ext.has_kernel(_KERNEL, "CPU"):
    torch.library.register_fake(f"fastmotion::{_KERNEL}")(_fake_upsample2x)


def _kernel_ok(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dim() == 4 and _ext.has_kernel(_KERNEL, "CPU")


def _cpu_nchw(x: torch.Tensor) -> bool:
    """A CPU tensor that ATen's slow NCHW kernels would get (channels_last goes to ATen)."""
    return x.device.type == "cpu" and not (x.is_contiguous(memory_format=torch.channels_last)
                                           and not x.is_contiguous())


def _upsample(x: torch.Tensor) -> torch.Tensor:
    if _cpu_nchw(x) and _kernel_ok(x):
        return torch.ops.fastmotion.upsample2x_nearest(x.contiguous(), 2 * x.shape[-2], 2 * x.shape[-1], 1.0)
    if _cpu_nchw(x) and x.shape[-1] <= policy.REPEAT_UPSAMPLE_MAX_WIDTH:
        return x.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)
    return F.interpolate(x, scale_factor=(2, 2), mode="nearest")


def _pool(x: torch.Tensor) -> torch.Tensor:
    if not _cpu_nchw(x):
        return F.avg_pool2d(x, (2, 2))
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # odd sizes: the last row / column is dropped
    rows = x[..., 0:h:2, :w] + x[..., 1:h:2, :w]
    return (rows[..., 0::2] + rows[..., 1::2]).mul_(0.25)


class _Nearest2x(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.size = tuple(x.shape)
        return _upsample(x)

    @staticmethod
    def backward(ctx, grad):
        n, c, h, w = ctx.size
        return torch.ops.aten.upsample_nearest2d_backward(grad, [2 * h, 2 * w], [n, c, h, w], 2.0, 2.0)


class _AvgPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.size = tuple(x.shape[-2:])
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        return _pool(x)

    @staticmethod
    def backward(ctx, grad):
        h, w = ctx.size
        if _kernel_ok(grad) and not torch.is_grad_enabled():  # one pass (double backward: below)
            fmt = torch.channels_last if ctx.channels_last else torch.contiguous_format
            return torch.ops.fastmotion.upsample2x_nearest(grad.contiguous(memory_format=fmt), h, w, 0.25)
        small = grad * 0.25
        if ctx.channels_last:
            # Hand the gradient back in the input's layout (the layer below, BatchNorm + ReLU, reads
            # it next to its saved input): converting the pooled-size gradient costs 1/4 of
            # converting the full one there.
            small = small.contiguous(memory_format=torch.channels_last)
        out = _upsample(small)
        if (h, w) != tuple(out.shape[-2:]):  # odd sizes: the last row / column was not pooled
            out = F.pad(out, (0, w - out.shape[-1], 0, h - out.shape[-2]))
        return out


def _check(x: torch.Tensor, what: str):
    if x.dim() != 4:
        raise ValueError(f"{what}: x must be (N, C, H, W), got shape {tuple(x.shape)}")


def upsample_nearest_2x(x: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=(2, 2))`` (nearest) for a 4-D tensor, with gradients."""
    _check(x, "upsample_nearest_2x")
    if torch.is_grad_enabled() and x.requires_grad:
        return _Nearest2x.apply(x)
    return _upsample(x)


def avg_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool2d(x, 2)`` for a 4-D tensor, keeping nothing but the shape for the backward."""
    _check(x, "avg_pool_2x2")
    if x.shape[-2] < 2 or x.shape[-1] < 2:  # as ATen: no 2x2 window fits
        raise ValueError(f"avg_pool_2x2: x must be at least 2x2, got shape {tuple(x.shape)}")
    if torch.is_grad_enabled() and x.requires_grad:
        return _AvgPool2x2.apply(x)
    return _pool(x)
