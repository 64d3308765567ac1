"""A stand-in for the built-in demo assets (fastmotion/assets/demo), made in a temporary folder:
the packaged shapes config, a random-weights checkpoint with kp_detector + generator only (half
precision storage, as the real one may be), a source image and a driving strip of moving shapes."""
from __future__ import annotations

import os
import shutil

import numpy as np
import torch

import fastmotion
from fastmotion.io import write_image, write_video
from fastmotion.models import build_models
from tests.models.helpers import randomize

SIZE = 64


def shapes_clip(frames=6, size=SIZE, seed=0):
    """A square and a disc moving over a plain background, ``(T, H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for t in range(frames):
        frame = np.full((size, size, 3), 235, np.uint8)
        cx, cy = 20 + 3 * t, 24 + 2 * t
        frame[(abs(xx - cx) < 8) & (abs(yy - cy) < 8)] = (200, 40, 40)
        frame[(xx - (44 - 2 * t)) ** 2 + (yy - 40) ** 2 < 64] = (40, 60, 200)
        out.append(frame)
    clip = np.stack(out)
    clip[:, :1, :1] = rng.integers(0, 255, (frames, 1, 1, 3))
    return clip


def make_demo_standin(folder, frames=6, config_name="shapes", fp16_storage=True) -> str:
    os.makedirs(folder, exist_ok=True)
    config = fastmotion.load_config(config_name)
    shutil.copy(os.path.join(os.path.dirname(fastmotion.config.__file__), f"{config_name}.yaml"),
                os.path.join(folder, "config.yaml"))
    torch.manual_seed(0)
    kp_detector, generator, _ = build_models(config)
    randomize(kp_detector, generator)
    data = {"kp_detector": kp_detector.state_dict(), "generator": generator.state_dict()}
    if fp16_storage:
        data = {k: {n: (v.half() if v.is_floating_point() else v) for n, v in sd.items()} for k, sd in data.items()}
    torch.save(data, os.path.join(folder, "checkpoint.pth.tar"))
    clip = shapes_clip(frames)
    write_image(os.path.join(folder, "source.png"), shapes_clip(1, seed=1)[0][:, ::-1])
    write_video(os.path.join(folder, "driving.png"), clip)
    with open(os.path.join(folder, "RECIPE.md"), "w") as f:
        f.write("stand-in for tests: random weights\n")
    return folder
