"""Shared pieces of the export tests: every packaged config with narrow layers (its structure and
depth unchanged, so the frame size it needs is the same), exported once per test session."""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

import fastmotion
import fastmotion.export as fx
from fastmotion.inference.animator import _size_multiple
from fastmotion.models import build_models
from tests.models.helpers import randomize
from tests.shared_data import shared_data

CONFIGS = fastmotion.config.config_names()


def narrow_config(name: str, width: int = 8, max_features: int = 32) -> dict:
    """A packaged config with ``block_expansion`` / ``max_features`` reduced: same blocks, embeddings,
    scale factors, keypoints and normalisation, few channels (fast export and run)."""
    config = copy.deepcopy(fastmotion.load_config(name))
    mp = config["model_params"]
    for params in (mp["kp_detector_params"], mp["generator_params"], mp["generator_params"].get("dense_motion_params")):
        if params:
            params["block_expansion"] = width
            params["max_features"] = max_features
    return config


def networks(config, seed=0):
    """kp_detector, generator with random weights and BatchNorm statistics (eval mode)."""
    torch.manual_seed(seed)
    kp_detector, generator, _ = build_models(config)
    randomize(kp_detector, generator, seed=seed)
    return kp_detector.eval(), generator.eval()


def smallest_size(kp_detector, generator):
    m = _size_multiple(kp_detector, generator)
    return (m, m)


def export_narrow(folder, name, **kwargs):
    """Export the narrow version of config ``name`` at its smallest frame size; returns
    (folder, kp_detector, generator, config)."""
    config = narrow_config(name)
    kp_detector, generator = networks(config)
    fx.export(folder, config=config, kp_detector=kp_detector, generator=generator,
              frame_size=kwargs.pop("frame_size", smallest_size(kp_detector, generator)), **kwargs)
    return folder, kp_detector, generator, config


def onnx_session(path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install fastmotion[export])")
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def run_session(session, tensors):
    feed = {i.name: t.detach().numpy() for i, t in zip(session.get_inputs(), tensors)}
    return [torch.from_numpy(np.asarray(a)) for a in session.run(None, feed)]


def moving_gif_frames(size):
    """(source, driving) frames of the shared data's moving-gif, resized to ``size``, ``(T, 3, H, W)`` in [0, 1]."""
    folder = shared_data("moving-gif", needs="driving.png")
    from fastmotion.io import read_video

    def load(path):
        frames = torch.from_numpy(read_video(path, (128, 128))).permute(0, 3, 1, 2).float() / 255
        return torch.nn.functional.interpolate(frames[:, :3], size=size, mode="area") if tuple(size) != (128, 128) \
            else frames[:, :3]

    return load(os.path.join(folder, "source.png")), load(os.path.join(folder, "driving.png"))
