"""The original Monkey-Net YAML configs, shipped with fastmotion and loadable by name or path.

``load_config("taichi")`` reads the packaged copy; ``load_config("path/to/any.yaml")`` reads
an original (or edited) config file unchanged. Model parameters are checked on loading
(:mod:`fastmotion.config.validate`).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))


def config_names() -> List[str]:
    """Names of the packaged configs (``taichi``, ``vox``, ...)."""
    return sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml"))


def load_config(name_or_path) -> Dict[str, Any]:
    """The parsed config: a packaged name (``"vox"``) or a path to a YAML file."""
    import yaml

    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"load_config: name_or_path must be a config name or a path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    if os.path.sep in text or text.endswith((".yaml", ".yml")) or os.path.isfile(text):
        path = text
        if not os.path.isfile(path):
            raise FileNotFoundError(f"load_config: no config file at {path!r}")
    else:
        path = os.path.join(CONFIG_DIR, text + ".yaml")
        if not os.path.isfile(path):
            raise ValueError(f"load_config: unknown config name {text!r}; packaged configs: {config_names()} "
                             "(or pass a path to a YAML file)")
    with open(path, "r", encoding="utf-8") as f:
        try:
            config = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ValueError(f"load_config: {path!r} is not valid YAML: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("model_params"), dict):
        raise ValueError(f"load_config: {path!r} is not a Monkey-Net config (no 'model_params' mapping)")
    from fastmotion.config.validate import validate_model_params

    validate_model_params(config, f"load_config: {path!r}")
    return config
