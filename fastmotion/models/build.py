"""Build the three networks from a config's ``model_params``, as the original run.py does."""
from __future__ import annotations

from typing import Mapping, NamedTuple

from fastmotion.config.validate import validate_model_params

from fastmotion.models.discriminator import Discriminator
from fastmotion.models.generator import MotionTransferGenerator
from fastmotion.models.keypoint_detector import KPDetector


class MonkeyNet(NamedTuple):
    kp_detector: KPDetector
    generator: MotionTransferGenerator
    discriminator: Discriminator


def _section(params: Mapping, name: str) -> dict:
    value = params.get(name)
    if not isinstance(value, Mapping):
        raise ValueError(f"model_params[{name!r}] must be a mapping, got {type(value).__name__}")
    return dict(value)


def build_models(config: Mapping, backend=None, rewrites=None) -> MonkeyNet:
    """``(kp_detector, generator, discriminator)`` from a full config or its ``model_params``.
    ``backend``: the ops' backend; ``rewrites``: the model rewrites on / off (None: see
    :mod:`fastmotion.models.policy`)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping (a loaded YAML config), got {type(config).__name__}")
    validate_model_params(config)
    params = config.get("model_params", config)
    common = _section(params, "common_params")
    kw = dict(backend=backend)
    try:
        kp_detector = KPDetector(**_section(params, "kp_detector_params"), **common, **kw)
        generator = MotionTransferGenerator(**_section(params, "generator_params"), **common, **kw)
        discriminator = Discriminator(**_section(params, "discriminator_params"), **common, **kw)
    except TypeError as exc:  # unknown / missing keyword in the config
        raise ValueError(f"model_params do not match the Monkey-Net modules: {exc}") from exc
    models = MonkeyNet(kp_detector, generator, discriminator)
    if rewrites is not None:
        for model in models:
            model.set_rewrites(rewrites)
    return models
