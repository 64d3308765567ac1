"""Checks of a config's ``model_params`` values, so a wrong value fails when the config is loaded
with one sentence naming the key and what it must be (not later, deep inside a network).

The same key means the same thing in every section of the original configs (``num_blocks`` of the
detector, the generator, the dense motion module, the discriminator), so one rule per key name
covers them all. Unknown keys are left to the networks' constructors.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Mapping, Tuple

INTERPOLATION_MODES = ("nearest", "trilinear", "bilinear")


def _int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _flag(x) -> bool:
    return isinstance(x, bool) or (_int(x) and x in (0, 1))


def _positive_int(x) -> bool:
    return _int(x) and x >= 1


def _count(x) -> bool:
    return _int(x) and x >= 0


def _positive(x) -> bool:
    return _number(x) and x > 0


def _one_of(*names) -> Callable[[Any], bool]:
    return lambda x: isinstance(x, str) and x in names


def _kp_variance(x) -> bool:
    return _one_of("matrix", "single")(x) or _positive(x)


def _norm_const(x) -> bool:
    return x == "sum" or _positive(x)


def _clip_variance(x) -> bool:
    return x is None or x is False or (_number(x) and x >= 0)


def _section(x) -> bool:
    return x is None or isinstance(x, Mapping)


# key -> (check, what it must be)
RULES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "num_kp": (_positive_int, "a positive integer (the number of keypoints)"),
    "num_channels": (_positive_int, "a positive integer (image channels, 3 for RGB)"),
    "block_expansion": (_positive_int, "a positive integer"),
    "max_features": (_positive_int, "a positive integer"),
    "num_blocks": (_positive_int, "a positive integer (hourglass / discriminator depth)"),
    "num_refinement_blocks": (_count, "a non-negative integer"),
    "num_group_blocks": (_count, "a non-negative integer"),
    "temperature": (_positive, "a positive number"),
    "scale_factor": (_positive, "a positive number (1 = full size)"),
    "clip_variance": (_clip_variance, "a non-negative number or null (no clipping)"),
    "kp_variance": (_kp_variance, "'matrix', 'single' or a positive number"),
    "norm_const": (_norm_const, "'sum' or a positive number"),
    "heatmap_type": (_one_of("gaussian", "difference"), "'gaussian' or 'difference'"),
    "interpolation_mode": (_one_of(*INTERPOLATION_MODES), "one of " + ", ".join(map(repr, INTERPOLATION_MODES))),
    "bg_init": (_number, "a number"),
    "use_mask": (_flag, "true or false"),
    "use_correction": (_flag, "true or false"),
    "use_heatmap": (_flag, "true or false"),
    "use_difference": (_flag, "true or false"),
    "use_deformed_source_image": (_flag, "true or false"),
    "add_bg_feature_map": (_flag, "true or false"),
    "dense_motion_params": (_section, "a mapping (or null)"),
    "kp_embedding_params": (_section, "a mapping (or null)"),
    "mask_embedding_params": (_section, "a mapping (or null)"),
}
SECTIONS = ("common_params", "kp_detector_params", "generator_params", "discriminator_params")


def _walk(params: Mapping, path: str, where: str) -> None:
    for key, value in params.items():
        here = f"{path}.{key}"
        rule = RULES.get(key)
        if rule is not None and not rule[0](value):
            raise ValueError(f"{where}{here} must be {rule[1]}, got {value!r}")
        if isinstance(value, Mapping):
            _walk(value, here, where)


def validate_model_params(config: Mapping, source: str = "config") -> None:
    """Raise ValueError naming the first ``model_params`` value of the wrong type or range.
    ``config``: a full config (with ``model_params``) or its ``model_params``; ``source``: what to
    call it in the message (e.g. the YAML file's path)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping (a loaded YAML config), got {type(config).__name__}")
    params = config.get("model_params", config)
    if not isinstance(params, Mapping):
        raise ValueError(f"{source}: model_params must be a mapping, got {type(params).__name__}")
    for name in SECTIONS:
        section = params.get(name)
        if not isinstance(section, Mapping):
            raise ValueError(f"{source}: model_params.{name} must be a mapping, got {type(section).__name__}")
    _walk(params, "model_params", f"{source}: ")
