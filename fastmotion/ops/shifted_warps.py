"""``shifted_warps``: one source image sampled at K+1 constant shifts (the movement embedding's
"deformed source images") without repeating the source or building K+1 grids: a constant
shift makes the bilinear taps separable (per-row and per-column tables), and the source
gradient is the transposed stencil, gathered without atomics.

Backends: reference (plain PyTorch), cpu (C++), cuda (CUDA C++), triton.

Exact-integer positions: a zero shift (Monkey-Net's background block) puts every tap on an
integer coordinate, where the sample is continuous but its derivative with respect to the shift
jumps. The fused kernels compute each pixel's coordinate in the reference's order of
operations, so they pick the same taps (and give the same kp_shift gradient) as the reference
run in the same precision.

NaN / inf: a NaN or infinite shift makes its whole shifted image NaN (as grid_sample's NaN
weights do).

Dtypes: returns the source's dtype. Half and bfloat16 tensors are read and written in their
dtype with float32 math; the small kp_shift runs in float32 (float64 for float64 inputs) and
its gradient comes back in kp_shift's own dtype.
"""
from __future__ import annotations

import torch

from fastmotion import backends
from fastmotion.ops import _checks, _eager
from fastmotion.ops.registry import (K1, Inputs, OpSpec, _cases, _generator, _nbytes, _put, _registered,
                                     _shape_label, register)
from fastmotion import reference as ref

_FWD = "shifted_warps_forward"
_BWD = "shifted_warps_backward"

def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fake_forward(source, kp_shift):
    n, c, h, w = source.shape
    return source.new_empty((n, kp_shift.shape[1], c, h, w))


def _fake_backward(grad_out, source, kp_shift, source_requires_grad, kp_shift_requires_grad):
    gs = source.new_empty(tuple(source.shape) if source_requires_grad else (0,))
    gk = kp_shift.new_empty(tuple(kp_shift.shape) if kp_shift_requires_grad else (0,))
    return gs, gk


def _setup_context(ctx, inputs, output):
    source, kp_shift = inputs
    ctx.save_for_backward(source, kp_shift)


def _backward_reference(ctx, grad):
    """shifted_warps' gradients by the reference's differentiable math (double backward)."""
    source, kp_shift = ctx.saved_tensors
    def warps(src, shift):
        return [ref.shifted_warps(src.to(_acc_dtype(src.dtype)), shift).to(src.dtype)]

    return tuple(_eager.reference_vjp(warps, [source, kp_shift], [grad]))


def _backward(ctx, backward_op, grad):
    source, kp_shift = ctx.saved_tensors
    need_source, need_shift = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    if not (need_source or need_shift):
        return None, None
    gs, gk = backward_op(grad.contiguous(), source, kp_shift, need_source, need_shift)
    return (gs if need_source else None), (gk if need_shift else None)


IMPLS = _eager.wire(_FWD, _BWD, kernels="shifted_warps", fake_forward=_fake_forward,
                    fake_backward=_fake_backward, setup_context=_setup_context, backward=_backward,
                    backward_reference=_backward_reference)


def shifted_warps(source: torch.Tensor, kp_shift: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """``(N, K+1, C, H, W)``: ``source (N, C, H, W)`` sampled at identity + ``kp_shift (N, K+1, 2)``
    (bilinear, zero padding, align_corners=True), without materialising K+1 copies of the source."""
    op = "shifted_warps"
    _checks.tensor(source, "source", op, dim=4)
    _checks.tensor(kp_shift, "kp_shift", op, dim=3)
    if kp_shift.shape[0] != source.shape[0] or kp_shift.shape[-1] != 2:
        raise ValueError(f"{op}: kp_shift must be (N={source.shape[0]}, K+1, 2), got {tuple(kp_shift.shape)}")
    _checks.nonempty_spatial(source, "source", op)
    _checks.same_device(op, source=source, kp_shift=kp_shift)
    name = backends.select(op, IMPLS, source.device, backend)
    if name == "reference":
        return ref.shifted_warps(source, kp_shift)
    return IMPLS[name].fn(source, kp_shift.to(_acc_dtype(source.dtype)))


# --- the op's benchmark entry (fastmotion.ops.registry) ------------------------------------------

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
    return ref.shifted_warps(source, shift)


def _shift_fused(source, shift, backend=None):
    return shifted_warps(source, shift, backend=backend)


register(OpSpec("shifted_warps", "shifted_warps", "IMPLS", _shift_reference, _shift_fused, _shift_inputs,
                _shift_bytes,
                _cases([(1, 3, 64, 64), (32, 3, 64, 64), (1, 3, 256, 256)], key=[(32, 3, 64, 64)],
                       quick=[(1, 3, 64, 64)], label=lambda s: f"{_shape_label(s)} K+1={K1}"),
                tiny={"shape": (1, 2, 4, 4), "k1": 3},
                registered=lambda t, o, b: _registered("shifted_warps_forward", b)(*t)))
