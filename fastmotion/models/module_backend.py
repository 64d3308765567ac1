"""The ``backend=`` switch shared by every Monkey-Net module.

A module's backend (set on the top-level module, propagated to all its fastmotion children)
wins over ``fastmotion.use_backend(...)`` / ``FASTMOTION_BACKEND``; ``None`` defers to those and
then to the device default. ``"reference"`` runs the original math with plain PyTorch (the
ops' reference implementations, no model-level rewrites); anything else takes the fast path:
fused ops plus the model-level rewrites (folded BatchNorm, sub-pixel up-sampling convs, ...).
"""
from __future__ import annotations

from typing import Optional

from torch import nn

from fastmotion import backends


def check_backend(name) -> Optional[str]:
    if name in (None, "auto"):
        return None
    if name not in backends.BACKENDS:
        raise ValueError(f"backend must be one of {backends.BACKENDS}, 'auto' or None, got {name!r}")
    return name


class BackendModule(nn.Module):
    """Base of the fastmotion Monkey-Net modules: carries the backend choice."""

    _fm_backend: Optional[str] = None

    @property
    def backend(self) -> Optional[str]:
        """The backend named for this module (None: context, environment, device default)."""
        return self._fm_backend

    @backend.setter
    def backend(self, name) -> None:
        self.set_backend(name)

    def set_backend(self, name) -> "BackendModule":
        """Use backend ``name`` in this module and every fastmotion module inside it."""
        name = check_backend(name)
        for module in self.modules():
            if isinstance(module, BackendModule):
                module._fm_backend = name
        return self

    def __getstate__(self):
        # Derived-weight caches (e.g. oneDNN pre-packed weights, which cannot be copied or
        # pickled) are rebuilt on demand; copies and pickles leave them out.
        state = self.__dict__.copy()
        for key in [k for k in state if k.startswith("_fm_cache_")]:
            del state[key]
        return state

    def ops_backend(self) -> Optional[str]:
        """What to pass as ``backend=`` to fastmotion ops (None lets the op decide)."""
        return self._fm_backend

    def fast_path(self) -> bool:
        """True unless this module runs the plain reference math."""
        name = self._fm_backend or backends.requested_backend()
        return name != "reference"
