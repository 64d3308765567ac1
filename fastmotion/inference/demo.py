"""The built-in demo model and clip, packaged in ``fastmotion/assets/demo/``.

Trained by the project with ``fastmotion train`` on its own synthetic moving-shapes videos (the
command is in ``RECIPE.md`` beside the files). ``FASTMOTION_DEMO_DIR`` points elsewhere (tests
use a stand-in).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

ENV_VAR = "FASTMOTION_DEMO_DIR"
PACKAGED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "demo")
FILES = {"config": "config.yaml", "checkpoint": "checkpoint.pth.tar", "source": "source.png",
         "driving": "driving.png"}


@dataclass(frozen=True)
class DemoAssets:
    folder: str
    config: str
    checkpoint: str
    source: str
    driving: str


def demo_dir() -> str:
    return os.environ.get(ENV_VAR) or PACKAGED_DIR


def demo_assets(need=("config", "checkpoint", "source", "driving")) -> DemoAssets:
    """Paths of the demo files; a FileNotFoundError naming what is missing (one line)."""
    folder = demo_dir()
    paths = {key: os.path.join(folder, name) for key, name in FILES.items()}
    missing = [FILES[k] for k in need if not os.path.isfile(paths[k])]
    if missing:
        where = f"{ENV_VAR}={folder}" if os.environ.get(ENV_VAR) else folder
        raise FileNotFoundError(f"the built-in demo model is not installed: {', '.join(missing)} missing in {where} "
                                "(reinstall fastmotion; your own model runs with `fastmotion animate --config ... "
                                "--checkpoint ...`)")
    return DemoAssets(folder=folder, **paths)
