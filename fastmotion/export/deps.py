"""Optional dependencies of the exporters: a missing one is a one-line error naming what to install."""
from __future__ import annotations

import importlib

EXPORT_EXTRA = "pip install fastmotion[export]"
INSTALL = {
    "onnx": EXPORT_EXTRA,
    "onnxruntime": EXPORT_EXTRA,
    "onnxscript": EXPORT_EXTRA,
    "tensorrt": "pip install fastmotion[tensorrt] (NVIDIA's tensorrt wheel; needs a CUDA GPU and driver)",
}


class MissingDependency(ImportError):
    """An optional package an exporter needs is not installed; the message says what to install."""


def require(module: str, purpose: str):
    """Import ``module`` or raise :class:`MissingDependency` naming the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(f"{purpose} needs the '{module}' package, which is not installed; install it "
                                f"with: {INSTALL.get(module, 'pip install ' + module)}") from exc
