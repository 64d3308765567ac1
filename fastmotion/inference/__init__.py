"""User-facing inference: :class:`Animator` (images in, images out), the built-in demo assets,
drawing helpers for the commands."""
from fastmotion.inference.animator import Animator, FrameResult
from fastmotion.inference.demo import demo_assets

__all__ = ["Animator", "FrameResult", "demo_assets"]
