"""Per-frame latency of animation at batch 1: fastmotion.Animator against the original's way.

Providers, timed in one process, alternating frame by frame (round r runs every provider once),
so that load from other processes on a shared machine hits all of them alike:

- ``original per-frame (reference, source re-encoded)``: the original ``transfer.py`` loop on
  ``backend="reference"``: keypoints of the driving frame, ``normalize_kp``, then the whole
  generator, which encodes the source again for every frame.
- ``reference, source cached``: the same math on ``backend="reference"`` with the source encoded
  once (:class:`fastmotion.models.Animator`): the like-for-like row.
- ``fastmotion fp32``: :class:`fastmotion.Animator` (fast path, source cached, anchor-normalized
  keypoints precomputed), float32.
- ``fastmotion bf16``: the same in bfloat16 (CPU: oneDNN bfloat16 convolutions, where the CPU
  has them; CUDA: autocast), with the PSNR of its output against ``fastmotion fp32``.
- CUDA only: ``fastmotion fp16 + CUDA graphs``.

Targets (ratios of medians, same run): fastmotion fp32 >= 3x the original per-frame path and
>= 2x the cached reference; bf16 >= 1.5x fp32 with PSNR >= 35 dB. The pytest-benchmark row is
fastmotion fp32 (timed again after the interleaved rounds); everything else is in
``extra_info``. Weights are random (BatchNorm statistics randomized: fastmotion.benchmark.model.random_models).
"""
import copy
import os

import numpy as np
import pytest
import torch

import fastmotion
from bench import harness
from fastmotion.benchmark.model import original_transfer_call, random_models as _models
from fastmotion.benchmark.timing import measure_interleaved
from fastmotion.inference.animator import cpu_has_bf16
from fastmotion.models import Animator as StreamingAnimator

CASES = [("vox", 256)]
ORIGINAL = "original per-frame (reference, source re-encoded)"
CACHED = "reference, source cached"
FP32, BF16, FP16_GRAPHS = "fastmotion fp32", "fastmotion bf16", "fastmotion fp16 + CUDA graphs"


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.double() - b.double()) ** 2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def _providers(name, size, device):
    config, (kp_ref, gen_ref, _) = _models(name, "reference", False)
    _, (kp_fast, gen_fast, _) = _models(name, None, False)
    params = config["transfer_params"]["normalization_params"]
    gen = torch.Generator().manual_seed(2)
    source, first, driving = (torch.rand((1, 3, size, size), generator=gen).to(device) for _ in range(3))
    kp_ref.to(device)
    gen_ref.to(device)
    original = original_transfer_call(kp_ref, gen_ref, source, first, driving, params)

    cached = StreamingAnimator(kp_ref, gen_ref, params)
    cached.set_source(source)
    cached(first)

    providers = {ORIGINAL: original, CACHED: lambda: cached(driving)["video_prediction"]}
    variants = [(FP32, "fp32", False)]
    if device == "cpu" and cpu_has_bf16():
        variants.append((BF16, "bf16", False))
    if device == "cuda":
        variants += [(BF16, "bf16", False), (FP16_GRAPHS, "fp16", True)]
    for label, dtype, graphs in variants:
        animator = fastmotion.Animator(copy.deepcopy(kp_fast), copy.deepcopy(gen_fast), config, device=device,
                                       dtype=dtype, cuda_graphs=graphs, frame_size=(size, size))
        animator.set_source(source)
        animator(first)
        providers[label] = (lambda a: lambda: a(driving))(animator)
    return providers


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-b1")
def test_per_frame_latency(benchmark, case):
    name, size = case
    device = harness.devices()[0]
    providers = _providers(name, size, device)
    outputs = {label: fn() for label, fn in providers.items()}  # warm-up (weight packing, graph capture)
    for fn in providers.values():
        fn()
    rounds = int(os.environ.get("FASTMOTION_BENCH_ROUNDS", "50" if device == "cuda" else "10"))
    load_before = _load()
    timings = measure_interleaved(providers, device, rounds, warmup=0)
    times = {label: t.samples for label, t in timings.items()}
    median = {label: float(np.median(t)) for label, t in times.items()}
    fastest = {label: float(np.min(t)) for label, t in times.items()}
    info = {"load_before": load_before, "load_after": _load(), "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "rounds": rounds}
    for label in providers:
        info[f"{label}: median ms"] = round(1000 * median[label], 2)
        info[f"{label}: min ms"] = round(1000 * fastest[label], 2)
        info[f"{label}: frames/s"] = round(1.0 / median[label], 2)
    info[f"speedup {FP32} vs {ORIGINAL}"] = round(median[ORIGINAL] / median[FP32], 3)
    info[f"speedup {FP32} vs {CACHED} (like for like)"] = round(median[CACHED] / median[FP32], 3)
    for label in (BF16, FP16_GRAPHS):
        if label in providers:
            info[f"speedup {label} vs {FP32}"] = round(median[FP32] / median[label], 3)
            info[f"PSNR {label} vs {FP32} (dB)"] = round(_psnr(outputs[label], outputs[FP32]), 2)
    benchmark.group = f"inference per frame {name} {size}x{size} batch 1 {device}"
    benchmark.extra_info.update(info)
    benchmark.pedantic(providers[FP32], rounds=max(3, rounds // 2), iterations=1, warmup_rounds=1)
    for key, value in info.items():
        print(f"{key}: {value}")
