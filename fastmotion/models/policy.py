"""When the models' fast path rewrites a layer: the rewrites switch, in one place.

Two switches (DESIGN.md): the op backend (``backend=``: which kernels run the fastmotion ops)
and the model rewrites (BatchNorm folded into convolutions, sub-pixel up-sampling convolutions,
oneDNN pre-packed convolutions, the training BatchNorm + ReLU kernel, the CPU resampling and
GEMM convolutions, the shared heatmaps). They are separate choices, so that a difference can be
bisected: reference ops with the rewrites, fused ops with the original layers, and so on.

Rewrites are on for a module when set so on it (``BackendModule.set_rewrites``), else when
``FASTMOTION_REWRITES`` says so (1 / 0), else unless its op backend is ``reference`` (which then
means the original math throughout).
"""
from __future__ import annotations

import os
from typing import Optional

from fastmotion import backends

REWRITES_ENV = "FASTMOTION_REWRITES"
_ENV_VALUES = {"1": True, "on": True, "true": True, "0": False, "off": False, "false": False}


def check_rewrites(value) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"rewrites must be True, False or None (the default), got {value!r}")


def requested_rewrites() -> Optional[bool]:
    """What ``FASTMOTION_REWRITES`` asks for (None when unset or empty)."""
    env = os.environ.get(REWRITES_ENV, "").strip().lower()
    if env in ("", "auto"):
        return None
    if env not in _ENV_VALUES:
        raise ValueError(f"environment variable {REWRITES_ENV} must be 1 or 0 (or unset), got {env!r}")
    return _ENV_VALUES[env]


def rewrites_on(rewrites: Optional[bool], backend: Optional[str]) -> bool:
    """Whether a module with these settings (``None``: not set on it) runs the model rewrites."""
    if rewrites is not None:
        return rewrites
    requested = requested_rewrites()
    if requested is not None:
        return requested
    return (backend or backends.requested_backend()) != "reference"
