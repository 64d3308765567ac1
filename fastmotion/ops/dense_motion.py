"""Fused ops of Monkey-Net's dense motion module: ``compose_flow`` and ``shifted_warps``.

Backends: reference (plain PyTorch), cpu (C++), cuda (CUDA C++), triton.

``compose_flow`` turns the hourglass' K+1 mask logits into the sampling grid in one pass per
pixel (softmax over the K+1 channels, mask-weighted sum of the keypoint shifts, plus the
correction and the identity grid); its backward recomputes the softmax from the logits.

``shifted_warps`` samples one source image at K+1 constant shifts (the movement embedding's
"deformed source images") without repeating the source or building K+1 grids: a constant
shift makes the bilinear taps separable (per-row and per-column tables), and the source
gradient is the transposed stencil, gathered without atomics.

Exact-integer positions: a zero shift (Monkey-Net's background block) puts every tap on an
integer coordinate, where the sample is continuous but its derivative with respect to the shift
jumps. The fused kernels compute each pixel's coordinate in the reference's order of
operations, so they pick the same taps (and give the same kp_shift gradient) as the reference
run in the same precision.

NaN / inf: a NaN logit makes that pixel's grid NaN; a NaN or infinite shift makes its whole
shifted image NaN (as grid_sample's NaN weights do).

Dtypes: ``compose_flow`` computes in the promoted dtype of mask_logits, kp_shift and correction
(as the reference's type promotion does) and returns that dtype; ``shifted_warps`` returns the
source's dtype. Half and bfloat16 tensors are read and written in their dtype with float32
math; the small kp_shift runs in float32 (float64 for float64 inputs) and its gradient comes
back in kp_shift's own dtype.
"""
from __future__ import annotations

import torch

from fastmotion import backends
from fastmotion.ops import _checks, _eager
from fastmotion import reference as ref

_CF_FWD = "compose_flow_forward"
_CF_BWD = "compose_flow_backward"
_SW_FWD = "shifted_warps_forward"
_SW_BWD = "shifted_warps_backward"


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# ---------------------------------------------------------------------------------------------
# fake kernels and autograd, shared by the C++ ops and the Triton ops (same signatures)

def _cf_fake_forward(mask_logits, kp_shift, correction):
    n, _, h, w = mask_logits.shape
    return mask_logits.new_empty((n, h, w, 2))


def _cf_fake_backward(grad_grid, mask_logits, kp_shift):
    return torch.empty_like(mask_logits, memory_format=torch.contiguous_format), torch.empty_like(kp_shift)


def _cf_setup_context(ctx, inputs, output):
    mask_logits, kp_shift, correction = inputs
    ctx.save_for_backward(mask_logits, kp_shift)
    ctx.has_correction = correction is not None


def _cf_backward_reference(ctx, grad):
    """compose_flow's gradients by the reference's differentiable math (double backward)."""
    mask_logits, kp_shift = ctx.saved_tensors
    def flow(logits, shift):
        return [ref.compose_flow(logits.to(_acc_dtype(logits.dtype)), shift).to(logits.dtype)]

    grad_logits, grad_shift = _eager.reference_vjp(flow, [mask_logits, kp_shift], [grad])
    grad_corr = grad.permute(0, 3, 1, 2) if ctx.has_correction and ctx.needs_input_grad[2] else None
    return grad_logits, grad_shift, grad_corr


def _cf_backward(ctx, backward_op, grad):
    mask_logits, kp_shift = ctx.saved_tensors
    grad_logits = grad_shift = grad_corr = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        grad_logits, grad_shift = backward_op(grad.contiguous(), mask_logits, kp_shift)
    if ctx.has_correction and ctx.needs_input_grad[2]:
        grad_corr = grad.permute(0, 3, 1, 2)
    return grad_logits, grad_shift, grad_corr


def _sw_fake_forward(source, kp_shift):
    n, c, h, w = source.shape
    return source.new_empty((n, kp_shift.shape[1], c, h, w))


def _sw_fake_backward(grad_out, source, kp_shift, source_requires_grad, kp_shift_requires_grad):
    gs = source.new_empty(tuple(source.shape) if source_requires_grad else (0,))
    gk = kp_shift.new_empty(tuple(kp_shift.shape) if kp_shift_requires_grad else (0,))
    return gs, gk


def _sw_setup_context(ctx, inputs, output):
    source, kp_shift = inputs
    ctx.save_for_backward(source, kp_shift)


def _sw_backward_reference(ctx, grad):
    """shifted_warps' gradients by the reference's differentiable math (double backward)."""
    source, kp_shift = ctx.saved_tensors
    def warps(src, shift):
        return [ref.shifted_warps(src.to(_acc_dtype(src.dtype)), shift).to(src.dtype)]

    return tuple(_eager.reference_vjp(warps, [source, kp_shift], [grad]))


def _sw_backward(ctx, backward_op, grad):
    source, kp_shift = ctx.saved_tensors
    need_source, need_shift = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    if not (need_source or need_shift):
        return None, None
    gs, gk = backward_op(grad.contiguous(), source, kp_shift, need_source, need_shift)
    return (gs if need_source else None), (gk if need_shift else None)


COMPOSE_IMPLS = _eager.wire(_CF_FWD, _CF_BWD, kernels="dense_motion", fake_forward=_cf_fake_forward,
                            fake_backward=_cf_fake_backward, setup_context=_cf_setup_context,
                            backward=_cf_backward, backward_reference=_cf_backward_reference)
SHIFT_IMPLS = _eager.wire(_SW_FWD, _SW_BWD, kernels="dense_motion", fake_forward=_sw_fake_forward,
                          fake_backward=_sw_fake_backward, setup_context=_sw_setup_context,
                          backward=_sw_backward, backward_reference=_sw_backward_reference)


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
    _checks.shape(kp_shift, (n, k1, 2), "kp_shift", op, f"(N={n}, K+1={k1}, 2)")
    if correction is not None:
        _checks.shape(_checks.tensor(correction, "correction", op, dim=4), (n, 2, h, w), "correction", op)
    _checks.same_device(op, mask_logits=mask_logits, kp_shift=kp_shift, correction=correction)
    name = backends.select(op, COMPOSE_IMPLS, mask_logits.device, backend)
    if name == "reference":
        return ref.compose_flow(mask_logits, kp_shift, correction)
    dtype = torch.promote_types(mask_logits.dtype, kp_shift.dtype)
    if correction is not None:
        dtype = torch.promote_types(dtype, correction.dtype)
        correction = correction.to(dtype)
    return COMPOSE_IMPLS[name].fn(mask_logits.to(dtype), kp_shift.to(_acc_dtype(dtype)), correction)


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
    name = backends.select(op, SHIFT_IMPLS, source.device, backend)
    if name == "reference":
        return ref.shifted_warps(source, kp_shift)
    return SHIFT_IMPLS[name].fn(source, kp_shift.to(_acc_dtype(source.dtype)))
