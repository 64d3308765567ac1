"""Shared pieces of the model tests: small configs, randomised weights, comparisons."""
from __future__ import annotations

import copy

import torch

import fastmotion
from fastmotion.benchmark.model import randomize  # noqa: F401  (tests import it from here)
from fastmotion.models import build_models
from tests.shared_data import shared_data


def original_configs_dir():
    """The folder of the original configs, or skip."""
    return shared_data("original-configs")


def small_config(name="shapes", **generator_overrides):
    """A packaged config (default: shapes, 64x64, 4 keypoints) with optional generator overrides."""
    config = copy.deepcopy(fastmotion.load_config(name))
    config["model_params"]["generator_params"].update(generator_overrides)
    return config


def tiny_config(name="shapes", num_blocks=3, block_expansion=8, max_features=32):
    """A config's structure (embeddings, scale factors, ...) with small hourglasses, for fast tests."""
    config = copy.deepcopy(fastmotion.load_config(name))
    mp = config["model_params"]
    for params in (mp["kp_detector_params"], mp["generator_params"], mp["generator_params"]["dense_motion_params"],
                   mp["discriminator_params"]):
        params["block_expansion"] = block_expansion
        params["max_features"] = max_features
        params["num_blocks"] = num_blocks
    mp["generator_params"]["num_refinement_blocks"] = 2
    return config


def build(config, backend=None, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    models = build_models(config, backend=backend)
    randomize(*models, seed=seed)
    return [m.to(dtype) for m in models]


def copy_weights(src_models, dst_models):
    for s, d in zip(src_models, dst_models):
        d.load_state_dict(s.state_dict())


def max_err(a, b):
    return (a.detach().double() - b.detach().double()).abs().max().item()


def images(batch, size, frames=None, seed=0, dtype=torch.float32, channels=3):
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, channels, size, size) if frames is None else (batch, channels, frames, size, size)
    return torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype)
