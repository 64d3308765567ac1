"""Loads the compiled extension ``fastmotion._C`` once and remembers why it failed, if it did.

Everything is computed once and kept in plain module globals (no lru_cache, no imports on
later calls) so that torch.compile can trace backend selection without graph breaks.
"""
from __future__ import annotations

import importlib

import torch

_STATE = None  # (module or None, reason or None, {dispatch_key: {op names}})


def _probe():
    try:
        module = importlib.import_module("fastmotion._C")
    except ImportError as exc:  # not built (FASTMOTION_SKIP_EXT=1) or built against another torch
        return None, f"the compiled extension fastmotion._C is not importable ({exc})", {}
    kernels = {}
    for key in ("CPU", "CUDA"):
        names = torch._C._dispatch_get_registrations_for_dispatch_key(key)
        kernels[key] = {n.split("::", 1)[1] for n in names if n.startswith("fastmotion::")}
    return module, None, kernels


def load():
    """Return ``(module, None)`` when the extension imports, else ``(None, reason)``."""
    global _STATE
    if _STATE is None:
        _STATE = _probe()
    return _STATE[0], _STATE[1]


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether ``fastmotion::<op>`` has a compiled kernel for ``dispatch_key`` ('CPU', 'CUDA')."""
    module, _ = load()
    return module is not None and op in _STATE[2].get(dispatch_key, ())


def register_compiled_op(fwd: str, bwd: str, fake_forward, fake_backward, backward, setup_context) -> bool:
    """Fake kernels of ``fastmotion::<fwd>`` / ``<bwd>`` and the autograd formula of ``<fwd>``, when
    the extension defines the op; returns whether it did (the op is then usable from Python)."""
    if load()[0] is None or not hasattr(torch.ops.fastmotion, fwd):
        return False
    torch.library.register_fake(f"fastmotion::{fwd}")(fake_forward)
    torch.library.register_fake(f"fastmotion::{bwd}")(fake_backward)
    torch.library.register_autograd(f"fastmotion::{fwd}", backward, setup_context=setup_context)
    return True


load()
