"""The two switches shared by every Monkey-Net module: the op backend and the model rewrites.

A module's backend (set on the top-level module, propagated to all its fastmotion children)
wins over ``fastmotion.use_backend(...)`` / ``FASTMOTION_BACKEND``; ``None`` defers to those and
then to the device default. The model rewrites (folded BatchNorm, sub-pixel up-sampling convs,
...) are a separate switch (``set_rewrites``, :mod:`fastmotion.models.policy`); by default they
follow the backend: off for ``"reference"`` (the original math with plain PyTorch), else on.
"""
from __future__ import annotations

from typing import Optional

from torch import nn

from fastmotion import backends
from fastmotion.models import policy


def check_backend(name) -> Optional[str]:
    if name in (None, "auto"):
        return None
    if name not in backends.BACKENDS:
        raise ValueError(f"backend must be one of {backends.BACKENDS}, 'auto' or None, got {name!r}")
    return name


class BackendModule(nn.Module):
    """Base of the fastmotion Monkey-Net modules: carries the backend choice."""

    _fm_backend: Optional[str] = None
    _fm_rewrites: Optional[bool] = None

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

    def set_rewrites(self, rewrites: Optional[bool]) -> "BackendModule":
        """Run the model rewrites (True), the original layers (False) or what the environment and
        the backend say (None) in this module and every fastmotion module inside it."""
        rewrites = policy.check_rewrites(rewrites)
        for module in self.modules():
            if isinstance(module, BackendModule):
                module._fm_rewrites = rewrites
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
        """Whether this module runs the model rewrites (see :mod:`fastmotion.models.policy`)."""
        return policy.rewrites_on(self._fm_rewrites, self._fm_backend)
