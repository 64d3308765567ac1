"""The export suite: per-frame latency of the exported graphs (ONNX Runtime, AOTInductor) against
eager PyTorch. Reported as not run while ``fastmotion.export`` cannot be imported; the exporter's
own timings live in bench/test_export.py."""
from __future__ import annotations


def unavailable() -> str:
    try:
        import fastmotion.export  # noqa: F401
    except ImportError as exc:
        return f"fastmotion.export is not importable here ({exc})"
    return "fastmotion.export exists but is not wired into this suite yet (bench/test_export.py times it)"


def run(device: str, quick: bool = False, tiny: bool = False, rounds=None, progress=None) -> list:
    return [{"suite": "export", "op": "exported graphs, per frame", "case": "-", "mode": "inference",
             "provider": "fastmotion.export", "device": device, "dtype": "fp32", "status": "skipped",
             "reason": unavailable()}]
