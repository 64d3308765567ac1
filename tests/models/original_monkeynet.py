"""Import the original Monkey-Net code (a checkout named by MONKEYNET_SRC) for parity tests.

Modern PyTorch needs small compatibility shims, applied only while the original runs
(:func:`original_semantics`): ``torch.gesv`` (removed; ``gesv(B, A)`` solved ``A X = B``) and
``F.grid_sample`` defaulting to ``align_corners=True`` (what it computed in PyTorch 0.4).
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys

import pytest
import torch
import torch.nn.functional as F

ENV = "MONKEYNET_SRC"
MODULES = ("modules.util", "modules.keypoint_detector", "modules.movement_embedding",
           "modules.dense_motion_module", "modules.generator", "modules.discriminator", "modules.losses")


def _gesv(b, a):
    return torch.linalg.solve(a, b), None


_grid_sample = F.grid_sample


def _grid_sample_align_corners(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    return _grid_sample(input, grid, mode=mode, padding_mode=padding_mode,
                        align_corners=True if align_corners is None else align_corners)


@contextlib.contextmanager
def original_semantics():
    """PyTorch 0.4 behaviour the original code relies on, for the duration of the block."""
    had_gesv = hasattr(torch, "gesv")
    old_gesv = getattr(torch, "gesv", None)
    torch.gesv = _gesv
    F.grid_sample = _grid_sample_align_corners
    try:
        yield
    finally:
        F.grid_sample = _grid_sample
        if had_gesv:
            torch.gesv = old_gesv
        else:
            del torch.gesv


def load_original():
    """The original's modules as a namespace dict, or skip when MONKEYNET_SRC is not set."""
    src = os.environ.get(ENV)
    if not src:
        pytest.skip(f"{ENV} not set: point it at a checkout of the original Monkey-Net code "
                    "(github.com/AliaksandrSiarohin/monkey-net) to run the parity tests")
    if not os.path.isdir(os.path.join(src, "modules")):
        pytest.skip(f"{ENV}={src!r} does not contain the original's modules/ folder")
    if src not in sys.path:
        sys.path.insert(0, src)
    return {name.split(".")[-1]: importlib.import_module(name) for name in MODULES}
