"""Training-mode BatchNorm + ReLU that keeps only its input for the backward.

``relu(batch_norm(x))`` through autograd keeps both ``x`` (for BatchNorm's backward) and the
output (for ReLU's). This function keeps ``x`` and the batch statistics and recomputes the ReLU
mask in the backward, so a conv -> BN -> ReLU -> pool / concat block holds one activation
instead of two. Same math and the same running-statistics update as ``nn.BatchNorm2d``.
"""
from __future__ import annotations

import torch
from torch import nn


class _BatchNormReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        out, mean, invstd = torch.ops.aten.native_batch_norm(x, weight, bias, running_mean, running_var, True,
                                                              momentum, eps)
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.eps = eps
        return out.relu_()

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, mean, invstd = ctx.saved_tensors
        shape = (1, -1, 1, 1)
        scale = invstd if weight is None else invstd * weight
        shift = -mean * scale if bias is None else bias - mean * scale
        # ReLU's backward on the recomputed BatchNorm output.
        grad = torch.ops.aten.threshold_backward(grad, torch.addcmul(shift.view(shape), x, scale.view(shape)), 0)
        grad_x, grad_w, grad_b = torch.ops.aten.native_batch_norm_backward(
            grad, x, weight, None, None, mean, invstd, True, ctx.eps,
            [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[1],
             bias is not None and ctx.needs_input_grad[2]])
        return grad_x, grad_w, grad_b, None, None, None, None


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
