"""Exact rewrites of conv layers for the fast path.

- BatchNorm folding: in eval mode ``norm(conv(x))`` is a conv with rescaled weights and bias.
- Sub-pixel up-sampling: ``conv3x3(nearest_upsample_2x(x))`` equals four 2x2 convolutions of
  ``x`` (one per output phase) whose taps are sums of the 3x3 taps; it needs 16 instead of 36
  multiply-adds per low-resolution pixel and never materialises the 4x larger up-sampled input
  (which autograd would otherwise keep for the backward).
- Inference convolutions (no gradient needed) on float32 CPU tensors run as oneDNN convolutions
  with pre-packed weights and the ReLU / residual add fused in (``torch.ops.mkldnn``, the kernels
  torch.compile's CPU backend uses): no per-call weight reordering, one pass less per op. Under
  CPU autocast to bfloat16, on CPUs where oneDNN has bfloat16 convolutions, they run in bfloat16
  (bfloat16 activations and pre-packed weights, float32 accumulation): CPU autocast
  itself does not reach these kernels.

Training-side helpers live in :mod:`batchnorm_relu` (BN + ReLU that keeps only its input),
:mod:`resample2x` (2x up-sampling and pooling, fast on CPU; the pooling keeps only the input's
shape) and :mod:`gemm_conv` (bottleneck 3x3 convolutions as one GEMM).

All are the same math as the original up to float rounding (a different summation order).
Weights derived for inference are cached and recomputed when a source tensor changes (its
version counter moves: optimizer steps, ``load_state_dict``, ``.to()``) or the input shape does.
"""
from __future__ import annotations

from typing import Callable, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from fastmotion.models import batchnorm_relu as bn_relu
from fastmotion.models import gemm_conv, policy
from fastmotion.models import winograd_conv as wc

_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
_REORDER = getattr(getattr(torch.ops, "mkldnn", None), "_reorder_convolution_weight", None)


def _cpu_bf16_autocast() -> bool:
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def _onednn_bf16() -> bool:
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return check is not None and bool(check())


def inference_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype an inference convolution of the fast path runs in: bfloat16 under CPU autocast to
    bfloat16 where oneDNN has bfloat16 convolutions; otherwise ``x``'s."""
    if (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and _cpu_bf16_autocast()
            and _onednn_bf16()):
        return torch.bfloat16
    return x.dtype


def fast_layout(x: torch.Tensor) -> torch.Tensor:
    """Activation layout of the fast path for inference: channels_last on CPU, where oneDNN's
    inference convolutions run faster in it (markedly for few channels and large images). With
    autograd enabled the layout is left alone (see :mod:`policy`)."""
    if x.device.type == "cpu" and x.dim() == 4 and not torch.is_grad_enabled():
        return x.contiguous(memory_format=torch.channels_last)
    return x


def channels_last_for_autograd(x: torch.Tensor) -> bool:
    """Where channels_last pays off under autograd on CPU (see :mod:`policy`): convolutions of images
    with few channels (encoder inputs) and the generator's refinement blocks."""
    return torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() == 4


def cat_channels(parts, fast: bool) -> torch.Tensor:
    """``torch.cat(parts, dim=1)``; on the fast CPU path written straight into a channels_last
    buffer (converting an NCHW part while concatenating costs no extra pass)."""
    parts = list(parts)
    if not fast or parts[0].device.type != "cpu" or torch.is_grad_enabled():  # out= records no autograd
        return torch.cat(parts, dim=1)
    dtype = parts[0].dtype
    if any(p.dtype != dtype for p in parts):
        # bfloat16 inference (the next convolution reads bfloat16): the float32 parts (keypoint
        # embedding, source image) are rounded here rather than the whole concatenation later
        if _cpu_bf16_autocast() and any(p.dtype == torch.bfloat16 for p in parts):
            dtype = torch.bfloat16
        else:
            for p in parts[1:]:
                dtype = torch.promote_types(dtype, p.dtype)
        parts = [p.to(dtype) for p in parts]
    n, _, h, w = parts[0].shape
    out = torch.empty((n, sum(p.shape[1] for p in parts), h, w), dtype=dtype, device=parts[0].device,
                      memory_format=torch.channels_last)
    return torch.cat(parts, dim=1, out=out)


