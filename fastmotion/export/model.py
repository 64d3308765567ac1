"""Which networks an export writes: a config + checkpoint, a config with random weights, or the
built-in demo model; plus the checks of what the exporters support."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Mapping, Tuple

import torch

from fastmotion.models.generator import MotionTransferGenerator
from fastmotion.models.keypoint_detector import KPDetector

FALLBACK_CONFIG = "shapes"  # exported with random weights while the demo assets are not installed


class UnsupportedModel(ValueError):
    """The model or one of its config options cannot be exported (the message names it)."""


@dataclass
class ExportModel:
    kp_detector: KPDetector
    generator: MotionTransferGenerator
    config: dict
    frame_size: Tuple[int, int]
    description: str          # what was exported, for the manifest and the command's output
    random_weights: bool


def _size_multiple(kp_detector, generator) -> int:
    from fastmotion.inference.animator import _size_multiple as multiple
    return multiple(kp_detector, generator)


def check_frame_size(frame_size, kp_detector, generator) -> Tuple[int, int]:
    if (not isinstance(frame_size, (tuple, list)) or len(frame_size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in frame_size)):
        raise ValueError(f"frame_size must be (H, W) integers, got {frame_size!r}")
    m = _size_multiple(kp_detector, generator)
    h, w = frame_size
    if h <= 0 or w <= 0 or h % m or w % m:
        raise ValueError(f"frame_size {h}x{w} (HxW) does not fit the model: both sides must be positive multiples "
                         f"of {m} (its hourglasses halve the frame repeatedly)")
    return int(h), int(w)


def check_exportable(kp_detector, generator) -> None:
    """Options of the networks the exported graphs cannot express (clear errors instead of a
    failure deep inside the exporter)."""
    if not isinstance(kp_detector, KPDetector) or not isinstance(generator, MotionTransferGenerator):
        raise TypeError("export: kp_detector must be a fastmotion KPDetector and generator a "
                        f"MotionTransferGenerator, got {type(kp_detector).__name__} and {type(generator).__name__}")
    if kp_detector.num_kp != generator.num_kp:
        raise UnsupportedModel(f"export: the keypoint detector finds {kp_detector.num_kp} keypoints but the "
                               f"generator expects {generator.num_kp} (model_params.common_params.num_kp)")
    variances = {kp_detector.kp_variance}
    for module in generator.modules():
        if hasattr(module, "kp_variance"):
            variances.add(module.kp_variance)
    if len(variances) > 1:
        raise UnsupportedModel(f"export: kp_variance differs between the networks ({sorted(map(str, variances))}); "
                               "the exported keypoints carry one kind")
    mode = generator.interpolation_mode
    if mode not in ("nearest", "bilinear", "trilinear"):
        raise UnsupportedModel(f"export: generator_params.interpolation_mode {mode!r} is not supported "
                               "(nearest, bilinear or trilinear)")


def _build(config: Mapping):
    from fastmotion.models import build_models

    try:
        kp_detector, generator, _ = build_models(config)
    except (ValueError, TypeError) as exc:
        raise UnsupportedModel(f"export: unsupported config option: {exc}") from exc
    return kp_detector, generator


def _config_frame_size(config, kp_detector, generator):
    from fastmotion.inference.animator import config_frame_size

    size = config_frame_size(config)
    return size if size is not None else (_size_multiple(kp_detector, generator),) * 2


def load_export_model(config=None, checkpoint=None, frame_size=None, seed: int = 0) -> ExportModel:
    """The networks to export.

    - ``checkpoint`` (with ``config``, or a fastmotion checkpoint that carries its config): those weights;
    - ``config`` alone (a packaged name, a YAML path or a dict): random weights (to try the
      deployment path before training);
    - neither: the built-in demo model; while its assets are not installed, the packaged
      ``shapes`` config with random weights (``description`` says so).
    ``frame_size``: ``(H, W)``; default the config's frame size.
    """
    from fastmotion.config import load_config

    random_weights = False
    if config is None and checkpoint is None:
        from fastmotion.inference.demo import demo_assets
        try:
            assets = demo_assets(("config", "checkpoint"))
            config, checkpoint, description = assets.config, assets.checkpoint, "the built-in demo model"
        except FileNotFoundError:
            config, random_weights = FALLBACK_CONFIG, True
            description = (f"the packaged '{FALLBACK_CONFIG}' config with random weights (the built-in demo model "
                           "is not installed)")
    elif checkpoint is None:
        random_weights = True
        description = f"config {config if isinstance(config, str) else '(dict)'} with random weights"
    else:
        description = f"checkpoint {checkpoint}"
    if config is not None and not isinstance(config, Mapping):
        config = load_config(config)
    if checkpoint is not None:
        from fastmotion.checkpoint import load_checkpoint

        if not os.path.isfile(os.fspath(checkpoint)):
            raise FileNotFoundError(f"checkpoint {checkpoint}: no such file")
        try:
            loaded = load_checkpoint(checkpoint, config, map_location="cpu")
        except TypeError as exc:
            raise UnsupportedModel(f"export: unsupported config option: {exc}") from exc
        if loaded.kp_detector is None or loaded.generator is None:
            raise ValueError(f"checkpoint {checkpoint} holds no kp_detector or no generator (both are exported)")
        kp_detector, generator, config = loaded.kp_detector, loaded.generator, loaded.config
    else:
        torch.manual_seed(seed)
        kp_detector, generator = _build(config)
    config = copy.deepcopy(dict(config))
    check_exportable(kp_detector, generator)
    size = check_frame_size(tuple(frame_size) if frame_size is not None
                            else _config_frame_size(config, kp_detector, generator), kp_detector, generator)
    return ExportModel(kp_detector.float().eval(), generator.float().eval(), config, size, description,
                       random_weights)
