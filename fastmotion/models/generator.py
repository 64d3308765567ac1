"""Monkey-Net's motion transfer generator.

Encode the source image, warp every encoder skip by the dense-motion grid
(``ops.warp_features``, which also resizes the grid per skip), concatenate the keypoint
embedding resized to each skip, decode, refine, sigmoid. Returns the prediction and the
source warped by the same grid (``video_deformed``).

The source-side work (``encode_source``) is separate from the per-driving-frame work
(``decode``), so a source shared by many driving frames is encoded once
(see :class:`fastmotion.models.Animator`).
"""
from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

from fastmotion import nvtx, ops
from fastmotion.config.validate import INTERPOLATION_MODES
from fastmotion.models import conv_fusion as cf
from fastmotion.models import frames as fr
from fastmotion.models.blocks import Decoder, Encoder, ResBlock
from fastmotion.models.conv3d_layout import FrameConv2d
from fastmotion.models.dense_motion import DenseMotionModule, IdentityDeformation, prepare_source_inputs
from fastmotion.models.input_size import HourglassSize, check_size
from fastmotion.models.module_backend import BackendModule
from fastmotion.models.movement_embedding import optional_embedding


class MotionTransferGenerator(BackendModule):
    """Given a source image and source / driving keypoints, reconstructs the driving frame."""

    def __init__(self, num_channels, num_kp, kp_variance, block_expansion, max_features, num_blocks,
                 num_refinement_blocks, dense_motion_params=None, kp_embedding_params=None,
                 interpolation_mode='nearest', *, backend=None):
        super().__init__()
        if interpolation_mode not in INTERPOLATION_MODES:
            raise ValueError(f"MotionTransferGenerator: interpolation_mode must be one of {INTERPOLATION_MODES}, "
                             f"got {interpolation_mode!r}")
        self.appearance_encoder = Encoder(block_expansion, in_features=num_channels, max_features=max_features,
                                          num_blocks=num_blocks)
        self.kp_embedding_module, embedding_features = optional_embedding(kp_embedding_params, num_kp, kp_variance,
                                                                          num_channels)
        if dense_motion_params is not None:
            self.dense_motion_module = DenseMotionModule(num_kp=num_kp, kp_variance=kp_variance,
                                                         num_channels=num_channels, **dense_motion_params)
        else:
            self.dense_motion_module = IdentityDeformation()
        self.video_decoder = Decoder(block_expansion=block_expansion, in_features=num_channels,
                                     out_features=num_channels, max_features=max_features, num_blocks=num_blocks,
                                     additional_features_for_block=embedding_features, use_last_conv=False)
        self.refinement_module = nn.Sequential()
        in_features = block_expansion + num_channels + embedding_features
        for i in range(num_refinement_blocks):
            self.refinement_module.add_module('r' + str(i), ResBlock(in_features, kernel_size=(1, 3, 3),
                                                                     padding=(0, 1, 1)))
        self.refinement_module.add_module('conv-last', FrameConv2d(in_features, num_channels, kernel_size=1,
                                                                   padding=0))
        self.interpolation_mode = interpolation_mode
        self.num_channels = num_channels
        self.num_kp = num_kp
        if backend is not None:
            self.set_backend(backend)

    def encode_source(self, source: torch.Tensor) -> List[torch.Tensor]:
        """Encoder skips of source frames ``(B, C, H, W)``: ``[source, down_1, down_2, ...]``."""
        op = type(self).__name__
        fr.check_dtype(source, "source_image", op, self)
        check_size(source, "source_image", op, self.input_size_rules())
        skips = self.appearance_encoder(source)
        if self.fast_path() and not torch.is_grad_enabled():
            # the skips only feed warp_features, whose CPU kernel reads contiguous maps faster than
            # the encoder's channels_last ones (bench/test_warp_layout.py)
            skips = [s.contiguous() for s in skips]
        return skips

    def input_size_rules(self):
        """The appearance hourglass at full size and the dense motion hourglass at its scale."""
        rules = [HourglassSize(len(self.appearance_encoder.down_blocks))]
        dense = self.dense_motion_module
        if isinstance(dense, DenseMotionModule):
            rules.append(HourglassSize(len(dense.hourglass.encoder.down_blocks), dense.scale_factor))
        return rules

    def decode(self, skips: List[torch.Tensor], kp_driving, kp_source) -> Dict[str, torch.Tensor]:
        """Predict frames from the source's encoder skips and frame keypoints ``(N, K, 2)``, where
        ``N = B * d`` (d driving frames per source, frame-major within each source)."""
        source = skips[0]
        n = kp_driving["mean"].shape[0]
        if n != source.shape[0]:
            if n % source.shape[0]:
                raise ValueError(f"decode: {n} keypoint frames do not split evenly over {source.shape[0]} sources")
            d = n // source.shape[0]
            skips = [fr.repeat_frames(s, d) for s in skips]
            source = skips[0]
        fast = self.fast_path()
        memo = {} if fast else None  # heatmaps shared by the dense motion and the keypoint embedding
        with nvtx.range("dense motion"):
            grid = self.dense_motion_module.flow(source, kp_driving, kp_source, memo)
        mode = self.interpolation_mode
        with nvtx.range("warp"):
            deformed = ops.warp_features(skips, grid, mode, backend=self.ops_backend())
        if fast:
            video_deformed = deformed[0]  # skip 0 is the source itself, warped by the same grid
        else:
            # The grid in the source's dtype: under autocast the dense motion's grid is half while
            # the source image is float32 (F.grid_sample, autocast's float32 list, ran in float32).
            video_deformed = ops.grid_sample(source, fr.resize(grid.permute(0, 3, 1, 2), source.shape[-2:], mode)
                                             .permute(0, 2, 3, 1).to(source.dtype), "bilinear", "zeros", True,
                                             backend=self.ops_backend())
        if self.kp_embedding_module is not None:
            embedding = self.kp_embedding_module.embed(source, kp_driving, kp_source, memo)
            if fast:  # the decoder concatenates (skip, embedding) with its own input in one pass
                embedding = cf.fast_layout(embedding)
                skips = [(a, self._resize_embedding(embedding, a.shape[-2:], fast)) for a in deformed]
            else:
                skips = [torch.cat([a, self._resize_embedding(embedding, a.shape[-2:], fast)], dim=1)
                         for a in deformed]
        else:
            skips = deformed
        with nvtx.range("decode"):
            return self._decode(skips, fast, video_deformed)

    def _decode(self, skips, fast, video_deformed):
        prediction = self.video_decoder(skips)
        if isinstance(prediction, list) and not isinstance(next(iter(self.refinement_module), None), ResBlock):
            prediction = cf.cat_channels(prediction, fast)
        if fast:  # the same modules; the last 1x1 conv through the fast conv path
            if cf.channels_last_for_autograd(prediction):
                prediction = prediction.contiguous(memory_format=torch.channels_last)
            for name, module in self.refinement_module.named_children():
                prediction = (cf.fused_conv(self, name, module, prediction) if isinstance(module, FrameConv2d)
                              else module(prediction))
        else:
            prediction = self.refinement_module(prediction)
        return {"video_prediction": torch.sigmoid(prediction), "video_deformed": video_deformed}

    def _resize_embedding(self, embedding, size, fast):
        if fast and tuple(embedding.shape[-2:]) == tuple(size):
            return embedding  # resizing to the same size is the identity (nearest and linear)
        return fr.resize(embedding, size, self.interpolation_mode)

    def forward(self, source_image, kp_driving, kp_source):
        """Original interface: ``source_image (B, C, 1, H, W)``, keypoints ``(B, D, K, 2)`` -> dict of
        ``(B, C, D, H, W)``; or frames ``(B, C, H, W)`` + ``(B, K, 2)`` -> dict of ``(B, C, H, W)``."""
        op = type(self).__name__
        source, kp_d, kp_s, d = prepare_source_inputs(source_image, kp_driving, kp_source, op, self.num_channels,
                                                      self.num_kp)
        out = self.decode(self.encode_source(source), kp_d, kp_s)
        return {k: fr.frames_to_video(v, d) if d is not None else v.contiguous() for k, v in out.items()}
