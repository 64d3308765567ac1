"""Training-mode BatchNorm + ReLU that keeps only its input for the backward.

``relu(batch_norm(x))`` through autograd keeps both ``x`` (for BatchNorm's backward) and the
output (for ReLU's). This function keeps ``x`` and the batch statistics and recomputes the ReLU
mask in the backward, so a conv -> BN -> ReLU -> pool / concat block holds one activation
instead of two. Same math and the same running-statistics update as ``nn.BatchNorm2d``.

On CPU (float32 / float64, NCHW or channels_last) forward and backward are compiled kernels,
``fastmotion::batchnorm_relu_forward`` / ``_backward`` (csrc/ops/cpu/batchnorm_relu.cpp): two
passes each (statistics, output; sums, input gradient) instead of ATen's four for BatchNorm then
ReLU and the composite's recomputed output, ReLU backward and ATen's BatchNorm backward.
Elsewhere ATen's BatchNorm and the composite below run (they are also the kernels' references).
"""
from __future__ import annotations

import torch
from torch import nn

from fastmotion import _ext

_KERNEL = "batchnorm_relu_backward"


def _fake_forward(x, weight, bias, eps):
    c = x.shape[1]
    return torch.empty_like(x), x.new_empty(c), x.new_empty(c), x.new_empty(c)


def _fake_backward(grad, x, weight, bias, mean, invstd):
    return torch.empty_like(x), x.new_empty(x.shape[1]), x.new_empty(x.shape[1])


if _ext.has_kernel(_KERNEL, "CPU"):
    torch.library.register_fake("fastmotion::batchnorm_relu_forward")(_fake_forward)
    torch.library.register_fake(f"fastmotion::{_KERNEL}")(_fake_backward)


def _kernel_layout(x: torch.Tensor):
    """The memory format the CPU kernel takes for ``x``, or None where it does not apply."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or not _ext.has_kernel(_KERNEL, "CPU"):
        return None
    if x.is_contiguous():
        return torch.contiguous_format
    if x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return None


def has_fast_backward(x: torch.Tensor) -> bool:
    """Whether the backward of ``x``'s BatchNorm + ReLU runs as the compiled kernel (then this
    function beats autograd's BatchNorm-then-ReLU even where autograd keeps no more memory)."""
    return _kernel_layout(x) is not None


def batchnorm_relu_backward_composite(grad, x, weight, bias, mean, invstd, eps, output_mask):
    """The backward in ATen ops: recompute the BN output for the ReLU mask, then BatchNorm's backward."""
    shape = (1, -1, 1, 1)
    scale = invstd if weight is None else invstd * weight
    shift = -mean * scale if bias is None else bias - mean * scale
    # ReLU's backward on the recomputed BatchNorm output; the mask keeps grad's dtype (under
    # autocast x is half while the statistics and parameters are float32).
    grad = grad.masked_fill(torch.addcmul(shift.view(shape), x, scale.view(shape)) <= 0, 0)
    return torch.ops.aten.native_batch_norm_backward(grad, x, weight, None, None, mean, invstd, True, eps, output_mask)


class _BatchNormReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        if _kernel_layout(x) is not None and all(t is None or t.dtype == x.dtype for t in (weight, bias)):
            out, mean, invstd, var = torch.ops.fastmotion.batchnorm_relu_forward(x, weight, bias, eps)
            # The running statistics as aten::native_batch_norm updates them (unbiased variance).
            count = x.numel() // x.shape[1]
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
            unbiased = var * (count / (count - 1)) if count > 1 else var
            running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        else:
            out, mean, invstd = torch.ops.aten.native_batch_norm(x, weight, bias, running_mean, running_var, True,
                                                                  momentum, eps)
            out = out.relu_()
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, mean, invstd = ctx.saved_tensors
        need_w = weight is not None and ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        layout = _kernel_layout(x)
        if (layout is not None and not torch.is_grad_enabled()
                and all(t is None or t.dtype == x.dtype for t in (weight, bias, mean, invstd))):
            planes = layout == torch.contiguous_format and grad.stride(3) == 1 and grad.stride(2) == grad.shape[3]
            grad_x, grad_w, grad_b = torch.ops.fastmotion.batchnorm_relu_backward(
                grad if planes else grad.contiguous(memory_format=layout), x, weight, bias, mean, invstd)
        else:  # other devices and dtypes, and double backward (the composite is differentiable)
            grad_x, grad_w, grad_b = batchnorm_relu_backward_composite(grad, x, weight, bias, mean, invstd, ctx.eps,
                                                                       [ctx.needs_input_grad[0], need_w, need_b])
        return (grad_x if ctx.needs_input_grad[0] else None, grad_w if need_w else None, grad_b if need_b else None,
                None, None, None, None)


def supported(norm: nn.Module, x: torch.Tensor) -> bool:
    """A plain BatchNorm2d in training mode (SyncBatchNorm and others keep their own forward)."""
    return (type(norm) is nn.BatchNorm2d and norm.training and norm.track_running_stats and x.dim() == 4
            and norm.running_mean is not None and x.shape[0] * x.shape[2] * x.shape[3] > 1)


def batchnorm_relu_train(norm: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``relu(norm(x))`` for a training-mode BatchNorm2d (see :func:`supported`)."""
    # nn.BatchNorm2d's bookkeeping: the batch counter and the momentum it implies.
    norm.num_batches_tracked.add_(1)
    momentum = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    return _BatchNormReLU.apply(x, norm.weight, norm.bias, norm.running_mean, norm.running_var, momentum, norm.eps)
