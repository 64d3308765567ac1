"""The hourglass building blocks of Monkey-Net, on frames ``(N, C, H, W)``.

Same constructor arguments and state_dict keys as the original ``modules/util.py`` blocks
(``ResBlock3D``, ``UpBlock3D``, ``DownBlock3D``, ``SameBlock3D``, ``Encoder``, ``Decoder``,
``Hourglass``); the (1, k, k) Conv3d layers run as 2-D convolutions and BatchNorm3d as
BatchNorm2d (same statistics: frames are folded into the batch). The reference path is the
original layer sequence; the fast path folds eval-mode BatchNorm into the convolution, applies
ReLU in place, runs up-sampling convolutions sub-pixel and, for inference, runs convolutions as
oneDNN kernels with pre-packed weights and fused activations (see :mod:`conv_fusion`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastmotion.models import conv_fusion as cf
from fastmotion.models import policy
from fastmotion.models.conv3d_layout import FrameConv2d, spatial_kernel
from fastmotion.models.module_backend import BackendModule
from fastmotion.models.resample2x import avg_pool_2x2, upsample_nearest_2x


def _no_temporal(temporal: bool, what: str):
    if temporal:
        raise ValueError(f"{what}(temporal=True): temporal (3, 3, 3) convolutions are not supported; "
                         "fastmotion runs frames independently (no original config uses them)")


class ResBlock(BackendModule):
    """Pre-activation residual block; keeps the resolution."""

    def __init__(self, in_features, kernel_size, padding):
        super().__init__()
        kernel, pad = spatial_kernel(kernel_size, padding)
        self.conv1 = FrameConv2d(in_features, in_features, kernel, padding=pad)
        self.conv2 = FrameConv2d(in_features, in_features, kernel, padding=pad)
        self.norm1 = nn.BatchNorm2d(in_features, affine=True)
        self.norm2 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x):
        if not self.fast_path():
            x = torch.cat(x, dim=1) if isinstance(x, list) else x
            out = self.norm1(x)
            out = F.relu(out)
            out = self.conv1(out)
            out = self.norm2(out)
            out = F.relu(out)
            out = self.conv2(out)
            return out + x
        if isinstance(x, list):  # channel parts a decoder left unconcatenated (cf.defer_cat)
            if (cf.foldable(self.norm1) and cf.winograd_takes_parts(self.conv1, self.norm2, x, subpixel=False)
                    and cf.winograd_takes_parts(self.conv2, None, x, subpixel=False)):
                out = cf.fused_winograd(self, "conv1", self.conv1, x, norm=self.norm2, relu=True, pre_norm=self.norm1)
                return cf.fused_winograd(self, "conv2", self.conv2, out, residual=x)
            x = cf.cat_channels(x, True)
        x = cf.fast_layout(x)
        out = cf.fused_conv(self, "conv1", self.conv1, x, pre_norm=self.norm1, norm=self.norm2, relu=True)
        return cf.fused_conv(self, "conv2", self.conv2, out, residual=x)


class _ConvNormBlock(BackendModule):
    """A conv and the BatchNorm after it (``conv`` and ``norm``, the original's state_dict keys)."""

    def __init__(self, in_features, out_features, kernel_size, padding, groups=1):
        super().__init__()
        kernel, pad = spatial_kernel(kernel_size, padding)
        self.conv = FrameConv2d(in_features, out_features, kernel, padding=pad, groups=groups)
        self.norm = nn.BatchNorm2d(out_features, affine=True)


class UpBlock(_ConvNormBlock):
    """Nearest 2x up-sampling, conv, BatchNorm, ReLU (decoder)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1):
        super().__init__(in_features, out_features, kernel_size, padding)

    def forward(self, x):
        if not self.fast_path():
            x = torch.cat(x, dim=1) if isinstance(x, list) else x
            out = F.interpolate(x, scale_factor=(2, 2))
            out = self.conv(out)
            out = self.norm(out)
            return F.relu(out)
        if isinstance(x, list):  # channel parts the decoder left unconcatenated (cf.defer_cat)
            if cf.winograd_takes_parts(self.conv, self.norm, x, subpixel=True):
                return cf.fused_winograd(self, "conv", self.conv, x, norm=self.norm, relu=True, subpixel=True)
            x = cf.cat_channels(x, True)
        x = cf.fast_layout(x)
        training = cf.needs_grad(x, self.conv.weight) or not cf.foldable(self.norm)
        subpixel = cf.use_subpixel(self.conv, x, training)
        if not subpixel:
            x = upsample_nearest_2x(x)
        return cf.fused_conv(self, "conv", self.conv, x, norm=self.norm, relu=True, subpixel=subpixel, lean_relu=True)


class DownBlock(_ConvNormBlock):
    """Conv, BatchNorm, ReLU, 2x2 average pooling (encoder)."""

    def __init__(self, in_features, out_features, kernel_size=3, padding=1):
        super().__init__(in_features, out_features, kernel_size, padding)
        # Kept as a module like the original (AvgPool3d has no state, so keys are unaffected).
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x):
        if not self.fast_path():
            out = self.conv(x)
            out = self.norm(out)
            out = F.relu(out)
            return self.pool(out)
        image = x.shape[1] <= policy.CHANNELS_LAST_IMAGE_MAX_CHANNELS and cf.channels_last_for_autograd(x)
        x = x.contiguous(memory_format=torch.channels_last) if image else cf.fast_layout(x)
        out = cf.fused_conv(self, "conv", self.conv, x, norm=self.norm, relu=True, lean_relu=True)
        if tuple(self.pool.kernel_size) in ((2, 2), 2) and self.pool.stride in (None, (2, 2), 2):
            out = avg_pool_2x2(out)
        else:
            out = self.pool(out)
        return out.contiguous() if image else out


class SameBlock(_ConvNormBlock):
    """(Group) conv, BatchNorm, ReLU; keeps the resolution."""

    def __init__(self, in_features, out_features, groups=None, kernel_size=3, padding=1):
        super().__init__(in_features, out_features, kernel_size, padding, groups=groups or 1)

    def forward(self, x):
        if not self.fast_path():
            return F.relu(self.norm(self.conv(x)))
        return cf.fused_conv(self, "conv", self.conv, cf.fast_layout(x), norm=self.norm, relu=True)


class Encoder(BackendModule):
    """Hourglass encoder: returns ``[x, down_1(x), down_2(down_1(x)), ...]``."""

    def __init__(self, block_expansion, in_features, num_blocks=3, max_features=256, temporal=False):
        super().__init__()
        _no_temporal(temporal, "Encoder")
        self.down_blocks = nn.ModuleList(
            DownBlock(in_features if i == 0 else min(max_features, block_expansion * (2 ** i)),
                      min(max_features, block_expansion * (2 ** (i + 1))), kernel_size=(1, 3, 3), padding=(0, 1, 1))
            for i in range(num_blocks))

    def forward(self, x):
        outs = [x]
        for down_block in self.down_blocks:
            outs.append(down_block(outs[-1]))
        return outs


class Decoder(BackendModule):
    """Hourglass decoder over the encoder's skip list (deepest last); does not modify the list."""

    def __init__(self, block_expansion, in_features, out_features, num_blocks=3, max_features=256, temporal=False,
                 additional_features_for_block=0, use_last_conv=True):
        super().__init__()
        _no_temporal(temporal, "Decoder")
        self.up_blocks = nn.ModuleList(
            UpBlock((1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * (2 ** (i + 1)))
                    + additional_features_for_block,
                    min(max_features, block_expansion * (2 ** i)), kernel_size=(1, 3, 3), padding=(0, 1, 1))
            for i in reversed(range(num_blocks)))
        if use_last_conv:
            self.conv = FrameConv2d(block_expansion + in_features + additional_features_for_block, out_features,
                                    kernel_size=(3, 3), padding=(1, 1))
        else:
            self.conv = None

    def forward(self, x):
        """``x``: skips, shallowest first. A skip may also be a tuple of tensors that are
        concatenated along channels (the generator's warped skip and keypoint embedding). Without
        a last conv, fast-path inference may return the output's channel parts as a list."""
        skips = list(x)
        fast = self.fast_path()
        out = skips.pop()
        if isinstance(out, (tuple, list)):
            out = cf.cat_channels(out, fast)
        for up_block in self.up_blocks:
            skip = skips.pop()
            parts = [up_block(out)] + (list(skip) if isinstance(skip, (tuple, list)) else [skip])
            out = parts if fast and cf.defer_cat(parts) else cf.cat_channels(parts, fast)
        if self.conv is None:
            return out  # parts (a list) when deferred: the generator's refinement blocks read them
        if isinstance(out, list):
            out = cf.cat_channels(out, fast)
        return cf.fused_conv(self, "conv", self.conv, out) if fast else self.conv(out)


class Hourglass(BackendModule):
    """Encoder + decoder with skip connections."""

    def __init__(self, block_expansion, in_features, out_features, num_blocks=3, max_features=256, temporal=False):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features, temporal=temporal)
        self.decoder = Decoder(block_expansion, in_features, out_features, num_blocks, max_features, temporal=temporal)

    def forward(self, x):
        return self.decoder(self.encoder(x))


# The original's names.
ResBlock3D, UpBlock3D, DownBlock3D, SameBlock3D = ResBlock, UpBlock, DownBlock, SameBlock
