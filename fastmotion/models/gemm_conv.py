"""3x3 convolution of small, deep feature maps as one matrix product (training fast path).

At the hourglass bottlenecks (4x4 maps with 512-2048 channels) a 3x3 convolution is bound by
its weights; on CPU im2col + one GEMM is faster there than oneDNN and rounds better (where:
:mod:`policy`). The column matrix is rebuilt in the backward instead of being kept (9x the input).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastmotion.models import policy



def _columns(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    cols = F.unfold(x, 3, padding=1)  # (N, C*9, H*W)
    return cols.transpose(0, 1).reshape(c * 9, n * h * w)


class _GemmConv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        n, _, h, w = x.shape
        cout = weight.shape[0]
        mat = weight.reshape(cout, -1)
        cols = _columns(x)
        out = torch.mm(mat, cols) if bias is None else torch.addmm(bias.view(-1, 1), mat, cols)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return out.view(cout, n, h, w).transpose(0, 1).contiguous()

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        n, c, h, w = x.shape
        cout = weight.shape[0]
        grad_mat = grad.transpose(0, 1).reshape(cout, n * h * w)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(grad_mat, _columns(x).t()).view_as(weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_mat.sum(1)
        if ctx.needs_input_grad[0]:
            grad_cols = torch.mm(weight.reshape(cout, -1).t(), grad_mat)  # (C*9, N*H*W)
            grad_cols = grad_cols.view(c * 9, n, h * w).transpose(0, 1)
            grad_x = F.fold(grad_cols, (h, w), 3, padding=1)
        return grad_x, grad_w, grad_b


def applies(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dim() == 4 and x.shape[2] * x.shape[3] <= policy.GEMM_CONV_MAX_POSITIONS
            and x.shape[1] >= policy.GEMM_CONV_MIN_IN_CHANNELS and tuple(conv.kernel_size) == (3, 3)
            and tuple(conv.padding) == (1, 1) and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1)
            and conv.groups == 1 and conv.padding_mode == "zeros")


def gemm_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for 3x3 kernels, as im2col + one GEMM."""
    return _GemmConv3x3.apply(x, weight, bias)
