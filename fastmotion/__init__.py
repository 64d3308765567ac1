"""fastmotion: fused kernels for keypoint-driven image animation and a drop-in Monkey-Net."""
from fastmotion._version import __version__
from fastmotion.backends import BACKENDS, use_backend
from fastmotion import ops, reference
from fastmotion.checkpoint import load_checkpoint, save_checkpoint
from fastmotion.config import load_config
from fastmotion.inference import Animator

__all__ = ["__version__", "BACKENDS", "use_backend", "ops", "reference", "load_config", "load_checkpoint",
           "save_checkpoint", "Animator"]
