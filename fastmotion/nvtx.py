"""NVTX ranges for Nsight Systems timelines: around the stages of a frame (keypoints, dense
motion, warp, decode) and around op launches (every timed call of ``fastmotion bench`` and the
pytest-benchmark op suites is marked ``<op> <provider> <mode>``). Off by default
(``FASTMOTION_NVTX=1``, read at import, turns it on); off, ``range(name)`` returns one shared
no-op context and costs one attribute check;
bench/test_call_overhead.py measures it (providers ``<backend>`` against ``<backend>+nvtx``).

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