def needs_grad(*tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def foldable(norm: nn.Module) -> bool:
    """BatchNorm that normalises with its running statistics (eval mode)."""
    return (isinstance(norm, nn.modules.batchnorm._BatchNorm) and not norm.training and norm.track_running_stats
            and norm.running_mean is not None and norm.running_var is not None)


def _key(tensors: Sequence[torch.Tensor]):
    """Identity and version of each source tensor; None if one has no version counter (an
    inference tensor), in which case nothing is cached."""
    try:
        return tuple((t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape)) if t is not None else None
                     for t in tensors)
    except RuntimeError:
        return None


CACHE_PREFIX = "_fm_cache_"


def cached_weights(owner: nn.Module, name: str, sources: Sequence[torch.Tensor],
                   compute: Callable[[], Tuple[torch.Tensor, ...]], extra=()):
    """``compute()`` once per state of ``sources`` (and ``extra``), kept on ``owner`` (not in its
    state_dict, dropped when the module is copied or pickled); one entry per name, so a new
    input shape replaces the previous entry."""
    attr = CACHE_PREFIX + name
    versions = _key(sources)
    key = (versions, extra)
    entry = owner.__dict__.get(attr)
    if versions is not None and entry is not None and entry[0] == key:
        return entry[1]
    # Plain tensors even inside inference_mode, so the cache stays usable outside it.
    with torch.inference_mode(False), torch.no_grad():
        value = compute()
    if versions is not None:
        owner.__dict__[attr] = (key, value)
    return value


def fold_batchnorm(weight: torch.Tensor, bias, norm: nn.modules.batchnorm._BatchNorm):
    """Weight and bias of ``norm(conv(x))`` with norm's running statistics."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if bias is not None:
        shift = shift + bias * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return weight * scale.view(-1, *([1] * (weight.dim() - 1))), shift


def subpixel_ok(conv: nn.Conv2d) -> bool:
    return (tuple(conv.kernel_size) == (3, 3) and tuple(conv.padding) == (1, 1) and tuple(conv.stride) == (1, 1)
            and tuple(conv.dilation) == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def _phase_taps(w: torch.Tensor, dim: int):
    """3 taps along ``dim`` -> (phase 0, phase 1) pairs of 2 taps each."""
    t0, t1, t2 = w.unbind(dim)
    return torch.stack([t0, t1 + t2], dim), torch.stack([t0 + t1, t2], dim)


def subpixel_weights(weight: torch.Tensor, bias):
    """(Cout, Cin, 3, 3) -> (4 * Cout, Cin, 2, 2): the four output phases (a, b) of a 3x3 conv
    (padding 1) applied after nearest 2x up-sampling, phase-major."""
    phases = []
    for rows in _phase_taps(weight, 2):
        phases.extend(_phase_taps(rows, 3))
    w = torch.cat(phases, 0)
    b = None if bias is None else bias.repeat(4)
    return w, b


def _interleave(out: torch.Tensor) -> torch.Tensor:
    n, c4, h1, w1 = out.shape
    c, h, w = c4 // 4, h1 - 1, w1 - 1
    if out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous():
        src = out.permute(0, 2, 3, 1).view(n, h1, w1, 2, 2, c)  # (n, row, col, a, b, c)
        y = out.new_empty((n, h, 2, w, 2, c))
        for a in (0, 1):
            for b in (0, 1):
                y[:, :, a, :, b].copy_(src[:, a:a + h, b:b + w, a, b])
        return y.view(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
    src = out.reshape(n, 2, 2, c, h1, w1)  # (n, a, b, c, row, col)
    y = out.new_empty((n, c, h, 2, w, 2))
    for a in (0, 1):
        for b in (0, 1):
            y[:, :, :, a, :, b].copy_(src[:, a, b, :, a:a + h, b:b + w])
    return y.view(n, c, 2 * h, 2 * w)


def _deinterleave(grad: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_interleave`: ``(N, C, 2H, 2W)`` -> ``(N, 4C, H + 1, W + 1)``, zero where a
    phase's padded output row / column was not used."""
    n, c, h2, w2 = grad.shape
    h, w = h2 // 2, w2 // 2
    if grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous():
        out = grad.new_zeros((n, h + 1, w + 1, 2, 2, c))
        src = grad.permute(0, 2, 3, 1).reshape(n, h, 2, w, 2, c)
        for a in (0, 1):
            for b in (0, 1):
                out[:, a:a + h, b:b + w, a, b].copy_(src[:, :, a, :, b])
        return out.view(n, h + 1, w + 1, 4 * c).permute(0, 3, 1, 2)
    out = grad.new_zeros((n, 2, 2, c, h + 1, w + 1))
    src = grad.reshape(n, c, h, 2, w, 2)
    for a in (0, 1):
        for b in (0, 1):
            out[:, a, b, :, a:a + h, b:b + w].copy_(src[:, :, :, a, :, b])
    return out.view(n, 4 * c, h + 1, w + 1)


