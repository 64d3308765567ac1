"""Monkey-Net's dense motion module: a sampling grid from keypoints and the source image.

An hourglass reads the movement embedding and predicts K+1 mask logits (background first) and a
2-channel correction; the grid is ``identity + sum_k softmax(masks)_k * shift_k + correction``
with ``shift_k = kp_source_k - kp_driving_k`` (0 for the background), i.e. ``ops.compose_flow``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastmotion import ops
from fastmotion.models import frames as fr
from fastmotion.models.blocks import Hourglass, SameBlock
from fastmotion.models.input_size import HourglassSize, check_size
from fastmotion.models.module_backend import BackendModule
from fastmotion.models.movement_embedding import MovementEmbeddingModule, kp_shift
from fastmotion.reference.grid import make_coordinate_grid


def grid_to_video(grid: torch.Tensor, d) -> torch.Tensor:
    """``(B*D, h, w, 2)`` frame grids -> the original's ``(B, D, h, w, 3)`` with a zero z coordinate."""
    if d is None:
        return grid
    grid = grid.view(grid.shape[0] // d, d, *grid.shape[1:])
    return torch.cat([grid, grid.new_zeros(grid.shape[:-1] + (1,))], dim=-1)


class DenseMotionModule(BackendModule):
    """Predicts the sampling grid that deforms the source towards the driving keypoints."""

    def __init__(self, block_expansion, num_blocks, max_features, mask_embedding_params, num_kp,
                 num_channels, kp_variance, use_correction, use_mask, bg_init=2, num_group_blocks=0, scale_factor=1,
                 *, backend=None):
        super().__init__()
        self.mask_embedding = MovementEmbeddingModule(num_kp=num_kp, kp_variance=kp_variance, num_channels=num_channels,
                                                      add_bg_feature_map=True, **(mask_embedding_params or {}))
        channels = self.mask_embedding.out_channels
        self.group_blocks = nn.ModuleList(
            SameBlock(channels, channels, groups=num_kp + 1, kernel_size=(1, 1, 1), padding=(0, 0, 0))
            for _ in range(num_group_blocks))
        self.hourglass = Hourglass(block_expansion=block_expansion, in_features=channels,
                                   out_features=(num_kp + 1) * use_mask + 2 * use_correction,
                                   max_features=max_features, num_blocks=num_blocks)
        with torch.no_grad():
            self.hourglass.decoder.conv.weight.zero_()
            bias_init = ([bg_init] + [0] * num_kp) * use_mask + [0, 0] * use_correction
            self.hourglass.decoder.conv.bias.copy_(torch.tensor(bias_init, dtype=torch.float))
        self.num_kp = num_kp
        self.num_channels = num_channels
        self.use_correction = use_correction
        self.use_mask = use_mask
        self.scale_factor = scale_factor
        if backend is not None:
            self.set_backend(backend)

    def flow(self, source: torch.Tensor, kp_driving, kp_source, memo=None) -> torch.Tensor:
        """Absolute sampling grid ``(N, h, w, 2)`` for frames: source ``(N, C, H, W)``, kp ``(N, K, 2)``;
        (h, w) = (H, W) * scale_factor. ``memo``: see :meth:`MovementEmbeddingModule.embed`."""
        source = fr.downsample(source, self.scale_factor)
        prediction = self.mask_embedding.embed(source, kp_driving, kp_source, memo)
        fast = self.fast_path()
        for block in self.group_blocks:
            prediction = block(prediction)
            if not fast:  # leaky_relu after the block's ReLU is the identity
                prediction = F.leaky_relu(prediction, 0.2)
        prediction = self.hourglass(prediction)
        correction = prediction[:, -2:] if self.use_correction else None
        if self.use_mask:
            shift = kp_shift(kp_driving, kp_source, add_background=True)
            return ops.compose_flow(prediction[:, :self.num_kp + 1], shift, correction, backend=self.ops_backend())
        n, _, h, w = prediction.shape
        grid = make_coordinate_grid((h, w), dtype=prediction.dtype, device=prediction.device)
        if correction is None:
            return grid.expand(n, h, w, 2)
        return correction.permute(0, 2, 3, 1) + grid

    def forward(self, source_image, kp_driving, kp_source):
        """Original interface: ``(B, C, 1, H, W)`` + keypoints ``(B, D, K, 2)`` -> grid ``(B, D, h, w, 3)``
        (x, y, z=0); or frames ``(B, C, H, W)`` + ``(B, K, 2)`` -> ``(B, h, w, 2)``."""
        op = type(self).__name__
        source, kp_d, kp_s, d = prepare_source_inputs(source_image, kp_driving, kp_source, op, self.num_channels,
                                                      self.num_kp)
        fr.check_dtype(source, "source_image", op, self)
        check_size(source, "source_image", op,
                   [HourglassSize(len(self.hourglass.encoder.down_blocks), self.scale_factor)])
        return grid_to_video(self.flow(fr.repeat_frames(source, d or 1), kp_d, kp_s), d)


class IdentityDeformation(BackendModule):
    """The generator's deformation when it has no dense motion module: the identity grid."""

    def flow(self, source, kp_driving, kp_source, memo=None):
        n = kp_driving["mean"].shape[0]
        h, w = source.shape[-2:]
        return make_coordinate_grid((h, w), dtype=source.dtype, device=source.device).expand(n, h, w, 2)

    def forward(self, appearance_frame, kp_video, kp_appearance):
        source, kp_d, kp_s, d = prepare_source_inputs(appearance_frame, kp_video, kp_appearance,
                                                      type(self).__name__, None, None)
        return grid_to_video(self.flow(fr.repeat_frames(source, d or 1), kp_d, kp_s), d)


def prepare_source_inputs(source_image, kp_driving, kp_source, op, num_channels, num_kp):
    """Check and fold ``(source, kp_driving, kp_source)`` of the original interface to frames.

    Video: source ``(B, C, 1, H, W)`` (one source frame, broadcast over the D driving frames),
    kp_driving ``(B, D, K, 2)``, kp_source ``(B, 1 or D, K, 2)``. Frames: ``(B, C, H, W)``,
    ``(B, K, 2)``, ``(B, K, 2)``. Returns ``(source (B, C, H, W), kp_d (B*D, K, 2), kp_s (B*D, K, 2),
    D or None)``.
    """
    video = fr.check_image(source_image, "source_image", op, num_channels)
    b = source_image.shape[0]
    fr.check_kp(kp_driving, "kp_driving", op, video, num_kp, b)
    fr.check_kp(kp_source, "kp_source", op, video, num_kp, b)
    if not video:
        return source_image, kp_driving, kp_source, None
    if source_image.shape[2] != 1:
        raise ValueError(f"{op}: source_image must hold one frame (B, C, 1, H, W), got shape {tuple(source_image.shape)}")
    d = kp_driving["mean"].shape[1]
    fr.check_source_frames(kp_source, d, op)
    return source_image[:, :, 0], fr.kp_to_frames(kp_driving), fr.kp_to_frames(kp_source, d), d
