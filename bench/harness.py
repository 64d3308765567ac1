"""pytest-benchmark glue over :mod:`fastmotion.benchmark` (the library ``fastmotion bench`` runs):
``run`` times a callable with pytest-benchmark and records effective GB/s (bytes that must move /
median time) and peak memory in ``extra_info``; on CUDA it also times the same callable with CUDA
events over many launches with L2 flushed between them (``device_median_ms``, and GB/s from it),
since the host clock around a synchronised call mostly measures launch latency for short kernels.
"""
from __future__ import annotations

import os

import torch

from fastmotion.benchmark import memory, timing
from fastmotion.benchmark.ops import PROVIDERS  # noqa: F401 - re-exported for the suites

sync = timing.sync
peak_bytes = memory.peak_bytes


def devices():
    return ["cuda"] if torch.cuda.is_available() else ["cpu"]


def run(benchmark, fn, device: str, bytes_moved: int, warmup: int = 2, **info):
    """Time ``fn`` (device-synchronised) and record GB/s and peak memory in extra_info."""
    for _ in range(warmup):
        fn()
    sync(device)

    def timed():
        out = fn()
        sync(device)
        return out

    peak = peak_bytes(fn, device)
    benchmark.pedantic(timed, rounds=_rounds(device), iterations=1, warmup_rounds=1)
    if benchmark.stats is None:  # --benchmark-disable: the call ran once as a smoke test
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(info)
    benchmark.extra_info["device"] = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    if bytes_moved:  # whole-model benchmarks pass 0: effective bandwidth means nothing there
        benchmark.extra_info["bytes_moved"] = int(bytes_moved)
        benchmark.extra_info["GB/s"] = round(bytes_moved / median / 1e9, 3) if median > 0 else None
    benchmark.extra_info["peak_MB"] = round(peak / 2**20, 3)
    if device == "cuda":
        t = timing.measure(fn, device, rounds=int(os.environ.get("FASTMOTION_BENCH_DEVICE_ROUNDS", "100")))
        benchmark.extra_info["device_median_ms"] = round(t.median * 1e3, 5)
        benchmark.extra_info["device_iqr_ms"] = round((t.q3 - t.q1) * 1e3, 5)
        if bytes_moved:
            benchmark.extra_info["device GB/s"] = round(bytes_moved / t.median / 1e9, 3)


def _rounds(device: str) -> int:
    return int(os.environ.get("FASTMOTION_BENCH_ROUNDS", "50" if device == "cuda" else "10"))


def compiled(fn):
    """torch.compile of a reference callable (one compile per benchmark case)."""
    return torch.compile(fn, dynamic=False)
