"""Streaming motion transfer: one source image, many driving frames.

The original ``transfer.py`` re-runs the generator's whole encoder on the source for every
driving frame. :class:`Animator` runs the source-side work once (source keypoints, the
generator's encoder skips) and then per driving frame only the keypoint detector, the dense
motion, the skip warping and the decoder. Results equal ``generator(source, kp_norm,
kp_source)`` for each frame.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch

from fastmotion.models import frames as fr
from fastmotion.models.generator import MotionTransferGenerator
from fastmotion.models.keypoint_detector import KPDetector
from fastmotion.models.normalize import normalize_kp


class Animator:
    """Animate a source image with driving frames.

    Args:
        kp_detector, generator: the trained networks (put in eval mode by the caller, as the
            original does before transfer).
        normalization_params: the config's ``transfer_params.normalization_params``
            (``move_location``, ``movement_mult``, ``adapt_variance``, ``clip_mean``); the
            first driving frame after :meth:`set_source` is the initial driving pose.

    Usage::

        animator = Animator(kp_detector, generator, config["transfer_params"]["normalization_params"])
        animator.set_source(source)                 # (B, C, H, W)
        for frame in frames:                        # (B, C, H, W) each
            out = animator(frame)                   # {'video_prediction', 'video_deformed', ...}
    """

    def __init__(self, kp_detector: KPDetector, generator: MotionTransferGenerator,
                 normalization_params: Optional[Mapping] = None):
        if not isinstance(kp_detector, KPDetector):
            raise TypeError(f"Animator: kp_detector must be a fastmotion KPDetector, got {type(kp_detector).__name__}")
        if not isinstance(generator, MotionTransferGenerator):
            raise TypeError(f"Animator: generator must be a fastmotion MotionTransferGenerator, "
                            f"got {type(generator).__name__}")
        params = dict(normalization_params or {})
        allowed = {"movement_mult", "move_location", "adapt_variance", "clip_mean"}
        if set(params) - allowed:
            raise ValueError(f"Animator: unknown normalization_params {sorted(set(params) - allowed)}; "
                             f"expected some of {sorted(allowed)}")
        self.kp_detector = kp_detector
        self.generator = generator
        self.normalization_params = params
        self._source = None
        self.kp_source = None
        self.kp_initial = None

    @torch.no_grad()
    def set_source(self, source: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Detect the source keypoints and encode the source once; resets the initial driving pose.
        ``source``: ``(B, C, H, W)`` or ``(B, C, 1, H, W)``. Returns the source keypoints."""
        video = fr.check_image(source, "source", "Animator.set_source", self.generator.num_channels)
        if video:
            if source.shape[2] != 1:
                raise ValueError(f"Animator.set_source: source must be one frame, got shape {tuple(source.shape)}")
            source = source[:, :, 0]
        self.kp_source = self.kp_detector.detect(source)
        self._skips = self.generator.encode_source(source)
        self._source = source
        self.kp_initial = None
        return self.kp_source

    @property
    def source_skips(self):
        """The generator's encoder maps of the source (``[source, down_1, ...]``), computed by
        :meth:`set_source`; read-only by convention (decode them with ``generator.decode``)."""
        if self._source is None:
            raise RuntimeError("Animator: call set_source(source) first")
        return self._skips

    @torch.no_grad()
    def __call__(self, driving: torch.Tensor, kp_initial: Optional[Dict[str, torch.Tensor]] = None):
        """Animate with driving frames ``(B, C, H, W)`` (B as the source). Returns frames of
        ``video_prediction``, ``video_deformed`` and the keypoints ``kp_driving`` / ``kp_norm``."""
        if self._source is None:
            raise RuntimeError("Animator: call set_source(source) before animating")
        fr.check_image(driving, "driving", "Animator", self.generator.num_channels)
        if driving.dim() != 4 or driving.shape[0] != self._source.shape[0]:
            raise ValueError(f"Animator: driving must be frames (B={self._source.shape[0]}, C, H, W), "
                             f"got shape {tuple(driving.shape)}")
        kp_driving = self.kp_detector.detect(driving)
        if kp_initial is not None:
            self.kp_initial = kp_initial
        elif self.kp_initial is None:
            self.kp_initial = kp_driving
        kp_norm = normalize_kp(kp_driving, self.kp_source, kp_initial=self.kp_initial, **self.normalization_params)
        out = self.generator.decode(self._skips, kp_norm, self.kp_source)
        out = {k: v.contiguous() for k, v in out.items()}
        out["kp_driving"] = kp_driving
        out["kp_norm"] = kp_norm
        return out

    @torch.no_grad()
    def animate(self, source: torch.Tensor, driving_video: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The original ``transfer_one``: source ``(B, C, 1, H, W)``, driving video ``(B, C, D, H, W)``
        -> ``video_prediction`` / ``video_deformed`` ``(B, C, D, H, W)`` and the keypoints."""
        fr.check_image(driving_video, "driving_video", "Animator.animate", self.generator.num_channels)
        if driving_video.dim() != 5:
            raise ValueError(f"Animator.animate: driving_video must be (B, C, D, H, W), got {tuple(driving_video.shape)}")
        self.set_source(source)
        frames = [self(driving_video[:, :, i]) for i in range(driving_video.shape[2])]
        out = {k: torch.stack([f[k] for f in frames], dim=2) for k in ("video_prediction", "video_deformed")}
        for key in ("kp_driving", "kp_norm"):
            out[key] = {k: torch.stack([f[key][k] for f in frames], dim=1) for k in frames[0][key]}
        out["kp_source"] = {k: v.unsqueeze(1) for k, v in self.kp_source.items()}
        return out
