"""Timing of one callable, the way each device needs it.

CPU: the host clock around each call (``time.perf_counter``); a call returns when its work is done.
CUDA: one CUDA event pair around each launch, read after all launches (no host synchronisation
between launches, which for 30-120 us kernels would mostly measure launch and sync latency), with
a 256 MiB buffer zeroed before each launch so that the kernel's inputs are not served from L2 (the
same method as ``triton.testing.do_bench``); the zeroing keeps the GPU busy while the host queues
the next launch, so launch latency is hidden as it is in a real stream of kernels.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List

import torch

L2_FLUSH_BYTES = 256 * 2**20


@dataclass
class Timing:
    samples: List[float]  # seconds per call
    method: str

    def _quantile(self, q: float) -> float:
        s = sorted(self.samples)
        if len(s) == 1:
            return s[0]
        pos = q * (len(s) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - lo)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def q1(self) -> float:
        return self._quantile(0.25)

    @property
    def q3(self) -> float:
        return self._quantile(0.75)

    @property
    def min(self) -> float:
        return min(self.samples)


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def measure(fn: Callable, device: str, rounds: int, warmup: int = 2, flush_l2: bool = True) -> Timing:
    """Per-call times of ``fn()`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    if str(device).startswith("cuda"):
        return _measure_cuda(fn, rounds, flush_l2)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return Timing(samples, "host clock per call")


def _measure_cuda(fn: Callable, rounds: int, flush_l2: bool) -> Timing:
    flush = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device="cuda") if flush_l2 else None
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(rounds)]
    for start, end in events:
        if flush is not None:
            flush.zero_()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    method = "CUDA events per launch" + (", L2 flushed before each" if flush_l2 else "")
    return Timing([start.elapsed_time(end) / 1e3 for start, end in events], method)


def measure_interleaved(fns: Dict[str, Callable], device: str, rounds: int, warmup: int = 1) -> Dict[str, Timing]:
    """Times of several callables taken round by round (round r runs each once), so that load from
    other processes on a shared machine hits all of them alike. Each call is synchronised (these
    are whole-model steps of milliseconds, where launch latency does not matter)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync(device)
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: Timing(s, "host clock per call, synchronised, providers interleaved") for name, s in samples.items()}


def copy_bandwidth(device: str, nbytes: int | None = None, rounds: int = 10) -> float:
    """GB/s of a plain device-to-device (or RAM-to-RAM) copy: read n bytes + write n bytes."""
    if nbytes is None:
        nbytes = (1 << 30) if str(device).startswith("cuda") else (128 << 20)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    t = measure(lambda: dst.copy_(src), device, rounds, warmup=2, flush_l2=False)
    return 2 * nbytes / t.median / 1e9
