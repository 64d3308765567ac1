"""NVTX ranges around the stages of a frame (keypoints, dense motion, warp, decode), for Nsight
Systems timelines. Off unless ``FASTMOTION_NVTX=1``: then ``range(name)`` is a shared no-op
context and costs one attribute check per stage.

Uses the ``nvtx`` package when installed, else ``torch.cuda.nvtx`` (which needs a CUDA build).
"""
from __future__ import annotations

import contextlib
import os

ENV_VAR = "FASTMOTION_NVTX"
ENABLED = os.environ.get(ENV_VAR, "").lower() in ("1", "true", "yes", "on")
_NULL = contextlib.nullcontext()


def _backend():
    try:
        import nvtx as package

        return lambda name: package.annotate(name, domain="fastmotion")
    except ImportError:
        pass
    import torch

    if torch.version.cuda is None:
        return None
    return torch.cuda.nvtx.range


_RANGE = _backend() if ENABLED else None


def range(name: str):  # noqa: A001 - reads as nvtx.range(...) at the call sites
    """A context manager marking ``name`` on the NVTX timeline (a no-op unless enabled)."""
    if _RANGE is None:
        return _NULL
    return _RANGE(name)
