"""Monkey-Net's movement embedding: the keypoint representation the other modules read.

Channel layout (as the original): for each of the K (+1 background) keypoints a block of
[heatmap (1) if use_heatmap, kp difference (2) if use_difference, deformed source (C) if
use_deformed_source_image]. The heatmaps come from ``ops.keypoint_heatmap_embedding`` and the
deformed sources from ``ops.shifted_warps`` (no K+1 copies of the source image).
"""
from __future__ import annotations

import torch

from fastmotion import ops
from fastmotion.models import frames as fr
from fastmotion.models.module_backend import BackendModule, check_backend


def kp_shift(kp_driving, kp_source, add_background: bool) -> torch.Tensor:
    """``kp_source - kp_driving`` means ``(N, K (+1), 2)``, a zero background row first."""
    shift = kp_source["mean"] - kp_driving["mean"]
    if add_background:
        shift = torch.cat([shift.new_zeros(shift.shape[:-2] + (1, 2)), shift], dim=-2)
    return shift


def optional_embedding(params, num_kp, kp_variance, num_channels):
    """The movement embedding a module stacks onto its input, and its channel count: ``(None, 0)``
    when the config gives no ``*_embedding_params``."""
    if params is None:
        return None, 0
    embedding = MovementEmbeddingModule(num_kp=num_kp, kp_variance=kp_variance, num_channels=num_channels, **params)
    return embedding, embedding.out_channels


class MovementEmbeddingModule(BackendModule):
    """Keypoint heatmaps / displacements / keypoint-shifted source images, stacked per keypoint."""

    def __init__(self, num_kp, kp_variance, num_channels, use_deformed_source_image=False, use_difference=False,
                 use_heatmap=True, add_bg_feature_map=False, heatmap_type='gaussian', norm_const='sum', scale_factor=1,
                 *, backend=None):
        super().__init__()
        if heatmap_type not in ("gaussian", "difference"):
            raise ValueError(f"MovementEmbeddingModule: heatmap_type must be 'gaussian' or 'difference', "
                             f"got {heatmap_type!r}")
        if int(use_heatmap) + int(use_deformed_source_image) + int(use_difference) < 1:
            raise ValueError("MovementEmbeddingModule: at least one of use_heatmap, use_deformed_source_image, "
                             "use_difference must be set")
        self.out_channels = (1 * use_heatmap + 2 * use_difference + num_channels * use_deformed_source_image) * (
            num_kp + add_bg_feature_map)
        self.num_kp = num_kp
        self.num_channels = num_channels
        self.kp_variance = kp_variance
        self.heatmap_type = heatmap_type
        self.use_difference = use_difference
        self.use_deformed_source_image = use_deformed_source_image
        self.use_heatmap = use_heatmap
        self.add_bg_feature_map = add_bg_feature_map
        self.norm_const = norm_const
        self.scale_factor = scale_factor
        self._fm_backend = check_backend(backend)

    def embed(self, source: torch.Tensor, kp_driving, kp_source, memo=None) -> torch.Tensor:
        """``(N, out_channels, h, w)`` for frames: kp ``(N, K, 2)``; ``source (N, C, H, W)`` (only its
        size matters unless use_deformed_source_image). (h, w) = (H, W) * scale_factor.

        ``memo``: a dict shared by the embeddings of one forward pass (fast path): heatmaps with
        the same size and settings are computed once (the generator's keypoint embedding equals
        the dense motion's heatmap channels without the background)."""
        if self.use_deformed_source_image:
            source = fr.downsample(source, self.scale_factor)
            h, w = source.shape[-2:]
        else:
            h, w = fr.downsampled_size(source.shape[-2:], self.scale_factor)
        n = kp_driving["mean"].shape[0]
        parts = []
        if self.use_heatmap:
            parts.append(self._heatmap(kp_driving, kp_source, (h, w), memo).unsqueeze(2))
        if self.use_difference or self.use_deformed_source_image:
            shift = kp_shift(kp_driving, kp_source, bool(self.add_bg_feature_map))
            if self.use_difference:
                parts.append(shift.view(n, -1, 2, 1, 1).expand(n, shift.shape[1], 2, h, w))
            if self.use_deformed_source_image:
                parts.append(ops.shifted_warps(source, shift, backend=self.ops_backend()))
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        return out.reshape(n, out.shape[1] * out.shape[2], h, w)  # explicit: n may be 0

    def _heatmap(self, kp_driving, kp_source, size, memo):
        background = bool(self.add_bg_feature_map)
        key = (tuple(size), self.norm_const, self.heatmap_type, self.kp_variance)
        if memo is not None and key in memo:
            heatmap, with_background = memo[key]
            if with_background == background:
                return heatmap
            if with_background:  # drop the zero background channel: a view
                return heatmap[:, 1:]
        heatmap = ops.keypoint_heatmap_embedding(
            kp_driving, kp_source, size, norm_const=self.norm_const, heatmap_type=self.heatmap_type,
            add_background=background, kp_variance=self.kp_variance, backend=self.ops_backend())
        if memo is not None:
            memo[key] = (heatmap, background)
        return heatmap

    def forward(self, source_image, kp_driving, kp_source):
        """Original interface: video ``(B, C, 1, H, W)`` + keypoints ``(B, D, K, 2)`` ->
        ``(B, out_channels, D, h, w)``; or frames ``(B, C, H, W)`` + ``(B, K, 2)`` -> ``(B, out_channels, h, w)``."""
        op = type(self).__name__
        video = fr.check_image(source_image, "source_image", op,
                               self.num_channels if self.use_deformed_source_image else None)
        b = source_image.shape[0]
        fr.check_kp(kp_driving, "kp_driving", op, video, self.num_kp, b)
        if self.heatmap_type == "difference" or self.use_difference or self.use_deformed_source_image:
            fr.check_kp(kp_source, "kp_source", op, video, self.num_kp, b)
        if not video:
            return self.embed(source_image, kp_driving, kp_source)
        d = kp_driving["mean"].shape[1]
        fr.check_source_frames(kp_source, d, op)
        source, d_source = fr.video_to_frames(source_image)
        if self.use_deformed_source_image:
            if d_source == 1:
                source = fr.repeat_frames(source, d)
            elif d_source != d:
                raise ValueError(f"{op}: source_image has {d_source} frames; expected 1 (or one per driving frame, {d})")
        kp_source = fr.kp_to_frames(kp_source, d) if isinstance(kp_source, dict) else kp_source
        out = self.embed(source, fr.kp_to_frames(kp_driving), kp_source)
        return fr.frames_to_video(out, d)
