"""One registry of the public fused ops, read by every benchmark: ``bench/`` (pytest-benchmark
suites, the call-overhead benchmark, ``bench/profile_kernels.py``) and ``fastmotion bench``.
Each op module ``fastmotion/ops/<op>.py`` ends by registering its :class:`OpSpec` with
:func:`register`; this module holds what the specs share and the read API (:data:`OPS`, :func:`get`).

Each :class:`OpSpec` says what an op is called, where its backend table lives, how to call its
reference, its fused implementation and PyTorch's own op where one exists, how to make its
inputs at the benchmark shapes (Monkey-Net's: batch 1 inference and batch 16-32 training, K = 10
keypoints, 64x64 to 256x256), and how many bytes a call must move. An op registered here shows up
in all of them.

Inputs: ``make_inputs(device, dtype, **size)`` returns :class:`Inputs`: the tensors gradients flow
to (positional arguments) and the fixed options (keyword arguments); every callable of a spec is
``fn(*inputs.tensors, **inputs.options)``, fused ones with ``backend=`` added.

Bytes moved: what a call must read and write at least (each input read once, each output written
once; forward + backward also reads the output gradients and the inputs again and writes the
input gradients), in the inputs' element size; GB/s = bytes moved / time.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple

import torch

MODES = ("fwd", "fwd+bwd")


@dataclass(frozen=True)
class Inputs:
    tensors: Tuple[torch.Tensor, ...]
    options: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One benchmark shape. ``key``: a headline shape (torch.compile runs there when compiles
    are limited); ``quick``: the shape ``fastmotion bench --quick`` runs."""

    label: str
    size: Mapping
    key: bool = False
    quick: bool = False


@dataclass(frozen=True)
class OpSpec:
    name: str
    impl_module: str            # fastmotion.ops.<impl_module>.<impl_table> is the op's backend table
    impl_table: str
    reference: Callable         # reference(*tensors, **options): the plain-PyTorch spec
    fused: Callable             # fused(*tensors, backend=..., **options): the public op
    make_inputs: Callable       # make_inputs(device, dtype, **size) -> Inputs
    bytes_moved: Callable       # bytes_moved(inputs, mode) -> int
    cases: Tuple[Case, ...]
    tiny: Mapping               # size of the call-overhead case (kernel ~1 us: dispatch dominates)
    native: Optional[Callable] = None      # PyTorch's own op, where one exists (and is not the reference)
    reference_is: str = ""                 # what the reference is when that is PyTorch's op ("F.grid_sample")
    registered: Optional[Callable] = None  # registered(tensors, options, backend): the torch.ops.fastmotion op
    variants: Mapping[str, Tuple[str, Mapping[str, str]]] = field(default_factory=dict)
    # ^ extra providers: name -> (backend, environment while it runs)

    def impls(self) -> Mapping:
        """The op's backend table (``fastmotion.backends.Impl`` per backend)."""
        return getattr(importlib.import_module(f"fastmotion.ops.{self.impl_module}"), self.impl_table)

    def case(self, label: str) -> Case:
        for c in self.cases:
            if c.label == label:
                return c
        raise KeyError(f"{self.name}: no case {label!r}; cases: {[c.label for c in self.cases]}")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _put(t: torch.Tensor, device, dtype) -> torch.Tensor:
    return t.to(device=device, dtype=dtype).contiguous()


def _nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def smooth_flow_grid(n: int, h: int, w: int, device=None, dtype=torch.float32, amplitude: float = 0.05,
                     seed: int = 0) -> torch.Tensor:
    """``(n, h, w, 2)`` sampling grid: the identity plus a smooth displacement of a few pixels,
    different per image (what a dense-motion flow looks like)."""
    ys = torch.linspace(-1, 1, h, dtype=torch.float64)
    xs = torch.linspace(-1, 1, w, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([gx, gy], -1).expand(n, h, w, 2)
    phase = torch.arange(n, dtype=torch.float64).view(n, 1, 1, 1) + seed
    return _put(base + amplitude * torch.sin(3.0 * base.flip(-1) + phase), device, dtype)


def _keypoints(n: int, k: int, seed: int):
    """Keypoint means inside the frame and small positive-definite covariances."""
    g = _generator(seed)
    mean = torch.rand(n, k, 2, generator=g) * 1.6 - 0.8
    a = torch.randn(n, k, 2, 2, generator=g) * 0.1
    return mean, a @ a.transpose(-1, -2) + 0.002 * torch.eye(2)


def _shape_label(shape: Sequence[int]) -> str:
    return "x".join(str(s) for s in shape)


def _cases(shapes, key=(), quick=(), label=_shape_label, size=lambda s: {"shape": s}):
    return tuple(Case(label(s), size(s), key=s in key, quick=s in quick) for s in shapes)


K1 = 11  # dense motion's blocks (compose_flow, shifted_warps): K = 10 keypoints + the background


def _registered(name: str, backend: str):
    return getattr(torch.ops.fastmotion, name + ("_triton" if backend == "triton" else ""))


# --- the registry ------------------------------------------------------------------------------------

_SPECS: Dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    """Add an op's spec: called once per spec, at the end of the op's module ``fastmotion/ops/<op>.py``."""
    if spec.name in _SPECS:
        raise ValueError(f"op {spec.name!r} is registered twice")
    _SPECS[spec.name] = spec
    return spec


class _Registered(Mapping):
    """Every registered spec by name, in the order of ``fastmotion.ops.__all__`` (the public ops),
    so reports and test ids keep one order whichever op module was imported first."""

    def _ordered(self) -> Dict[str, OpSpec]:
        ops = importlib.import_module("fastmotion.ops")  # imports every op module: each registers its spec
        order = {name: i for i, name in enumerate(getattr(ops, "__all__", ()))}
        return dict(sorted(_SPECS.items(), key=lambda item: order.get(item[0], len(order))))

    def __getitem__(self, name: str) -> OpSpec:
        return self._ordered()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ordered())

    def __len__(self) -> int:
        return len(self._ordered())


OPS: Mapping[str, OpSpec] = _Registered()


def get(name: str) -> OpSpec:
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; registered ops: {', '.join(OPS)}") from None


def outputs_of(result) -> list:
    """The output tensors of an op's result (a tensor, or a tuple / list of them)."""
    if isinstance(result, torch.Tensor):
        return [result]
    return [t for t in result if isinstance(t, torch.Tensor)]
