"""``heatmap_moments``: keypoint mean and covariance of a softmax heatmap (the detector head).

Backends: reference (plain PyTorch), cpu (C++), cuda (CUDA C++), triton. The fused kernels
compute the softmax's mean and covariance in one pass over the logits, apply the detector's
epilogue (clipping by the smallest singular value, or the 'single' isotropic reduction) in the
same launch, and save only (N*K)-sized statistics for the backward, which is one elementwise
pass over the logits.

Dispatch: eager calls go through a plain ``torch.autograd.Function`` (the cheapest path per
call); under torch.compile the registered ops (``torch.library`` schema, fake kernels,
``register_autograd``) are used so the graph has no breaks.

Autocast: the op has no autocast rule. It runs in the dtype its logits arrive in; half and
bfloat16 logits accumulate in float32, and the returned mean and var have the logits' dtype.
"""
from __future__ import annotations

import torch

from fastmotion import backends, reference
from fastmotion.ops import _checks, _eager
from fastmotion.ops._schema import VAR_FIXED, VAR_MATRIX, VAR_MODES, VAR_SINGLE
from fastmotion.ops.registry import Inputs, OpSpec, _cases, _generator, _nbytes, _put, _registered, register

OP = "heatmap_moments"
_FWD = "heatmap_moments_forward"
_BWD = "heatmap_moments_backward"


def _acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fake_forward(logits, temperature, var_mode, clip):
    rows = logits.shape[0]
    acc = _acc_dtype(logits.dtype)
    v = 1 if var_mode == VAR_SINGLE else 2
    return (logits.new_empty((rows, 2), dtype=acc), logits.new_empty((rows, v, v), dtype=acc),
            logits.new_empty((rows, 2, 2), dtype=acc), logits.new_empty((rows,), dtype=acc))


def _fake_backward(grad_mean, grad_var, logits, mean, var_raw, lse, temperature, var_mode, clip):
    return torch.empty_like(logits)


def _setup_context(ctx, inputs, output):
    logits, temperature, var_mode, clip = inputs
    mean, var, var_raw, lse = output
    ctx.save_for_backward(logits, mean, var_raw, lse)
    ctx.args = (temperature, var_mode, clip)
    ctx.mark_non_differentiable(var_raw, lse)


def _grads(ctx, grad_mean, grad_var):
    logits, mean, var_raw, lse = ctx.saved_tensors
    v = 1 if ctx.args[1] == 1 else 2
    if grad_mean is None:
        grad_mean = torch.zeros_like(mean)
    if grad_var is None:
        grad_var = mean.new_zeros((mean.shape[0], v, v))
    return grad_mean.to(mean.dtype), grad_var.to(mean.dtype), logits, mean, var_raw, lse


def _backward_reference(ctx, grad_mean, grad_var, grad_raw, grad_lse):
    """The logits' gradient by the reference's differentiable math (double backward)."""
    logits = ctx.saved_tensors[0]
    temperature, var_mode, clip = ctx.args
    kp_variance = {VAR_MATRIX: "matrix", VAR_SINGLE: "single"}.get(var_mode, 1.0)

    def moments(x):
        return reference.heatmap_moments(x.to(_acc_dtype(x.dtype)), temperature, kp_variance, clip or None)

    (grad,) = _eager.reference_vjp(moments, [logits], [grad_mean, grad_var])
    return grad, None, None, None


def _backward(ctx, backward_op, grad_mean, grad_var, grad_raw, grad_lse):
    return backward_op(*_grads(ctx, grad_mean, grad_var), *ctx.args), None, None, None


def _fused(run):
    """The public op needs mean and var; var_raw and lse are the backward's."""
    def mean_var(logits3, temperature, var_mode, clip):
        mean, var, _, _ = run(logits3, temperature, var_mode, clip)
        return mean, var
    return mean_var


IMPLS = _eager.wire(_FWD, _BWD, kernels="heatmap_moments", fake_forward=_fake_forward, fake_backward=_fake_backward,
                    setup_context=_setup_context, backward=_backward, backward_reference=_backward_reference,
                    output=_fused)


def heatmap_moments(logits: torch.Tensor, temperature: float = 0.1, kp_variance="matrix", clip_variance=None,
                    *, backend: str | None = None):
    """Keypoints of heatmap logits: ``mean (..., K, 2)`` and ``var`` of ``softmax(logits / T)``.

    Args:
        logits: raw heatmap scores ``(..., K, H, W)`` (at least 3-D), any floating dtype.
        temperature: softmax temperature, > 0.
        kp_variance: ``"matrix"`` -> var ``(..., K, 2, 2)``; ``"single"`` -> isotropic var
            ``(..., K, 1, 1)``; a number -> fixed variance, var is ``None``.
        clip_variance: rescale covariances whose smallest singular value is below this
            (the original detector's ``clip_variance``, 'matrix' only); ``None`` or 0 disables.
        backend: force an implementation (see :mod:`fastmotion.backends`).

    Reproduces the original Monkey-Net ``gaussian2kp`` of ``softmax(logits / T)``, including
    the +1e-7 it adds to the heatmap. Coordinates: x along W, y along H, both in [-1, 1].
    """
    _checks.nonempty_spatial(_checks.tensor(logits, "logits", OP, min_dim=3), "logits", OP)
    h, w = logits.shape[-2:]
    temperature = _checks.positive_number(temperature, "temperature", OP)
    kp_variance = _checks.kp_variance(kp_variance, OP)
    if clip_variance is not None:
        clip_variance = _checks.positive_number(clip_variance, "clip_variance", OP, allow_zero=True)
    name = backends.select(OP, IMPLS, logits.device, backend)
    if name == "reference":
        return reference.heatmap_moments(logits, temperature, kp_variance, clip_variance)

    lead = logits.shape[:-2]
    var_mode = VAR_MODES.get(kp_variance, VAR_FIXED) if isinstance(kp_variance, str) else VAR_FIXED
    clip = float(clip_variance) if (clip_variance and var_mode == VAR_MATRIX) else 0.0
    mean, var = IMPLS[name].fn(logits.reshape(-1, h, w), temperature, var_mode, clip)
    dtype = logits.dtype
    mean = mean.view(*lead, 2)
    if mean.dtype != dtype:  # half / bfloat16 logits: the kernels return float32 moments
        mean = mean.to(dtype)
    if var_mode == VAR_FIXED:
        return mean, None
    v = 1 if var_mode == VAR_SINGLE else 2
    var = var.view(*lead, v, v)
    return mean, (var if var.dtype == dtype else var.to(dtype))


# --- the op's benchmark entry (fastmotion.ops.registry) ------------------------------------------

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
    return reference.heatmap_moments(logits, temperature, kp_variance, clip_variance)


def _heatmap_fused(logits, temperature, kp_variance, clip_variance, backend=None):
    return heatmap_moments(logits, temperature, kp_variance, clip_variance, backend=backend)


def _heatmap_registered(tensors, options, backend):
    (logits,) = tensors
    h, w = logits.shape[-2:]
    return _registered("heatmap_moments_forward", backend)(logits.reshape(-1, h, w), options["temperature"], 0,
                                                           options["clip_variance"] or 0.0)[0]


register(OpSpec("heatmap_moments", "heatmap_moments", "IMPLS", _heatmap_reference, _heatmap_fused, _heatmap_inputs,
                _heatmap_bytes,
                _cases([(1, 10, 64, 64), (32, 10, 64, 64), (8, 10, 128, 128)], key=[(32, 10, 64, 64)],
                       quick=[(1, 10, 64, 64)]),
                tiny={"shape": (1, 2, 4, 4)}, registered=_heatmap_registered))