class _InterleavePhases(torch.autograd.Function):
    """Interleave with a direct backward (autograd's slice-copy backward would clone and zero
    the whole output once per phase) that saves nothing."""

    @staticmethod
    def forward(ctx, out):
        return _interleave(out)

    @staticmethod
    def backward(ctx, grad):
        return _deinterleave(grad)


def interleave_phases(out: torch.Tensor) -> torch.Tensor:
    """``(N, 4 Cout, H + 1, W + 1)`` phase outputs of the padded 2x2 convolutions -> ``(N, Cout, 2H, 2W)``:
    phase (a, b) of output pixel (2i + a, 2j + b) sits at (i + a, j + b) of its channels. The
    result has the memory format of ``out`` (four strided copies, one per phase)."""
    if torch.is_grad_enabled() and out.requires_grad:
        return _InterleavePhases.apply(out)
    return _interleave(out)


def use_subpixel(conv: nn.Conv2d, x: torch.Tensor, training: bool) -> bool:
    """Sub-pixel pays off unless the phase weights (4x the outputs of a 2x2 kernel) outweigh the
    activations: for inference the weights are derived once (cached), so always; with autograd
    they are rebuilt and kept for the backward, so only from 8x8 inputs and at least Cout
    low-res positions."""
    if not subpixel_ok(conv):
        return False
    return not training or (min(x.shape[2], x.shape[3]) >= policy.SUBPIXEL_MIN_SIDE
                            and x.shape[0] * x.shape[2] * x.shape[3] >= max(policy.SUBPIXEL_MIN_POSITIONS,
                                                                            conv.out_channels))


def _onednn_ok(x: torch.Tensor) -> bool:
    """Whether oneDNN's pre-packed convolutions take ``x``, checked before they are asked: the ops
    exist in this torch, oneDNN is enabled, a non-empty channels_last CPU batch, and float32 or
    bfloat16 where this CPU has bfloat16 convolutions (elsewhere the weight reorder fails)."""
    return (_POINTWISE is not None and _REORDER is not None and x.device.type == "cpu"
            and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and _onednn_bf16()))
            and x.dim() == 4 and x.shape[0] > 0 and x.is_contiguous(memory_format=torch.channels_last)
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)


