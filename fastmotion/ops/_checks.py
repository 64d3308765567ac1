"""Argument checks shared by the public ops: clear errors that name the argument."""
from __future__ import annotations

import math
import numbers

import torch


def tensor(x, name: str, op: str, min_dim: int = 0, dim: int = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {x.dtype}")
    if dim is not None and x.dim() != dim:
        raise ValueError(f"{op}: {name} must be {dim}-D, got shape {tuple(x.shape)}")
    if x.dim() < min_dim:
        raise ValueError(f"{op}: {name} must have at least {min_dim} dimensions, got shape {tuple(x.shape)}")
    return x


def positive_number(x, name: str, op: str, allow_zero: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{op}: {name} must be a finite number {bound}, got {x!r}")
    return float(x)


def spatial_size(size, name: str, op: str):
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {name} must be a pair (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"{op}: {name} must be positive, got {size!r}")
    return h, w


def nonempty_spatial(x: torch.Tensor, name: str, op: str) -> torch.Tensor:
    """``x``'s last two dimensions (H, W) are at least 1."""
    if x.shape[-2] < 1 or x.shape[-1] < 1:
        raise ValueError(f"{op}: {name} must have a non-empty spatial size (H, W), got shape {tuple(x.shape)}")
    return x


def shape(x: torch.Tensor, expected, name: str, op: str, described: str = "") -> torch.Tensor:
    """``x`` has exactly the shape ``expected`` (``described``: its symbols, such as "(N, K+1, 2)")."""
    if tuple(x.shape) != tuple(expected):
        want = f"{described} = {tuple(expected)}" if described else f"{tuple(expected)}"
        raise ValueError(f"{op}: {name} must be {want}, got {tuple(x.shape)}")
    return x


def choice(x, name: str, op: str, choices):
    if x not in choices:
        raise ValueError(f"{op}: {name} must be one of {tuple(choices)}, got {x!r}")
    return x


def kp_variance(x, op: str):
    """Monkey-Net's ``kp_variance``: 'matrix', 'single', or a fixed variance (a finite number > 0)."""
    if isinstance(x, str):
        if x in ("matrix", "single"):
            return x
        raise ValueError(f"{op}: kp_variance must be 'matrix', 'single' or a finite number > 0, got {x!r}")
    return positive_number(x, "kp_variance", op)


def same_device(op: str, **tensors):
    """All the tensors (None skipped) are on one device. On a hot path with a computed name, compare
    the devices first and call this only to raise."""
    first = None
    for t in tensors.values():  # runs on every call: compare first, build the message only on error
        if isinstance(t, torch.Tensor):
            if first is None:
                first = t.device
            elif t.device != first:
                devices = ", ".join(f"{name} on {t.device}" for name, t in tensors.items()
                                    if isinstance(t, torch.Tensor))
                raise ValueError(f"{op}: tensors must be on one device, got {devices}")
