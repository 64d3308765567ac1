"""Small videos for the data tests, and the shared shapes data set."""
import os

import numpy as np

from fastmotion.io.video import write_image
from tests.shared_data import shared_data


def shared_shapes_dir():
    """The shared shapes data set (tests/shared_data.py), or skip."""
    return shared_data("shapes", needs="train")


def clip(t=3, h=16, w=20, seed=0, levels=None):
    """``(t, h, w, 3)`` uint8 frames, each different; ``levels``: only multiples of 256 // levels
    (few colours, so that a GIF stores them exactly)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8)
    if levels is not None:
        frames = frames // (256 // levels) * (256 // levels)
    return frames


def smooth_clip(t=4, h=16, w=16):
    """Smooth frames (a lossy codec keeps them close): a gradient that moves with t."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([np.stack([(xx * 8 + 20 * i) % 256, (yy * 8) % 256, np.full_like(xx, 50 * i % 256)], -1)
                     for i in range(t)]).astype(np.uint8)


def write_frames_folder(folder, frames):
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        write_image(os.path.join(folder, f"{i:04d}.png"), frame)
    return folder


def as_video_tensor_numpy(frames):
    """``(T, H, W, 3)`` uint8 -> the dataset's ``(3, T, H, W)`` float in [0, 1], computed with numpy."""
    return np.transpose(frames.astype(np.float32) / 255.0, (3, 0, 1, 2))
