"""``heatmap_moments``: keypoint mean and covariance of a softmax heatmap (the detector head).

Backends: reference (plain PyTorch), cpu (C++), cuda (CUDA C++), triton. The fused kernels
compute the softmax's mean and raw covariance in one pass over the logits and save only the
(N*K)-sized statistics for the backward; the optional clipping and the 'single' reduction
work on those tiny (N, K, 2, 2) tensors with plain torch ops.

Autocast: the op has no autocast rule. It runs in the dtype its logits arrive in; half and
bfloat16 logits accumulate in float32, and the returned mean and var have the logits' dtype.
"""
from __future__ import annotations

import numbers

import torch

from fastmotion import _ext, backends, reference
from fastmotion.ops import _checks
from fastmotion.reference.heatmap_moments import clip_covariance

OP = "heatmap_moments"
_FWD = "heatmap_moments_forward"
_BWD = "heatmap_moments_backward"


def _acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fake_forward(logits, temperature):
    rows = logits.shape[0]
    acc = _acc_dtype(logits.dtype)
    return (logits.new_empty((rows, 2), dtype=acc), logits.new_empty((rows, 2, 2), dtype=acc),
            logits.new_empty((rows,), dtype=acc))


def _fake_backward(grad_mean, grad_var, logits, mean, var, lse, temperature):
    return torch.empty_like(logits)


def _setup_context(ctx, inputs, output):
    logits, temperature = inputs
    mean, var, lse = output
    ctx.save_for_backward(logits, mean, var, lse)
    ctx.temperature = temperature
    ctx.mark_non_differentiable(lse)


def _grads(ctx, grad_mean, grad_var):
    logits, mean, var, lse = ctx.saved_tensors
    grad_mean = torch.zeros_like(mean) if grad_mean is None else grad_mean.to(mean.dtype)
    grad_var = torch.zeros_like(var) if grad_var is None else grad_var.to(var.dtype)
    return grad_mean, grad_var, logits, mean, var, lse


def _backward_cpp(ctx, grad_mean, grad_var, grad_lse):
    g = _grads(ctx, grad_mean, grad_var)
    return torch.ops.fastmotion.heatmap_moments_backward(*g, ctx.temperature), None


if _ext.load()[0] is not None and hasattr(torch.ops.fastmotion, _FWD):
    torch.library.register_fake(f"fastmotion::{_FWD}")(_fake_forward)
    torch.library.register_fake(f"fastmotion::{_BWD}")(_fake_backward)
    torch.library.register_autograd(f"fastmotion::{_FWD}", _backward_cpp, setup_context=_setup_context)


def _register_triton():
    from fastmotion.kernels import heatmap_moments as tk

    @torch.library.triton_op(f"fastmotion::{_FWD}_triton", mutates_args=())
    def forward_triton(logits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tk.heatmap_moments_forward(logits, temperature)

    @torch.library.triton_op(f"fastmotion::{_BWD}_triton", mutates_args=())
    def backward_triton(grad_mean: torch.Tensor, grad_var: torch.Tensor, logits: torch.Tensor, mean: torch.Tensor,
                        var: torch.Tensor, lse: torch.Tensor, temperature: float) -> torch.Tensor:
        return tk.heatmap_moments_backward(grad_mean, grad_var, logits, mean, var, lse, temperature)

    def _backward(ctx, grad_mean, grad_var, grad_lse):
        g = _grads(ctx, grad_mean, grad_var)
        return backward_triton(*g, ctx.temperature), None

    forward_triton.register_autograd(_backward, setup_context=_setup_context)
    return forward_triton


_triton_forward = _register_triton() if backends.unavailable_reason("triton", "cuda") is None else None


def _forward_cpp(logits3, temperature):
    return torch.ops.fastmotion.heatmap_moments_forward(logits3, temperature)


def _forward_triton(logits3, temperature):
    return _triton_forward(logits3, temperature)


IMPLS = {
    "reference": backends.Impl(None),
    "cpu": backends.Impl(_forward_cpp, cpp_op=_FWD),
    "cuda": backends.Impl(_forward_cpp, cpp_op=_FWD),
}
if _triton_forward is not None:
    IMPLS["triton"] = backends.Impl(_forward_triton)


def _check_kp_variance(kp_variance):
    if kp_variance in ("matrix", "single"):
        return kp_variance
    if isinstance(kp_variance, numbers.Real) and not isinstance(kp_variance, bool) and kp_variance > 0:
        return float(kp_variance)
    raise ValueError(f"{OP}: kp_variance must be 'matrix', 'single' or a positive number, got {kp_variance!r}")


def heatmap_moments(logits: torch.Tensor, temperature: float = 0.1, kp_variance="matrix", clip_variance=None,
                    *, backend: str | None = None):
    """Keypoints of heatmap logits: ``mean (..., K, 2)`` and ``var`` of ``softmax(logits / T)``.

    Args:
        logits: raw heatmap scores ``(..., K, H, W)`` (at least 3-D), any floating dtype.
        temperature: softmax temperature, > 0.
        kp_variance: ``"matrix"`` -> var ``(..., K, 2, 2)``; ``"single"`` -> isotropic var
            ``(..., K, 1, 1)``; a number -> fixed variance, var is ``None``.
        clip_variance: rescale covariances whose smallest singular value is below this
            (the original detector's ``clip_variance``); ``None`` or 0 disables.
        backend: force an implementation (see :mod:`fastmotion.backends`).

    Reproduces the original Monkey-Net ``gaussian2kp`` of ``softmax(logits / T)``, including
    the +1e-7 it adds to the heatmap. Coordinates: x along W, y along H, both in [-1, 1].
    """
    _checks.tensor(logits, "logits", OP, min_dim=3)
    h, w = logits.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"{OP}: logits must have a non-empty spatial size (H, W), got shape {tuple(logits.shape)}")
    temperature = _checks.positive_number(temperature, "temperature", OP)
    kp_variance = _check_kp_variance(kp_variance)
    if clip_variance is not None:
        clip_variance = _checks.positive_number(clip_variance, "clip_variance", OP, allow_zero=True)
    name = backends.select(OP, IMPLS, logits.device, backend)
    if name == "reference":
        return reference.heatmap_moments(logits, temperature, kp_variance, clip_variance)

    lead = logits.shape[:-2]
    mean, var, _ = IMPLS[name].fn(logits.reshape(-1, h, w), temperature)
    mean = mean.view(*lead, 2)
    var = var.view(*lead, 2, 2)
    if kp_variance == "matrix":
        if clip_variance:
            var = clip_covariance(var, clip_variance)
    elif kp_variance == "single":
        var = torch.diagonal(var, dim1=-2, dim2=-1).mean(dim=-1, keepdim=True).unsqueeze(-1)
    else:
        var = None
    return mean.to(logits.dtype), None if var is None else var.to(logits.dtype)