def fused_conv(owner: nn.Module, name: str, conv: nn.Conv2d, x: torch.Tensor, norm=None, relu: bool = False,
               subpixel: bool = False, residual=None, lean_relu: bool = False, pre_norm=None) -> torch.Tensor:
    """Fast path of ``relu(norm(conv(upsample2x(x) if subpixel else x))) + residual`` (each part
    optional; ``residual`` is added after the activation, and only used without ``relu``), with
    ``x`` replaced by ``relu(pre_norm(x))`` when ``pre_norm`` is given (a pre-activation block).

    float32 and (CPU autocast) bfloat16 CPU inference convolutions of large maps run as Winograd convolutions
    (:mod:`winograd_conv`), with an eval-mode ``pre_norm`` + ReLU applied as the input is read.

    ``lean_relu``: the block's output is not kept by its consumer (pooling, concatenation), so
    with autograd a training-mode BatchNorm + ReLU keeps only its input (see
    :mod:`batchnorm_relu`). Where that function's backward is the compiled CPU kernel it is used
    for every training BatchNorm + ReLU (faster than autograd's, never more memory)."""
    if residual is not None and relu:
        raise ValueError("fused_conv: residual and relu together are not supported")
    params = (conv.weight, conv.bias) + ((norm.weight, norm.bias) if norm is not None else ())
    inference = not needs_grad(x, residual, *params) and (norm is None or foldable(norm))
    if pre_norm is not None:
        if (inference and foldable(pre_norm) and not needs_grad(pre_norm.weight, pre_norm.bias)
                and _winograd_ok(conv, x, subpixel)):
            return fused_winograd(owner, name, conv, x, norm, relu, subpixel, residual, pre_norm)
        x = batchnorm_relu(owner, name + "_pre_norm", pre_norm, x)
        inference = inference and not needs_grad(x)
    elif inference and _winograd_ok(conv, x, subpixel):
        return fused_winograd(owner, name, conv, x, norm, relu, subpixel, residual)
    padding, stride = ((1, 1), (1, 1)) if subpixel else (tuple(conv.padding), tuple(conv.stride))
    if not inference:
        w, b = conv.weight, conv.bias
        if subpixel:
            w, b = subpixel_weights(w, b)
        if not subpixel and gemm_conv.applies(conv, x):
            y = gemm_conv.gemm_conv3x3(x, w, b)
        else:
            y = F.conv2d(x, w, b, stride, padding, conv.dilation, conv.groups)
        if subpixel:
            y = interleave_phases(y)
        if (norm is not None and relu and (lean_relu or bn_relu.has_fast_backward(y))
                and bn_relu.supported(norm, y)):
            return bn_relu.batchnorm_relu_train(norm, y)
        if norm is not None:
            y = norm(y)
        if relu:
            y = F.relu(y, inplace=True)
        return y if residual is None else y.add_(residual)

    dtype = inference_dtype(x)
    if dtype != x.dtype:
        x = x.to(dtype)
    onednn = _onednn_ok(x)
    sources = params + ((norm.running_mean, norm.running_var) if norm is not None else ())

    def compute():
        w, b = conv.weight, conv.bias
        if norm is not None:
            w, b = fold_batchnorm(w, b, norm)
        if subpixel:
            w, b = subpixel_weights(w, b)
        # bfloat16 inference: bfloat16 weights and bias (oneDNN's fused residual add takes no other bias)
        w, b = w.to(x.dtype), None if b is None else b.to(x.dtype)
        if onednn:
            w = _REORDER.default(w, list(padding), list(stride), list(conv.dilation), conv.groups, list(x.shape))
        elif x.is_contiguous(memory_format=torch.channels_last):
            w = w.contiguous(memory_format=torch.channels_last)
        return w, b

    key_extra = (tuple(x.shape), x.dtype, onednn, x.is_contiguous(memory_format=torch.channels_last))
    w, b = cached_weights(owner, name, sources, compute, key_extra)
    y = None
    if onednn and residual is None:
        y = _POINTWISE.default(x, w, b, list(padding), list(stride), list(conv.dilation), conv.groups,
                               "relu" if relu else "none", [], "")
    elif onednn:
        y = _POINTWISE.binary(x, residual.to(x.dtype).contiguous(memory_format=torch.channels_last), w, b,
                              list(padding), list(stride), list(conv.dilation), conv.groups, "add", 1.0, None, [], None)
    else:
        y = F.conv2d(x, w, b, stride, padding, conv.dilation, conv.groups)
        if relu:
            y = F.relu(y, inplace=True)
        if residual is not None:
            y = y.add_(residual.to(y.dtype))
    return interleave_phases(y) if subpixel else y


