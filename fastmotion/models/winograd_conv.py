"""Winograd convolutions for float32 and bfloat16 CPU inference (``csrc/ops/cpu/winograd_conv.cpp``).

Why: the per-frame generator is bound by convolutions that oneDNN's direct kernels already run
near the core's FMA peak (the full-resolution refinement blocks above all), so the lever left is
fewer multiply-adds. Winograd's minimal filtering F(2x2, 3x3) needs 16 instead of 36 per 2x2
outputs of a 3x3 convolution; on a nearest 2x up-sampled input (the decoders' up-sampling layers)
a quarter of its transformed input is zero, which leaves 9 multiply-adds per low-resolution pixel
for its four outputs, where the sub-pixel phase kernels (:func:`conv_fusion.subpixel_weights`)
take 16. The input and output transforms only add and subtract (points 0, +-1 and infinity) and
the weight transform runs once in float64, so the rounding error stays that of a direct float32
convolution (``tests/models/test_winograd_conv.py``). Larger tiles (F(4x4, 3x3)) would cut more but
multiply the error by 5-20 (they need the points +-2 or +-1/2).

bfloat16 (CPU autocast, on CPUs with AVX512_BF16): the same transforms in float32, the transformed
input rounded to bfloat16 for the GEMMs, which run on the project's own ``vdpbf16ps`` micro-kernel
(``csrc/ops/cpu/bf16_gemm.cpp``) with float32 accumulation, like oneDNN's bfloat16 convolutions.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

from fastmotion import _ext
from fastmotion.models import policy

_KERNEL = "winograd_conv2d"
LANES = 16  # the kernel's channel chunk: the transformed weights' output channels are padded to it
PANEL = 48  # output columns of a weight panel (kPanel in csrc/ops/cpu/winograd_conv.cpp, both dtypes)
MAX_PARTS = 4  # channel parts the kernel reads in place of one concatenated input

# The kernel's tilings, by name: (weight transform G, planes). U = G g G^T per 3x3 filter; the
# kernel holds the matching input and output transforms.
_TILINGS = {
    # F(2x2, 3x3) at the points 0, 1, -1, infinity
    "conv3x3": (((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0)), 16),
    # the same on a nearest 2x up-sampled input: rows 0, 1 and 3 of conv3x3's G (row 2 meets a
    # zero input component), row 1 doubled (the kernel's input transform takes x[i], not 2 x[i])
    "upsampled": (((1.0, 0.0, 0.0), (1.0, 1.0, 1.0), (0.0, 0.0, 1.0)), 9),
}


def _fake(inputs, weight_t, bias, padding=1, upsampled=False, input_scale=None, input_shift=None, residual=None,
          relu=False):  # noqa: ARG001 (the schema's arguments)
    n, _, h, w = inputs[0].shape
    ho, wo = (2 * h, 2 * w) if upsampled else (h + 2 * padding - 2, w + 2 * padding - 2)
    dtype = torch.bfloat16 if weight_t.dtype == torch.bfloat16 else torch.float32
    return inputs[0].new_empty((n, bias.shape[0], ho, wo), dtype=dtype).contiguous(memory_format=torch.channels_last)


if _ext.has_kernel(_KERNEL, "CPU"):
    torch.library.register_fake(f"fastmotion::{_KERNEL}")(_fake)


# The GEMMs run on oneDNN's brgemm micro-kernels, which need AVX2 or AVX-512 (elsewhere torch falls
# back to a plain loop, slower than the direct convolutions it would replace).
_VECTOR_CPU = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def _cpu_has_avx512_bf16() -> bool:
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(check is not None and check())


_BF16_CPU = _cpu_has_avx512_bf16()


def built() -> bool:
    """Whether the compiled kernel is there (the extension is built)."""
    return _ext.has_kernel(_KERNEL, "CPU")


def available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether the fast path uses the kernel for ``dtype``: it is built and the CPU runs it fast
    (bfloat16: AVX512_BF16 instructions)."""
    if dtype == torch.bfloat16:
        return _VECTOR_CPU and _BF16_CPU and built()
    return dtype == torch.float32 and _VECTOR_CPU and built()


