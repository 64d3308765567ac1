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


def same_device(op: str, **tensors):
    first = None
    for t in tensors.values():  # runs on every call: compare first, build the message only on error
        if isinstance(t, torch.Tensor):
            if first is None:
                first = t.device
            elif t.device != first:
                devices = {name: t.device for name, t in tensors.items() if isinstance(t, torch.Tensor)}
                raise ValueError(f"{op}: tensors must be on one device, got {devices}")
