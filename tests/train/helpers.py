"""Small training setups for the trainer tests: a tiny shapes-structured config and synthetic videos."""
from __future__ import annotations

import copy
import os

import torch

from fastmotion.data import FramesDataset, write_synthetic_videos
from tests.models.helpers import tiny_config

SIZE = 32


def train_config(num_blocks=3, batch_size=4, epochs=2, lr=1e-3, log_freq=1, milestones=(1,)):
    """A tiny shapes-structured config (the discriminator's loss weights fit its number of blocks)."""
    config = copy.deepcopy(tiny_config("shapes", num_blocks=num_blocks))
    tp = config["train_params"]
    tp.update(batch_size=batch_size, num_epochs=epochs, lr=lr, epoch_milestones=list(milestones))
    tp["loss_weights"]["reconstruction"] = [10] * num_blocks + [1]
    tp["log_params"] = {"log_freq_iter": log_freq, "cpk_freq_epoch": 1}
    config["dataset_params"] = {"image_shape": [SIZE, SIZE, 3],
                                "augmentation_params": {"flip_param": {"horizontal_flip": True, "time_flip": True}}}
    return config


def synthetic_root(folder, train=8, test=2, frames=4, seed=0) -> str:
    root = os.path.join(os.fspath(folder), "videos")
    if not os.path.isdir(root):
        write_synthetic_videos(root, train, test, frames=frames, size=SIZE, seed=seed)
    return root


def train_set(root, config):
    params = config["dataset_params"]
    return FramesDataset(root, image_shape=params["image_shape"], is_train=True,
                         augmentation_params=params.get("augmentation_params"))


def parameters(trainer):
    return {f"{n}.{k}": v.detach().clone() for n, m in trainer.models.items() for k, v in m.state_dict().items()}


def max_difference(a, b):
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)


def torch_threads(n=1):
    torch.set_num_threads(n)