def transform_weights(weight: torch.Tensor, tiling: str = "conv3x3", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(Cout, Cin, 3, 3)`` -> the kernel's weights: ``U = G g G^T`` per filter for the tiling
    (``conv3x3`` or ``upsampled``), computed in float64 and rounded once, the output channels padded
    with zeros to ``Cop``, a multiple of 16. Each plane is stored by panels of output columns (the
    last one the rest), one after the other:

    - float32: ``(planes, Cin, Cop)``, panels of 48 columns, each ``[Cin][column]``;
    - ``dtype=torch.bfloat16``: ``(planes, ceil(Cin / 2) * Cop * 2)``, panels of 48 columns, each
      ``[Cin pair][column][2]`` (the bfloat16 GEMM's layout)."""
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"transform_weights: dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    if tiling not in _TILINGS:
        raise ValueError(f"transform_weights: tiling must be one of {sorted(_TILINGS)}, got {tiling!r}")
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"transform_weights: weight must be (Cout, Cin, 3, 3), got {tuple(weight.shape)}")
    g, planes = _TILINGS[tiling]
    g = torch.tensor(g, dtype=torch.float64, device=weight.device)
    cout, cin = weight.shape[:2]
    u = torch.einsum("ar,ocrs,bs->abco", g, weight.detach().double(), g).reshape(planes, cin, cout)
    u = F.pad(u, (0, -cout % LANES))
    if dtype == torch.float32:
        return _panels(u, PANEL).reshape(u.shape).float()
    u = F.pad(u, (0, 0, 0, cin % 2))  # an even number of input channels: pairs
    pairs = u.reshape(planes, u.shape[1] // 2, 2, u.shape[2]).transpose(2, 3)  # [plane][pair][column][2]
    return _panels(pairs, PANEL).to(torch.bfloat16)


def _panels(u: torch.Tensor, width: int) -> torch.Tensor:
    """``(planes, rows, columns, ...)`` -> ``(planes, -1)``: each plane as its panels of ``width``
    columns (the last one the rest), one after the other, each row-major: a GEMM streams a panel
    from memory in order."""
    return torch.cat([u[:, :, c0:c0 + width].reshape(u.shape[0], -1) for c0 in range(0, u.shape[2], width)],
                     dim=1).contiguous()


def applies(x: Union[torch.Tensor, Sequence[torch.Tensor]], in_channels: int, upsampled: bool,
            dtype: torch.dtype = torch.float32) -> bool:
    """Whether a CPU inference convolution of ``x`` (a tensor, or the channel parts of one; 3x3 with
    padding 1, with ``upsampled`` on its nearest 2x up-sampling) computed in ``dtype`` (float32, or
    bfloat16 under CPU autocast) runs as Winograd: the kernel is built for this CPU, and the GEMMs,
    not the transforms or the weights' size, dominate (see :mod:`policy`)."""
    parts = [x] if isinstance(x, torch.Tensor) else list(x)
    x = parts[0]
    readable = (torch.float32,) if dtype == torch.float32 else (torch.float32, torch.bfloat16)
    if not (all(p.device.type == "cpu" and p.dtype in readable and p.dim() == 4 for p in parts)
            and len(parts) <= MAX_PARTS and x.shape[0] > 0 and not torch.is_grad_enabled()
            and in_channels >= policy.WINOGRAD_MIN_IN_CHANNELS and available(dtype)):
        return False
    return upsampled or x.shape[0] * x.shape[2] * x.shape[3] >= policy.WINOGRAD_CONV3X3_MIN_POSITIONS


def winograd_conv2d(x: Union[torch.Tensor, Sequence[torch.Tensor]], weight_t: torch.Tensor, bias: torch.Tensor,
                    padding: int = 1, upsampled: bool = False, input_scale: Optional[torch.Tensor] = None,
                    input_shift: Optional[torch.Tensor] = None, residual: Optional[torch.Tensor] = None,
                    relu: bool = False) -> torch.Tensor:
    """``relu(conv2d(pre(x), w, bias, padding))`` or ``conv2d(pre(x), w, bias, padding) + residual``
    for ``weight_t = transform_weights(w, dtype=...)``, stride 1, channels_last out in that dtype
    (``x`` and ``residual`` float32 or bfloat16; ``bias`` float32); with
    ``upsampled`` (and ``weight_t = transform_weights(w, "upsampled")``, padding 1) the same with
    ``upsample_nearest_2x(pre(x))`` in place of ``pre(x)``: ``(N, Cout, 2H, 2W)``.

    ``pre(x) = relu(input_scale * x + input_shift)`` per channel when given (a folded BatchNorm +
    ReLU), else ``x``. ``x`` and ``residual`` may be lists of tensors: the channel parts of one,
    read in place of their concatenation."""
    return torch.ops.fastmotion.winograd_conv2d(_parts(x), weight_t, bias, padding, upsampled, input_scale, input_shift,
                                                None if residual is None else _parts(residual), relu)


def _parts(x):
    """The kernel reads channels_last and contiguous tensors as they are; others are copied."""
    parts = [x] if isinstance(x, torch.Tensor) else list(x)
    return [p if p.is_contiguous(memory_format=torch.channels_last) or p.is_contiguous()
            else p.contiguous(memory_format=torch.channels_last) for p in parts]
