"""The export suite: per-frame latency of the exported graphs (ONNX Runtime, AOTInductor) against
eager PyTorch: the rows of bench/test_export.py, the exporter's own pytest-benchmark suite
(reported as not run while ``fastmotion.export`` cannot be imported, and in --quick runs)."""
from __future__ import annotations

from typing import Optional

from fastmotion.benchmark import pytest_suite


def unavailable() -> Optional[str]:
    try:
        import fastmotion.export  # noqa: F401
    except ImportError as exc:
        return f"fastmotion.export is not importable here ({exc})"
    return None


def run(device: str, quick: bool = False, tiny: bool = False, rounds=None, progress=None) -> list:
    reason = unavailable()
    if reason is None and (quick or tiny):
        reason = "left out of --quick / --tiny runs: `fastmotion bench export` runs bench/test_export.py"
    if reason is None:
        return pytest_suite.run("bench/test_export.py", "export", device, quick, rounds)
    return [{"suite": "export", "op": "exported graphs, per frame", "case": "-", "mode": "inference",
             "provider": "fastmotion.export", "device": device, "dtype": "fp32", "status": "skipped",
             "reason": reason}]
