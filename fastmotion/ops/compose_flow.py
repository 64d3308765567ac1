"""``compose_flow``: Monkey-Net's dense motion module turns the hourglass' K+1 mask logits into the
sampling grid in one pass per pixel (softmax over the K+1 channels, mask-weighted sum of the
keypoint shifts, plus the correction and the identity grid); its backward recomputes the softmax
from the logits.

Backends: reference (plain PyTorch), cpu (C++), cuda (CUDA C++), triton.

NaN / inf: a NaN logit makes that pixel's grid NaN.

Dtypes: computes in the promoted dtype of mask_logits, kp_shift and correction (as the
reference's type promotion does) and returns that dtype. Half and bfloat16 tensors are read and
written in their dtype with float32 math; the small kp_shift runs in float32 (float64 for
float64 inputs) and its gradient comes back in kp_shift's own dtype.
"""
from __future__ import annotations

import torch

from fastmotion import backends
from fastmotion.ops import _checks, _eager
from fastmotion.ops.registry import K1, Inputs, OpSpec, _cases, _generator, _nbytes, _put, _registered, register
from fastmotion import reference as ref

_FWD = "compose_flow_forward"
_BWD = "compose_flow_backward"

def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fake_forward(mask_logits, kp_shift, correction):
    n, _, h, w = mask_logits.shape
    return mask_logits.new_empty((n, h, w, 2))


def _fake_backward(grad_grid, mask_logits, kp_shift):
    return torch.empty_like(mask_logits, memory_format=torch.contiguous_format), torch.empty_like(kp_shift)


def _setup_context(ctx, inputs, output):
    mask_logits, kp_shift, correction = inputs
    ctx.save_for_backward(mask_logits, kp_shift)
    ctx.has_correction = correction is not None


def _backward_reference(ctx, grad):
    """compose_flow's gradients by the reference's differentiable math (double backward)."""
    mask_logits, kp_shift = ctx.saved_tensors
    def flow(logits, shift):
        return [ref.compose_flow(logits.to(_acc_dtype(logits.dtype)), shift).to(logits.dtype)]

    grad_logits, grad_shift = _eager.reference_vjp(flow, [mask_logits, kp_shift], [grad])
    grad_corr = grad.permute(0, 3, 1, 2) if ctx.has_correction and ctx.needs_input_grad[2] else None
    return grad_logits, grad_shift, grad_corr


def _backward(ctx, backward_op, grad):
    mask_logits, kp_shift = ctx.saved_tensors
    grad_logits = grad_shift = grad_corr = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        grad_logits, grad_shift = backward_op(grad.contiguous(), mask_logits, kp_shift)
    if ctx.has_correction and ctx.needs_input_grad[2]:
        grad_corr = grad.permute(0, 3, 1, 2)
    return grad_logits, grad_shift, grad_corr


IMPLS = _eager.wire(_FWD, _BWD, kernels="compose_flow", fake_forward=_fake_forward,
                    fake_backward=_fake_backward, setup_context=_setup_context, backward=_backward,
                    backward_reference=_backward_reference)


def compose_flow(mask_logits: torch.Tensor, kp_shift: torch.Tensor, correction: torch.Tensor | None = None,
                 *, backend: str | None = None) -> torch.Tensor:
    """Absolute sampling grid ``(N, H, W, 2)`` = identity + sum_k softmax(mask_logits)_k kp_shift_k
    (+ correction). mask_logits ``(N, K+1, H, W)``, kp_shift ``(N, K+1, 2)``, correction ``(N, 2, H, W)``."""
    op = "compose_flow"
    _checks.tensor(mask_logits, "mask_logits", op, dim=4)
    _checks.tensor(kp_shift, "kp_shift", op, dim=3)
    n, k1, h, w = mask_logits.shape
    if k1 < 1 or h < 1 or w < 1:
        raise ValueError(f"{op}: mask_logits must have K+1 >= 1 channels and a non-empty spatial size, "
                         f"got shape {tuple(mask_logits.shape)}")
    _checks.shape(kp_shift, (n, k1, 2), "kp_shift", op, "(N, K+1, 2)")
    if correction is not None:
        _checks.shape(_checks.tensor(correction, "correction", op, dim=4), (n, 2, h, w), "correction", op,
                      "(N, 2, H, W)")
    _checks.same_device(op, mask_logits=mask_logits, kp_shift=kp_shift, correction=correction)
    name = backends.select(op, IMPLS, mask_logits.device, backend)
    if name == "reference":
        return ref.compose_flow(mask_logits, kp_shift, correction)
    dtype = torch.promote_types(mask_logits.dtype, kp_shift.dtype)
    if correction is not None:
        dtype = torch.promote_types(dtype, correction.dtype)
        correction = correction.to(dtype)
    return IMPLS[name].fn(mask_logits.to(dtype), kp_shift.to(_acc_dtype(dtype)), correction)


# --- the op's benchmark entry (fastmotion.ops.registry) ------------------------------------------

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
    return ref.compose_flow(logits, shift, corr)


def _compose_fused(logits, shift, corr, backend=None):
    return compose_flow(logits, shift, corr, backend=backend)


register(OpSpec("compose_flow", "compose_flow", "IMPLS", _compose_reference, _compose_fused, _compose_inputs,
                _compose_bytes,
                _cases([(1, K1, 64, 64), (32, K1, 64, 64), (1, K1, 256, 256)], key=[(32, K1, 64, 64)],
                       quick=[(1, K1, 64, 64)]),
                tiny={"shape": (1, 3, 4, 4)},
                registered=lambda t, o, b: _registered("compose_flow_forward", b)(*t)))
