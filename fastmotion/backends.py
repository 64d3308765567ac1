"""Which implementation of an op runs: ``reference`` | ``cpu`` | ``cuda`` | ``triton``.

Selection order: an explicit ``backend=`` argument, then ``fastmotion.use_backend(...)`` (a
context manager), then the ``FASTMOTION_BACKEND`` environment variable, then the tensor's
device default (CUDA tensors: triton, cuda, reference; CPU tensors: cpu, reference).

A backend chosen by default that is missing falls back quietly to the next one; a backend
asked for by name (argument, context or environment) that cannot run raises a RuntimeError
that says why and how to get it.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Mapping, Optional

import torch

from fastmotion import _ext

BACKENDS = ("reference", "cpu", "cuda", "triton")
ENV_VAR = "FASTMOTION_BACKEND"
DEFAULT_ORDER = {"cuda": ("triton", "cuda", "reference"), "cpu": ("cpu", "reference")}

_override: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("fastmotion_backend", default=None)


@dataclass(frozen=True)
class Impl:
    """One backend's implementation of an op. ``cpp_op``: the ``fastmotion::`` operator whose
    compiled kernel it needs (cpu/cuda backends), so availability is checked per op."""

    fn: Callable
    cpp_op: Optional[str] = None


def impl_table(cpp_fn: Optional[Callable], cpp_op: str, triton_fn: Optional[Callable]) -> Dict[str, Impl]:
    """An op's backends: the reference, the compiled ``fastmotion::<cpp_op>`` (one function for the
    cpu and cuda kernels, which the dispatcher picks by device) and, when importable, Triton."""
    impls = {"reference": Impl(None), "cpu": Impl(cpp_fn, cpp_op=cpp_op), "cuda": Impl(cpp_fn, cpp_op=cpp_op)}
    if triton_fn is not None:
        impls["triton"] = Impl(triton_fn)
    return impls


def _check_name(name: str, source: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS} (or 'auto'), got {name!r}")
    return name


@contextlib.contextmanager
def use_backend(name: Optional[str]) -> Iterator[None]:
    """Run fastmotion ops inside the block on ``name`` (``None`` or ``'auto'``: device default)."""
    if name in (None, "auto"):
        token = _override.set(None)
    else:
        token = _override.set(_check_name(name, "use_backend(name)"))
    try:
        yield
    finally:
        _override.reset(token)


def requested_backend() -> Optional[str]:
    """The backend named by the innermost ``use_backend`` block or by ``FASTMOTION_BACKEND``."""
    name = _override.get()
    if name is not None:
        return name
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env in ("", "auto"):
        return None
    return _check_name(env, f"environment variable {ENV_VAR}")


def _probe_triton() -> Optional[str]:
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"triton is not installed ({exc}); `pip install triton` (Linux)"
    return None


# Probed once at import (TRITON_INTERPRET is read by triton when kernels are defined, so it must
# be set before fastmotion is imported anyway); plain globals keep select() traceable by dynamo.
_TRITON_ERROR = _probe_triton()
_TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_interpreted() -> bool:
    """Triton kernels run on the CPU (slowly) when TRITON_INTERPRET=1 was set before import."""
    return _TRITON_INTERPRET


def unavailable_reason(name: str, device_type: str, cpp_op: Optional[str] = None) -> Optional[str]:
    """Why backend ``name`` cannot run an op on ``device_type`` tensors (None if it can)."""
    if name == "reference":
        return None
    if name == "triton":
        if _TRITON_ERROR:
            return _TRITON_ERROR
        if device_type == "cuda":
            return None
        if device_type == "cpu" and triton_interpreted():
            return None
        return f"triton kernels need CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors); got {device_type} tensors"
    module, err = _ext.load()
    if module is None:
        return (f"{err}; reinstall fastmotion with a compiler available and without "
                "FASTMOTION_SKIP_EXT (`pip install --no-build-isolation fastmotion`)")
    if name == "cpu":
        if device_type != "cpu":
            return f"the cpu backend runs CPU tensors only; got {device_type} tensors"
        if cpp_op and not _ext.has_kernel(cpp_op, "CPU"):
            return f"this build of fastmotion._C has no CPU kernel for {cpp_op}; rebuild fastmotion"
        return None
    if name == "cuda":
        if device_type != "cuda":
            return f"the cuda backend runs CUDA tensors only; got {device_type} tensors"
        if not getattr(module, "with_cuda", 0):
            return ("fastmotion._C was built without CUDA kernels; rebuild with a CUDA build of torch "
                    "and nvcc on PATH (or FASTMOTION_FORCE_CUDA=1)")
        if cpp_op and not _ext.has_kernel(cpp_op, "CUDA"):
            return f"this build of fastmotion._C has no CUDA kernel for {cpp_op}; rebuild fastmotion"
        return None
    raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")


def select(op: str, impls: Mapping[str, Impl], device: torch.device, backend: Optional[str] = None) -> str:
    """Name of the backend that runs ``op`` for tensors on ``device``."""
    device_type = device.type if isinstance(device, torch.device) else torch.device(device).type
    requested = _check_name(backend, "backend") if backend not in (None, "auto") else requested_backend()
    if requested is not None:
        if requested not in impls:
            raise RuntimeError(f"{op}: backend {requested!r} does not implement this op "
                               f"(implemented: {sorted(impls)})")
        reason = unavailable_reason(requested, device_type, impls[requested].cpp_op)
        if reason:
            raise RuntimeError(f"{op}: backend {requested!r} is not available: {reason}")
        return requested
    for name in DEFAULT_ORDER.get(device_type, ("reference",)):
        if name in impls and unavailable_reason(name, device_type, impls[name].cpp_op) is None:
            return name
    return "reference"


def status() -> Dict[str, Dict[str, Optional[str]]]:
    """For ``fastmotion info``: per backend and device type, None if usable else the reason."""
    out = {}
    for name in BACKENDS:
        out[name] = {dev: unavailable_reason(name, dev) for dev in ("cpu", "cuda")}
        if not torch.cuda.is_available() and out[name]["cuda"] is None:
            out[name]["cuda"] = "no CUDA device is visible on this machine"
    return out
