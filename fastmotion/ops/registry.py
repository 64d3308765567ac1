"""One registry of the public fused ops, read by every benchmark: ``bench/`` (pytest-benchmark
suites, the call-overhead benchmark, ``bench/profile_kernels.py``) and ``fastmotion bench``.

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
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from fastmotion.ops import _schema

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


def _registered(name: str, backend: str):
    return getattr(torch.ops.fastmotion, name + ("_triton" if backend == "triton" else ""))


# --- heatmap_moments: the keypoint detector's head -----------------------------------------------

def _heatmap_inputs(device, dtype, shape, seed=0):
    logits = torch.randn(shape, generator=_generator(seed)) * 0.5
    return Inputs((_put(logits, device, dtype),),
                  {"temperature": 0.1, "kp_variance": "matrix", "clip_variance": 0.001})


def _heatmap_bytes(inputs, mode):
    (logits,) = inputs.tensors
    stats = logits.numel() // (logits.shape[-1] * logits.shape[-2]) * 6 * logits.element_size()
    fwd = _nbytes(logits) + stats
    return fwd if mode == "fwd" else fwd + stats + 2 * _nbytes(logits)


def _heatmap_reference(logits, temperature, kp_variance, clip_variance):
    from fastmotion import reference

    return reference.heatmap_moments(logits, temperature, kp_variance, clip_variance)


def _heatmap_fused(logits, temperature, kp_variance, clip_variance, backend=None):
    from fastmotion.ops import heatmap_moments

    return heatmap_moments(logits, temperature, kp_variance, clip_variance, backend=backend)


def _heatmap_registered(tensors, options, backend):
    (logits,) = tensors
    h, w = logits.shape[-2:]
    return _registered("heatmap_moments_forward", backend)(logits.reshape(-1, h, w), options["temperature"], 0,
                                                           options["clip_variance"] or 0.0)[0]


# --- Gaussian heatmaps and the movement embedding -------------------------------------------------

def _gaussian_inputs(device, dtype, shape, embed=False):
    n, k, h, w = shape
    tensors = _keypoints(n, k, 0) + (_keypoints(n, k, 1) if embed else ())
    return Inputs(tuple(_put(t, device, dtype) for t in tensors), {"spatial_size": (h, w)})


def _gaussian_bytes(inputs, mode):
    n, k = inputs.tensors[0].shape[:2]
    h, w = inputs.options["spatial_size"]
    embed = len(inputs.tensors) == 4
    item = inputs.tensors[0].element_size()
    heat = n * (k + embed) * h * w * item
    kp = _nbytes(*inputs.tensors)
    return heat + kp if mode == "fwd" else 2 * heat + 2 * kp


def _render_reference(mean, var, spatial_size):
    from fastmotion import reference

    return reference.render_gaussians(mean, var, spatial_size)


def _render_fused(mean, var, spatial_size, backend=None):
    from fastmotion.ops import render_gaussians

    return render_gaussians(mean, var, spatial_size, backend=backend)


_EMBED = {"norm_const": 100, "heatmap_type": "difference", "add_background": True, "kp_variance": "matrix"}


def _embed_reference(mean_d, var_d, mean_s, var_s, spatial_size):
    from fastmotion import reference

    return reference.keypoint_heatmap_embedding({"mean": mean_d, "var": var_d}, {"mean": mean_s, "var": var_s},
                                               spatial_size, **_EMBED)


def _embed_fused(mean_d, var_d, mean_s, var_s, spatial_size, backend=None):
    from fastmotion.ops import keypoint_heatmap_embedding

    return keypoint_heatmap_embedding({"mean": mean_d, "var": var_d}, {"mean": mean_s, "var": var_s},
                                      spatial_size, **_EMBED, backend=backend)


# --- grid_sample ------------------------------------------------------------------------------------

_GRID_OPTIONS = {"mode": "bilinear", "padding_mode": "zeros", "align_corners": True}  # Monkey-Net's warps


def _grid_sample_inputs(device, dtype, shape):
    n, c, h, w = shape
    x = torch.randn(shape, generator=_generator(0))
    return Inputs((_put(x, device, dtype), smooth_flow_grid(n, h, w, device, dtype)), dict(_GRID_OPTIONS))


def _grid_sample_bytes(inputs, mode):
    x, grid = inputs.tensors
    out = x.shape[0] * x.shape[1] * grid.shape[1] * grid.shape[2] * x.element_size()
    fwd = _nbytes(x, grid) + out
    # backward: read grad_out, input, grid; write grad_input, grad_grid
    return fwd if mode == "fwd" else fwd + out + 2 * _nbytes(x, grid)


def _grid_sample_reference(x, grid, mode, padding_mode, align_corners):
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


def _grid_sample_fused(x, grid, mode, padding_mode, align_corners, backend=None):
    from fastmotion.ops import grid_sample

    return grid_sample(x, grid, mode, padding_mode, align_corners, backend=backend)


def _grid_sample_registered(tensors, options, backend):
    x, grid = tensors
    return _registered("grid_sample_forward", backend)(x, grid, _schema.MODE_CODES[options["mode"]],
                                                       _schema.PADDING_CODES[options["padding_mode"]],
                                                       options["align_corners"])


# --- dense motion: compose_flow and shifted_warps (K = 10 keypoints + background) ------------------

K1 = 11


def _compose_inputs(device, dtype, shape):
    n, k1, h, w = shape
    g = _generator(0)
    logits = torch.randn(shape, generator=g)
    shift = torch.randn(n, k1, 2, generator=g) * 0.2
    corr = torch.randn(n, 2, h, w, generator=g) * 0.05
    return Inputs(tuple(_put(t, device, dtype) for t in (logits, shift, corr)))


def _compose_bytes(inputs, mode):
    logits, shift, corr = inputs.tensors
    grid = _nbytes(corr)  # (N, H, W, 2): the correction's size
    fwd = _nbytes(logits, shift, corr) + grid
    return fwd if mode == "fwd" else fwd + grid + _nbytes(logits) + _nbytes(logits, shift, corr)


def _compose_reference(logits, shift, corr):
    from fastmotion import reference

    return reference.compose_flow(logits, shift, corr)


def _compose_fused(logits, shift, corr, backend=None):
    from fastmotion.ops import compose_flow

    return compose_flow(logits, shift, corr, backend=backend)


def _shift_inputs(device, dtype, shape, k1=K1):
    n = shape[0]
    g = _generator(0)
    source = torch.rand(shape, generator=g)
    shift = torch.randn(n, k1, 2, generator=g) * 0.2
    shift[:, 0] = 0.0  # Monkey-Net's background block does not move
    return Inputs((_put(source, device, dtype), _put(shift, device, dtype)))


def _shift_bytes(inputs, mode):
    source, shift = inputs.tensors
    out = _nbytes(source) * shift.shape[1]
    fwd = _nbytes(source, shift) + out
    return fwd if mode == "fwd" else fwd + out + 2 * _nbytes(source, shift)


def _shift_reference(source, shift):
    from fastmotion import reference

    return reference.shifted_warps(source, shift)


def _shift_fused(source, shift, backend=None):
    from fastmotion.ops import shifted_warps

    return shifted_warps(source, shift, backend=backend)


# --- warp_features: the generator's encoder skips warped by one flow ------------------------------

# taichi: num_blocks=5, block_expansion=32, 64x64 frames, nearest resize of the 64x64 flow;
# vox: num_blocks=7, 256x256 frames, dense motion at scale 0.25 (64x64 flow), trilinear resize.
WARP_CONFIGS = {
    "taichi": dict(channels=(3, 64, 128, 256, 512, 1024), top=64, grid=64, mode="nearest"),
    "vox": dict(channels=(3, 64, 128, 256, 512, 1024, 1024, 1024), top=256, grid=64, mode="trilinear"),
    "tiny": dict(channels=(2, 2), top=8, grid=4, mode="nearest"),
}


def _warp_inputs(device, dtype, config, n):
    cfg = WARP_CONFIGS[config]
    g = _generator(0)
    skips = [torch.randn(n, c, cfg["top"] >> i, cfg["top"] >> i, generator=g) for i, c in enumerate(cfg["channels"])]
    grid = smooth_flow_grid(n, cfg["grid"], cfg["grid"], amplitude=0.1)
    return Inputs(tuple(_put(t, device, dtype) for t in skips + [grid]), {"mode": cfg["mode"]})


def _warp_bytes(inputs, mode):
    *skips, grid = inputs.tensors
    feat = _nbytes(*skips)
    fwd = 2 * feat + _nbytes(grid)
    return fwd if mode == "fwd" else fwd + 3 * feat + 2 * _nbytes(grid)


def _warp_reference(*tensors, mode):
    from fastmotion import reference

    return reference.warp_features(list(tensors[:-1]), tensors[-1], mode)


def _warp_fused(*tensors, mode, backend=None):
    from fastmotion.ops import warp_features

    return warp_features(list(tensors[:-1]), tensors[-1], mode, backend=backend)


def _warp_registered(tensors, options, backend):
    mode = _schema.MODE_NEAREST if options["mode"] == "nearest" else _schema.MODE_BILINEAR  # resize: nearest or linear
    return _registered("warp_features_forward", backend)(list(tensors[:-1]), tensors[-1], mode)


def _warp_cases():
    cases = [("taichi", 1), ("taichi", 16), ("vox", 1), ("vox", 4)]
    return tuple(Case(f"{cfg} skips N={n}", {"config": cfg, "n": n}, key=(cfg, n) == ("taichi", 16),
                      quick=(cfg, n) == ("taichi", 1)) for cfg, n in cases)


# --- the registry ------------------------------------------------------------------------------------

_SCATTER = "FASTMOTION_GRID_SAMPLE_SCATTER"

OPS: Dict[str, OpSpec] = {spec.name: spec for spec in (
    OpSpec("heatmap_moments", "heatmap_moments", "IMPLS", _heatmap_reference, _heatmap_fused, _heatmap_inputs,
           _heatmap_bytes,
           _cases([(1, 10, 64, 64), (32, 10, 64, 64), (8, 10, 128, 128)], key=[(32, 10, 64, 64)],
                  quick=[(1, 10, 64, 64)]),
           tiny={"shape": (1, 2, 4, 4)}, registered=_heatmap_registered),
    OpSpec("render_gaussians", "render_gaussians", "IMPLS", _render_reference, _render_fused, _gaussian_inputs,
           _gaussian_bytes,
           _cases([(1, 10, 64, 64), (32, 10, 64, 64), (8, 10, 128, 128), (1, 10, 256, 256)],
                  key=[(32, 10, 64, 64)], quick=[(1, 10, 64, 64)]),
           tiny={"shape": (1, 2, 4, 4)}),
    OpSpec("keypoint_heatmap_embedding", "render_gaussians", "EMBED_IMPLS", _embed_reference, _embed_fused,
           lambda device, dtype, shape: _gaussian_inputs(device, dtype, shape, embed=True), _gaussian_bytes,
           _cases([(1, 10, 64, 64), (32, 10, 64, 64), (8, 10, 128, 128)], key=[(32, 10, 64, 64)],
                  quick=[(1, 10, 64, 64)]),
           tiny={"shape": (1, 2, 4, 4)}),
    OpSpec("grid_sample", "grid_sample", "IMPLS", _grid_sample_reference, _grid_sample_fused, _grid_sample_inputs,
           _grid_sample_bytes,
           _cases([(1, 32, 64, 64), (32, 64, 64, 64), (1, 32, 256, 256)], key=[(32, 64, 64, 64)],
                  quick=[(1, 32, 64, 64)]),
           tiny={"shape": (1, 2, 4, 4)}, reference_is="F.grid_sample", registered=_grid_sample_registered,
           # the Triton backend's deterministic gather input gradient (what
           # torch.use_deterministic_algorithms(True) selects)
           variants={"triton-gather": ("triton", {_SCATTER: "gather"})}),
    OpSpec("compose_flow", "compose_flow", "IMPLS", _compose_reference, _compose_fused, _compose_inputs,
           _compose_bytes,
           _cases([(1, K1, 64, 64), (32, K1, 64, 64), (1, K1, 256, 256)], key=[(32, K1, 64, 64)],
                  quick=[(1, K1, 64, 64)]),
           tiny={"shape": (1, 3, 4, 4)},
           registered=lambda t, o, b: _registered("compose_flow_forward", b)(*t)),
    OpSpec("shifted_warps", "shifted_warps", "IMPLS", _shift_reference, _shift_fused, _shift_inputs,
           _shift_bytes,
           _cases([(1, 3, 64, 64), (32, 3, 64, 64), (1, 3, 256, 256)], key=[(32, 3, 64, 64)],
                  quick=[(1, 3, 64, 64)], label=lambda s: f"{_shape_label(s)} K+1={K1}"),
           tiny={"shape": (1, 2, 4, 4), "k1": 3},
           registered=lambda t, o, b: _registered("shifted_warps_forward", b)(*t)),
    OpSpec("warp_features", "warp_features", "IMPLS", _warp_reference, _warp_fused, _warp_inputs, _warp_bytes,
           _warp_cases(), tiny={"config": "tiny", "n": 1}, registered=_warp_registered),
)}


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
