"""A training checkpoint cut down to what animation needs: the keypoint detector and the generator.

Drops the discriminator, the optimizers and the resume state (a training checkpoint of the shapes
config is ~10x larger than its two inference networks) and, with ``half=True``, stores floating
weights as float16 (loading converts them back to the networks' dtype). The config travels in the
``'fastmotion'`` entry, so :func:`fastmotion.checkpoint.load_checkpoint` needs no config.
"""
from __future__ import annotations

import os

import torch

from fastmotion.checkpoint import META_KEY, load_checkpoint
from fastmotion.io.video import atomic_path

KEEP = ("kp_detector", "generator")


def inference_checkpoint(src, dst, config=None, half: bool = True) -> str:
    """Write ``dst`` with the kp_detector and generator of checkpoint ``src`` (validated by loading
    them into networks built from the config). Returns ``dst``."""
    ckpt = load_checkpoint(src, config)
    data = torch.load(os.fspath(src), map_location="cpu", weights_only=True)
    out = {}
    for name in KEEP:
        if name not in data:
            raise RuntimeError(f"inference_checkpoint: {os.fspath(src)!r} has no {name!r}")
        out[name] = {k: (v.half() if half and v.is_floating_point() else v) for k, v in data[name].items()}
    for key in ("epoch", "it"):
        if key in data:
            out[key] = data[key]
    meta = dict(data.get(META_KEY) or {})
    meta.pop("resume", None)
    meta["config"] = ckpt.config
    out[META_KEY] = meta
    with atomic_path(dst) as tmp:
        torch.save(out, tmp)
    return os.fspath(dst)
