"""Monkey-Net's keypoint detector: hourglass heatmaps -> keypoint mean and covariance.

The head is ``ops.heatmap_moments``: softmax(heatmap / temperature), then the original's
``gaussian2kp`` (mean, covariance with the +1e-7 heatmap offset, optional variance clipping),
fused into one pass over the heatmap on the fast backends.
"""
from __future__ import annotations

import torch

from fastmotion import ops
from fastmotion.models import frames as fr
from fastmotion.models.blocks import Hourglass
from fastmotion.models.input_size import HourglassSize, check_size
from fastmotion.models.module_backend import BackendModule


class KPDetector(BackendModule):
    """Detects keypoints; returns ``{'mean': (..., K, 2), 'var': (..., K, 2, 2)}``."""

    def __init__(self, block_expansion, num_kp, num_channels, max_features, num_blocks, temperature,
                 kp_variance, scale_factor=1, clip_variance=None, *, backend=None):
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels, out_features=num_kp,
                                   max_features=max_features, num_blocks=num_blocks)
        self.temperature = temperature
        self.kp_variance = kp_variance
        self.scale_factor = scale_factor
        self.clip_variance = clip_variance
        self.num_kp = num_kp
        self.num_channels = num_channels
        if backend is not None:
            self.set_backend(backend)

    def detect(self, frames):
        """Keypoints of frames ``(N, C, H, W)``: mean ``(N, K, 2)``, var ``(N, K, 2, 2)``."""
        op = type(self).__name__
        fr.check_dtype(frames, "x", op, self)
        check_size(frames, "x", op, self.input_size_rules())
        heatmap = self.predictor(fr.downsample(frames, self.scale_factor))
        if heatmap.dtype in (torch.float16, torch.bfloat16) and torch.is_autocast_enabled(heatmap.device.type):
            # Under autocast the original's softmax ran in float32 (autocast's float32 list), and so
            # did its moments: keypoints come out in float32, as there.
            heatmap = heatmap.float()
        mean, var = ops.heatmap_moments(heatmap, self.temperature, self.kp_variance, self.clip_variance,
                                        backend=self.ops_backend())
        return {"mean": mean} if var is None else {"mean": mean, "var": var}

    def input_size_rules(self):
        return [HourglassSize(len(self.predictor.encoder.down_blocks), self.scale_factor)]

    def forward(self, x):
        """Video ``(B, C, D, H, W)`` -> mean ``(B, D, K, 2)``, var ``(B, D, K, 2, 2)``;
        frames ``(B, C, H, W)`` -> ``(B, K, 2)``, ``(B, K, 2, 2)``."""
        fr.check_image(x, "x", type(self).__name__, self.num_channels)
        frames, d = fr.video_to_frames(x)
        return fr.kp_to_video(self.detect(frames), d)
