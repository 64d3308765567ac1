"""Shared benchmark machinery: providers, device sync, peak memory, effective bandwidth.

Each op benchmark builds a callable per (provider, shape, mode) and hands it to ``run``, which
times it with pytest-benchmark (synchronising the device around every call) and records
effective GB/s (bytes that must move / median time) and peak memory in ``extra_info``.
"""
from __future__ import annotations

import os

import pytest
import torch

from fastmotion import backends

# Providers every op benchmark offers: eager reference, torch.compile of the reference, then
# each fused backend.
PROVIDERS = ("reference", "compile", "cpu", "triton", "cuda")


def devices():
    return ["cuda"] if torch.cuda.is_available() else ["cpu"]


def provider_skip_reason(provider: str, device: str, impls=None, key: bool = True):
    """None if ``provider`` can run on ``device`` here, else why not.

    ``key``: whether this case is one of the op's headline shapes. ``FASTMOTION_BENCH_COMPILE``
    = ``all`` (default) | ``key`` (torch.compile only at headline shapes: compiles are slow and a
    GPU lease is short) | ``none``.
    """
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA not available"
    if provider == "reference":
        return None
    if provider == "compile":
        policy = os.environ.get("FASTMOTION_BENCH_COMPILE", "all")
        if policy == "none" or os.environ.get("FASTMOTION_BENCH_NO_COMPILE") == "1":
            return "torch.compile provider disabled (FASTMOTION_BENCH_COMPILE=none)"
        if policy == "key" and not key:
            return "torch.compile provider only at headline shapes (FASTMOTION_BENCH_COMPILE=key)"
        return None
    if provider == "triton" and device == "cpu":
        return "triton on CPU only runs interpreted (not a benchmark)"
    if impls is not None and provider not in impls:
        return f"{provider} backend not implemented for this op"
    cpp_op = impls[provider].cpp_op if impls is not None else None
    return backends.unavailable_reason(provider, device, cpp_op)


def skip_unless_runnable(provider: str, device: str, impls=None, key: bool = True):
    reason = provider_skip_reason(provider, device, impls, key)
    if reason:
        pytest.skip(reason)


def sync(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def _cpu_peak_bytes(fn) -> int:
    """Peak of live CPU tensor memory during ``fn()``, from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []

    def walk(node):
        if "Allocation" in str(node.tag):
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    events.sort()
    cur = peak = 0
    for _, size in events:
        cur += size
        peak = max(peak, cur)
    return peak


def peak_bytes(fn, device: str) -> int:
    """Extra memory ``fn()`` needs at its peak beyond what was allocated before the call."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return _cpu_peak_bytes(fn)


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
    benchmark.extra_info["bytes_moved"] = int(bytes_moved)
    benchmark.extra_info["GB/s"] = round(bytes_moved / median / 1e9, 3) if median > 0 else None
    benchmark.extra_info["peak_MB"] = round(peak / 2**20, 3)


def _rounds(device: str) -> int:
    return int(os.environ.get("FASTMOTION_BENCH_ROUNDS", "50" if device == "cuda" else "10"))


def compiled(fn):
    """torch.compile of a reference callable (one compile per benchmark case)."""
    return torch.compile(fn, dynamic=False)
