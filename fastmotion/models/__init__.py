"""Drop-in Monkey-Net (Siarohin et al., CVPR 2019) on fastmotion's fused ops.

Same constructor arguments and ``state_dict`` keys as the original modules, so the original
configs build them and the original checkpoints load; forward passes take the original's
videos ``(B, C, D, H, W)`` or frame batches ``(B, C, H, W)``.
"""
from fastmotion.models.animator import Animator
from fastmotion.models.blocks import (Decoder, DownBlock, DownBlock3D, Encoder, Hourglass, ResBlock, ResBlock3D,
                                      SameBlock, SameBlock3D, UpBlock, UpBlock3D)
from fastmotion.models.build import build_models
from fastmotion.models.dense_motion import DenseMotionModule, IdentityDeformation
from fastmotion.models.discriminator import Discriminator
from fastmotion.models.generator import MotionTransferGenerator
from fastmotion.models.keypoint_detector import KPDetector
from fastmotion.models.movement_embedding import MovementEmbeddingModule
from fastmotion.models.normalize import convex_hull_area, normalize_kp

__all__ = [
    "KPDetector", "MovementEmbeddingModule", "DenseMotionModule", "IdentityDeformation", "MotionTransferGenerator",
    "Discriminator", "Encoder", "Decoder", "Hourglass", "ResBlock", "UpBlock", "DownBlock", "SameBlock",
    "ResBlock3D", "UpBlock3D", "DownBlock3D", "SameBlock3D", "build_models",
    "Animator", "normalize_kp", "convex_hull_area",
]
