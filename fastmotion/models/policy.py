"""When the models rewrite a layer: the rewrites switch, and the CPU-tuned thresholds of where
each rewrite pays off, in one place.

Two switches (DESIGN.md): the op backend (``backend=``: which kernels run the fastmotion ops)
and the model rewrites (BatchNorm folded into convolutions, sub-pixel up-sampling convolutions,
oneDNN pre-packed convolutions, the training BatchNorm + ReLU kernel, the CPU resampling and
GEMM convolutions, the shared heatmaps). They are separate choices, so that a difference can be
bisected: reference ops with the rewrites, fused ops with the original layers, and so on.

Rewrites are on for a module when set so on it (``BackendModule.set_rewrites``), else when
``FASTMOTION_REWRITES`` says so (1 / 0), else unless its op backend is ``reference`` (which then
means the original math throughout).
"""
from __future__ import annotations

import os
from typing import Optional

from fastmotion import backends

REWRITES_ENV = "FASTMOTION_REWRITES"
_ENV_VALUES = {"1": True, "on": True, "true": True, "0": False, "off": False, "false": False}


def check_rewrites(value) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"rewrites must be True, False or None (the default), got {value!r}")


def requested_rewrites() -> Optional[bool]:
    """What ``FASTMOTION_REWRITES`` asks for (None when unset or empty)."""
    env = os.environ.get(REWRITES_ENV, "").strip().lower()
    if env in ("", "auto"):
        return None
    if env not in _ENV_VALUES:
        raise ValueError(f"environment variable {REWRITES_ENV} must be 1 or 0 (or unset), got {env!r}")
    return _ENV_VALUES[env]


def rewrites_on(rewrites: Optional[bool], backend: Optional[str]) -> bool:
    """Whether a module with these settings (``None``: not set on it) runs the model rewrites."""
    if rewrites is not None:
        return rewrites
    requested = requested_rewrites()
    if requested is not None:
        return requested
    return (backend or backends.requested_backend()) != "reference"


# ---- CPU-tuned thresholds of the rewrites ------------------------------------------------------
# Each was set by timing the rewrite against the layer it replaces, side by side, on the 2-core
# dev CPU; the command under it re-measures (another machine may move a threshold: compare with
# the constant changed, or the rewrites off with FASTMOTION_REWRITES=0). The numbers are in
# docs/performance.md.

# Sub-pixel up-sampling convolutions under autograd (conv_fusion.use_subpixel): the phase weights
# are rebuilt for every step and kept for the backward, and at 4x4 the padded phase outputs are
# 25/16 of the plain ones, so it lost there; it wins from 8x8 maps with enough positions.
#   python -m pytest bench/test_model.py -k "train_step and fp32"
SUBPIXEL_MIN_SIDE = 8
SUBPIXEL_MIN_POSITIONS = 64  # N * H * W of the low-resolution input (and at least Cout)

# 3x3 convolutions as im2col + one GEMM in training (gemm_conv.applies): at the hourglass
# bottlenecks (4x4 maps, 512-2048 channels) a convolution is bound by its weights, and oneDNN's
# forward + backward there was slower than one GEMM (and rounded worse).
#   python -m pytest bench/test_model.py -k "train_step and fp32"
GEMM_CONV_MAX_POSITIONS = 16  # H * W
GEMM_CONV_MIN_IN_CHANNELS = 256

# 2x nearest up-sampling of NCHW CPU tensors where the compiled kernel is missing (resample2x):
# ATen's kernel runs far below memory speed on narrow maps, where repeating each element along W
# then H is several times faster; from 64 columns on ATen's kernel is the faster one.
#   python -m pytest bench/test_resample2x.py -k nchw
REPEAT_UPSAMPLE_MAX_WIDTH = 63

# Layout under autograd on CPU: NCHW (channels_last made the training step slower: convolution
# backward and the gradients' layout conversions), except where channels_last paid off: the
# convolutions of images with this few channels (the encoders' inputs) and the generator's
# refinement blocks (conv_fusion.channels_last_for_autograd).
#   python -m pytest bench/test_model.py -k "train_step and fp32"
CHANNELS_LAST_IMAGE_MAX_CHANNELS = 4

# Winograd convolutions for float32 and bfloat16 CPU inference (winograd_conv.applies). Against
# oneDNN's direct kernels in float32: the up-sampling layers (sub-pixel on oneDNN) won at every
# Monkey-Net shape (1.2-4x, 2x2 to 128x128 inputs); 3x3 convolutions won 1.3-2x from 8x8 maps with
# 32 or more input channels, tied at 16, and lost on 4x4 and 2x2 maps (the transformed weights,
# 16/9 as large, outweigh 4-16 tiles) and on 3-channel images (the transforms dominate). In
# bfloat16 (against oneDNN's bfloat16 kernels) the same thresholds hold: the up-sampling layers won
# 1.3-4.9x, 3x3 convolutions of 8x8 and 32x32 maps 1.6-1.8x, the 256x256 refinement convolution
# 1.2x; 3-channel images lost 1.7x. 4x4 maps won 1.3x in bfloat16 (0.2 ms a frame), not worth a
# threshold of their own.
#   python -m pytest bench/test_winograd_conv.py
WINOGRAD_MIN_IN_CHANNELS = 16
WINOGRAD_CONV3X3_MIN_POSITIONS = 64  # N * H * W (an 8x8 map)