def _winograd_ok(conv: nn.Conv2d, x, subpixel: bool) -> bool:
    first = x if isinstance(x, torch.Tensor) else x[0]
    return subpixel_ok(conv) and wc.applies(x, conv.in_channels, subpixel, inference_dtype(first))


def winograd_takes_parts(conv: nn.Conv2d, norm, parts, subpixel: bool) -> bool:
    """Whether :func:`fused_winograd` runs this inference layer on the channel ``parts`` of its
    input as they are (no concatenation)."""
    return not torch.is_grad_enabled() and (norm is None or foldable(norm)) and _winograd_ok(conv, parts, subpixel)


def defer_cat(parts) -> bool:
    """Whether a decoder may hand its next layer the channel parts unconcatenated (inference on
    float32 or bfloat16 CPU tensors; the layer concatenates them itself unless Winograd reads them
    in place)."""
    return (not torch.is_grad_enabled() and len(parts) <= wc.MAX_PARTS
            and all(p.device.type == "cpu" and p.dtype in (torch.float32, torch.bfloat16) and p.dim() == 4
                    for p in parts))


def fused_winograd(owner, name, conv, x, norm=None, relu=False, subpixel=False, residual=None, pre_norm=None):
    """The inference path of :func:`fused_conv` as a Winograd convolution (float32, or bfloat16 under
    CPU autocast; see :func:`_winograd_ok`); ``x`` may be the list of its channel parts."""
    dtype = inference_dtype(x if isinstance(x, torch.Tensor) else x[0])
    sources = (conv.weight, conv.bias) + (() if norm is None else (
        norm.weight, norm.bias, norm.running_mean, norm.running_var))

    def compute():
        w, b = conv.weight, conv.bias
        if norm is not None:
            w, b = fold_batchnorm(w, b, norm)
        b = w.new_zeros(w.shape[0]) if b is None else b
        return wc.transform_weights(w, "upsampled" if subpixel else "conv3x3", dtype), b.float().contiguous()

    weight_t, bias = cached_weights(owner, name + "_winograd", sources, compute, (subpixel, dtype))
    scale = shift = None
    if pre_norm is not None:
        def compute_pre():
            ones = torch.ones(pre_norm.num_features, dtype=pre_norm.running_var.dtype, device=bias.device)
            s, b = fold_batchnorm(ones, None, pre_norm)
            return s.float().contiguous(), b.float().contiguous()

        scale, shift = cached_weights(owner, name + "_pre_norm_winograd", (
            pre_norm.weight, pre_norm.bias, pre_norm.running_mean, pre_norm.running_var), compute_pre)
    return wc.winograd_conv2d(x, weight_t, bias, 1, subpixel, scale, shift, residual, relu)


def batchnorm_relu(owner: nn.Module, name: str, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``relu(norm(x))``; for eval-mode inference on oneDNN one pass: a depthwise 1x1 convolution
    holding BatchNorm's per-channel scale and shift, with the ReLU fused."""
    if foldable(norm) and not needs_grad(x, norm.weight, norm.bias) and inference_dtype(x) != x.dtype:
        x = x.to(inference_dtype(x))
    onednn = foldable(norm) and not needs_grad(x, norm.weight, norm.bias) and _onednn_ok(x)
    if not onednn:
        if needs_grad(x, norm.weight, norm.bias) and bn_relu.supported(norm, x) and bn_relu.has_fast_backward(x):
            return bn_relu.batchnorm_relu_train(norm, x)
        return F.relu(norm(x), inplace=True)
    channels = x.shape[1]

    def compute():
        eye = torch.ones(channels, 1, 1, 1, dtype=norm.running_var.dtype, device=x.device)
        w, b = fold_batchnorm(eye, None, norm)
        return _REORDER.default(w.to(x.dtype), [0, 0], [1, 1], [1, 1], channels, list(x.shape)), b.to(x.dtype)

    sources = (norm.weight, norm.bias, norm.running_mean, norm.running_var)
    w, b = cached_weights(owner, name, sources, compute, (tuple(x.shape), x.dtype))
    return _POINTWISE.default(x, w, b, [0, 0], [1, 1], [1, 1], channels, "relu", [], "")
