"""``grid_sample``: a ``torch.nn.functional.grid_sample``-compatible warp for 4-D inputs.

Backends: reference (F.grid_sample), cpu (C++), cuda (CUDA C++), triton. The fused backends
implement modes ``bilinear`` and ``nearest`` with every padding mode and both align_corners
values, and gradients to the input and the grid; ``bicubic`` always runs the reference (an
explicitly requested fused backend raises).

Compatibility with F.grid_sample (checked by tests/ops/test_grid_sample.py):
  * the sampling math follows PyTorch's CPU kernel operation by operation (unnormalize,
    border clip, reflection, round-half-to-even for nearest, the same fused multiply-adds as
    its AVX2 build), so float32/float64 forward results on the CPU are bit-identical to
    F.grid_sample's, and every backend makes the same choices (which pixel `nearest` picks);
  * NaN / inf grid values behave as in PyTorch's CPU kernel: with zeros padding a bilinear
    sample at a NaN/inf coordinate is NaN, a nearest one is 0; border/reflection map a NaN
    coordinate to pixel 0 (reflection maps +-inf there too). In the backward a NaN coordinate
    gives a NaN grid gradient and no input gradient (PyTorch's CPU kernel writes outside
    grad_input in that case under border/reflection padding; we add nothing);
  * half / bfloat16 inputs interpolate in float32 (PyTorch's CPU kernel rounds every step to
    the input dtype) and return the input dtype;
  * layout: a channels-last input gives a channels-last output (values are the same;
    F.grid_sample always returns NCHW-contiguous).

Input gradients without atomics on CPU (deterministic: bit-identical from run to run and for
any thread count). On GPU the input gradient is a scatter whose targets depend on the data, so
no thread owns an input pixel: the CUDA backend adds each pixel's taps with global atomics, but
first combines, within a warp of 32 consecutive pixels, every pixel's east corners with its right
neighbour's west corners (one atomic per pixel, row and channel instead of two). The Triton
backend uses relaxed global atomics by default. Deterministic mode (torch.use_deterministic_algorithms(True), where
PyTorch's own CUDA grid_sample backward refuses to run): the Triton backend computes the input
gradient as a gather instead (output pixels sorted by the input cell they sample, each input
pixel sums its cells' contributions in a fixed order; kernels/grid_sample.py), bit-identical from
run to run, no atomics; FASTMOTION_GRID_SAMPLE_SCATTER=gather selects it outside that mode. The
CUDA backend raises there (warns with warn_only), as PyTorch does.

Autocast: no autocast rule; the op runs in the dtype its input arrives in (grid must match).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastmotion import backends
from fastmotion.ops import _checks, _eager, _schema
from fastmotion.ops.registry import (Inputs, OpSpec, _cases, _generator, _nbytes, _put, _registered, register,
                                     smooth_flow_grid)
from fastmotion import reference as ref

OP = "grid_sample"
_FWD = "grid_sample_forward"
_BWD = "grid_sample_backward"
MODES = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")
_MODE_CODES = _schema.MODE_CODES
_PADDING_CODES = _schema.PADDING_CODES


def _channels_last(input: torch.Tensor) -> bool:
    # Mirrors grid_sample_channels_last() in csrc/ops/grid_sample.cpp.
    return (not input.is_contiguous()) and input.is_contiguous(memory_format=torch.channels_last)


def _fake_forward(input, grid, mode, padding_mode, align_corners):
    fmt = torch.channels_last if _channels_last(input) else torch.contiguous_format
    n, c = input.shape[:2]
    return input.new_empty((n, c, grid.shape[1], grid.shape[2])).contiguous(memory_format=fmt)


def _fake_backward(grad_output, input, grid, mode, padding_mode, align_corners, input_requires_grad,
                   grid_requires_grad):
    fmt = torch.channels_last if _channels_last(input) else torch.contiguous_format
    gin = input.new_empty(input.shape).contiguous(memory_format=fmt) if input_requires_grad else input.new_empty((0,))
    ggrid = grid.new_empty(grid.shape) if grid_requires_grad else grid.new_empty((0,))
    return gin, ggrid


def _setup_context(ctx, inputs, output):
    input, grid, mode, padding_mode, align_corners = inputs
    ctx.save_for_backward(input, grid)
    ctx.args = (mode, padding_mode, align_corners)


_MODE_NAMES = {code: name for name, code in _MODE_CODES.items()}
_PADDING_NAMES = {code: name for name, code in _PADDING_CODES.items()}


def _backward_reference(ctx, grad_output):
    """Input and grid gradients by F.grid_sample's differentiable backward (double backward);
    half and bfloat16 computed in float32, as the kernels do."""
    input, grid = ctx.saved_tensors
    mode, padding_mode, align_corners = ctx.args
    acc = torch.float64 if input.dtype == torch.float64 else torch.float32

    def sample(x, g):
        return [ref.grid_sample(x.to(acc), g.to(acc), _MODE_NAMES[mode], _PADDING_NAMES[padding_mode],
                                align_corners).to(x.dtype)]

    gin, ggrid = _eager.reference_vjp(sample, [input, grid], [grad_output])
    return gin, ggrid, None, None, None


def _backward(ctx, backward_op, grad_output):
    input, grid = ctx.saved_tensors
    need_input, need_grid = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gin, ggrid = backward_op(grad_output, input, grid, *ctx.args, need_input, need_grid)
    return (gin if need_input else None), (ggrid if need_grid else None), None, None, None


IMPLS = _eager.wire(_FWD, _BWD, kernels="grid_sample", fake_forward=_fake_forward, fake_backward=_fake_backward,
                    setup_context=_setup_context, backward=_backward, backward_reference=_backward_reference)


def grid_sample(input: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros",
                align_corners: bool | None = False, *, backend: str | None = None) -> torch.Tensor:
    """Sample ``input (N, C, H, W)`` at ``grid (N, Ho, Wo, 2)`` (x, y in [-1, 1]); same results
    as ``F.grid_sample`` with the same arguments (``align_corners=None`` means False, as there).

    Args:
        input: ``(N, C, H, W)`` floating tensor, H, W >= 1 (channels-last is kept).
        grid: ``(N, Ho, Wo, 2)`` sampling locations, same dtype and device as ``input``.
        mode: ``"bilinear"`` | ``"nearest"`` | ``"bicubic"`` (bicubic: reference only).
        padding_mode: ``"zeros"`` | ``"border"`` | ``"reflection"``.
        align_corners: as in F.grid_sample.
        backend: force an implementation (see :mod:`fastmotion.backends`).

    Returns ``(N, C, Ho, Wo)`` in the input's dtype; differentiable in ``input`` and ``grid``
    (``nearest``: the grid gradient is zero, as in PyTorch).
    """
    _checks.tensor(input, "input", OP, dim=4)
    _checks.tensor(grid, "grid", OP, dim=4)
    if grid.shape[0] != input.shape[0] or grid.shape[-1] != 2:
        raise ValueError(f"{OP}: grid must be (N={input.shape[0]}, Ho, Wo, 2), got {tuple(grid.shape)}")
    if grid.dtype != input.dtype:
        raise TypeError(f"{OP}: grid must have the input's dtype {input.dtype}, got {grid.dtype}")
    _checks.nonempty_spatial(input, "input", OP)
    _checks.choice(mode, "mode", OP, MODES)
    _checks.choice(padding_mode, "padding_mode", OP, PADDING_MODES)
    if align_corners is None:
        align_corners = False
    if not isinstance(align_corners, bool):
        raise TypeError(f"{OP}: align_corners must be a bool, got {align_corners!r}")
    _checks.same_device(OP, input=input, grid=grid)
    if mode == "bicubic":
        if backend not in (None, "auto", "reference"):
            raise ValueError(f"{OP}: mode 'bicubic' runs only on the reference backend, got backend={backend!r}")
        return ref.grid_sample(input, grid, mode, padding_mode, align_corners)
    name = backends.select(OP, IMPLS, input.device, backend)
    if name == "reference":
        return ref.grid_sample(input, grid, mode, padding_mode, align_corners)
    return IMPLS[name].fn(input, grid, _MODE_CODES[mode], _PADDING_CODES[padding_mode], align_corners)


# --- the op's benchmark entry (fastmotion.ops.registry) ------------------------------------------

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
    return grid_sample(x, grid, mode, padding_mode, align_corners, backend=backend)


def _grid_sample_registered(tensors, options, backend):
    x, grid = tensors
    return _registered("grid_sample_forward", backend)(x, grid, _schema.MODE_CODES[options["mode"]],
                                                       _schema.PADDING_CODES[options["padding_mode"]],
                                                       options["align_corners"])


_SCATTER = "FASTMOTION_GRID_SAMPLE_SCATTER"

register(OpSpec("grid_sample", "grid_sample", "IMPLS", _grid_sample_reference, _grid_sample_fused, _grid_sample_inputs,
                _grid_sample_bytes,
                _cases([(1, 32, 64, 64), (32, 64, 64, 64), (1, 32, 256, 256)], key=[(32, 64, 64, 64)],
                       quick=[(1, 32, 64, 64)]),
                tiny={"shape": (1, 2, 4, 4)}, reference_is="F.grid_sample", registered=_grid_sample_registered,
                # the Triton backend's deterministic gather input gradient (what
                # torch.use_deterministic_algorithms(True) selects)
                variants={"triton-gather": ("triton", {_SCATTER: "gather"})}))
