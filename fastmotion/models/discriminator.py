"""Monkey-Net's discriminator (Pix2Pix-like), conditioned on keypoint heatmaps.

Returns the list of feature maps ``[x, block_1, ..., block_n, scores]`` that the original's
feature-matching and LSGAN losses read. InstanceNorm runs per video like the original's
InstanceNorm3d: over all (D, H, W) positions of a video, which is per frame when D == 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastmotion.models import frames as fr
from fastmotion.models.conv3d_layout import FrameConv2d
from fastmotion.models.input_size import PooledConvSize, check_size
from fastmotion.models.module_backend import BackendModule
from fastmotion.models.movement_embedding import optional_embedding
from fastmotion.models.resample2x import avg_pool_2x2


class VideoInstanceNorm(nn.InstanceNorm2d):
    """InstanceNorm2d on frames that can normalise over the frames of a video jointly."""

    def forward(self, x, frames_per_video=None):
        if x.shape[0] == 0:  # ATen's instance_norm fails on an empty batch
            return x.clone()
        if not frames_per_video or frames_per_video == 1:
            return super().forward(x)
        n, c, h, w = x.shape
        d = frames_per_video
        video = x.view(n // d, d, c, h * w).transpose(1, 2)  # (B, C, D, H*W): stats over (D, H*W)
        out = F.instance_norm(video, None, None, self.weight, self.bias, True, self.momentum, self.eps)
        return out.transpose(1, 2).reshape(n, c, h, w)


class DiscriminatorDownBlock(BackendModule):
    """Conv (k x k, no padding), optional InstanceNorm, LeakyReLU(0.2), 2x2 average pooling."""

    def __init__(self, in_features, out_features, norm=False, kernel_size=4):
        super().__init__()
        self.conv = FrameConv2d(in_features, out_features, kernel_size=(kernel_size, kernel_size))
        self.norm = VideoInstanceNorm(out_features, affine=True) if norm else None

    def forward(self, x, frames_per_video=None):
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out, frames_per_video)
        if not self.fast_path():
            return F.avg_pool2d(F.leaky_relu(out, 0.2), (2, 2))
        return avg_pool_2x2(F.leaky_relu(out, 0.2, inplace=True))


class Discriminator(BackendModule):
    """Scores (video, keypoints) pairs; returns the feature maps of every block."""

    def __init__(self, num_channels=3, num_kp=10, kp_variance=0.01, scale_factor=1,
                 block_expansion=64, num_blocks=4, max_features=512, kp_embedding_params=None, *, backend=None):
        super().__init__()
        self.kp_embedding, embedding_channels = optional_embedding(kp_embedding_params, num_kp, kp_variance,
                                                                   num_channels)
        self.down_blocks = nn.ModuleList(
            DiscriminatorDownBlock(
                num_channels + embedding_channels if i == 0 else min(max_features, block_expansion * (2 ** i)),
                min(max_features, block_expansion * (2 ** (i + 1))), norm=(i != 0), kernel_size=4)
            for i in range(num_blocks))
        self.conv = FrameConv2d(self.down_blocks[-1].conv.out_channels, out_channels=1, kernel_size=1)
        self.scale_factor = scale_factor
        self.num_channels = num_channels
        self.num_kp = num_kp
        if backend is not None:
            self.set_backend(backend)

    def feature_maps(self, frames, kp_driving, kp_source, frames_per_video=None):
        """Feature maps of frames ``(N, C, H, W)`` with keypoints ``(N, K, 2)`` (maps 1.. as frames)."""
        op = type(self).__name__
        fr.check_dtype(frames, "x", op, self)
        check_size(frames, "x", op, self.input_size_rules())
        x = fr.downsample(frames, self.scale_factor)
        if self.kp_embedding is not None:
            out = torch.cat([x, self.kp_embedding.embed(x, kp_driving, kp_source)], dim=1)
        else:
            out = x
        maps = []
        for down_block in self.down_blocks:
            out = down_block(out, frames_per_video)
            maps.append(out)
        maps.append(self.conv(out))
        return maps

    def input_size_rules(self):
        return [PooledConvSize(len(self.down_blocks), self.down_blocks[0].conv.kernel_size[-1], self.scale_factor)]

    def forward(self, x, kp_driving, kp_source):
        """Video ``(B, C, D, H, W)`` + keypoints ``(B, D, K, 2)`` -> ``[x, (B, C_i, D, h_i, w_i)...]``;
        frames ``(B, C, H, W)`` + ``(B, K, 2)`` -> ``[x, (B, C_i, h_i, w_i)...]``."""
        op = type(self).__name__
        video = fr.check_image(x, "x", op, self.num_channels)
        b = x.shape[0]
        embedding = self.kp_embedding
        if embedding is not None:
            fr.check_kp(kp_driving, "kp_driving", op, video, self.num_kp, b)
            needs_source = (embedding.heatmap_type == "difference" or embedding.use_difference
                            or embedding.use_deformed_source_image)
            if needs_source:
                fr.check_kp(kp_source, "kp_source", op, video, self.num_kp, b)
        frames, d = fr.video_to_frames(x)
        if video and embedding is not None:
            if d != kp_driving["mean"].shape[1]:
                raise ValueError(f"{op}: x has {d} frames but kp_driving['mean'] has {kp_driving['mean'].shape[1]}")
            fr.check_source_frames(kp_source, d, op)
            kp_driving = fr.kp_to_frames(kp_driving)
            kp_source = fr.kp_to_frames(kp_source, d) if isinstance(kp_source, dict) else kp_source
        maps = self.feature_maps(frames, kp_driving, kp_source, d)
        return [x] + [fr.frames_to_video(m, d) for m in maps]
