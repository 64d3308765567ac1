"""The model suite: whole-model inference of the drop-in Monkey-Net, like for like.

Each comparison times providers doing the same work, interleaved round by round:

- ``streaming (source encoded once)``: :class:`fastmotion.models.Animator` on
  ``backend="reference"`` against the same class on the fast path, and at batch 1 the user-facing
  :class:`fastmotion.Animator` (fp32, and bf16 on CPUs with bf16 / fp16 + CUDA graphs on CUDA);
- ``per frame, source re-encoded every frame (the original's way of working)``: the original
  ``transfer.py`` loop (driving keypoints, ``normalize_kp``, the whole generator) on
  ``backend="reference"`` against the same loop on the fast path.

Weights are random (no checkpoint is downloaded); BatchNorm statistics are randomised so that
eval mode is not trivial.
"""
from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional

import torch

from fastmotion.benchmark import memory, timing
from fastmotion.benchmark.ops import add_speedups, timing_fields

STREAMING = "streaming (source encoded once)"
PER_FRAME = "per frame, source re-encoded every frame (the original's way of working)"
# (config, frame size, batch)
INFERENCE = [("vox", 256, 1), ("taichi", 64, 16)]
INFERENCE_QUICK = [("shapes", 64, 1)]
INFERENCE_TINY = [("shapes", 64, 1)]


def random_models(name: str, backend: Optional[str], train: bool):
    """(config, (kp_detector, generator, discriminator)) with seeded random weights and BatchNorm
    statistics."""
    import fastmotion
    from fastmotion.models import build_models

    torch.manual_seed(0)
    config = fastmotion.load_config(name)
    models = build_models(config, backend=backend)
    randomize(*models, seed=1, affine=False)
    for m in models:
        m.train(train)
    return config, models


def randomize(*modules, seed: int = 0, affine: bool = True) -> None:
    """Random BatchNorm statistics (``affine``: and BatchNorm / InstanceNorm scales and shifts) and a
    non-zero dense-motion output convolution, so that every part of the networks influences the
    outputs (fresh networks have trivial ones)."""
    gen = torch.Generator().manual_seed(seed)
    norms = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.instancenorm._InstanceNorm)
    with torch.no_grad():
        for module in modules:
            for m in module.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                if affine and isinstance(m, norms) and m.weight is not None:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
            dense = getattr(module, "dense_motion_module", None)
            if dense is not None and hasattr(dense, "hourglass"):
                w = dense.hourglass.decoder.conv.weight
                w.copy_(torch.randn(w.shape, generator=gen) * 0.01)


def _frames(batch: int, size: int, device: str):
    gen = torch.Generator().manual_seed(2)
    return [torch.rand((batch, 3, size, size), generator=gen).to(device) for _ in range(3)]


def inference_providers(name: str, size: int, batch: int, device: str) -> Dict[str, Dict[str, Callable]]:
    """comparison -> {provider label: callable animating one driving frame}."""
    import fastmotion
    from fastmotion.inference.animator import cpu_has_bf16
    from fastmotion.models import Animator

    config, (kp_ref, gen_ref, _) = random_models(name, "reference", False)
    _, (kp_fast, gen_fast, _) = random_models(name, None, False)
    for m in (kp_ref, gen_ref, kp_fast, gen_fast):
        m.to(device)
    params = config["transfer_params"]["normalization_params"]
    source, first, driving = _frames(batch, size, device)

    def streaming(kp_detector, generator):
        animator = Animator(kp_detector, generator, params)
        animator.set_source(source)
        animator(first)
        return lambda: animator(driving)["video_prediction"]

    stream = {"reference (models.Animator, backend=reference)": streaming(kp_ref, gen_ref),
              "fast path (models.Animator)": streaming(kp_fast, gen_fast)}
    if batch == 1:
        variants = [("fp32", False)]
        if device == "cpu" and cpu_has_bf16():
            variants.append(("bf16", False))
        if device == "cuda":
            variants += [("bf16", False), ("fp16", True)]
        for dtype, graphs in variants:
            animator = fastmotion.Animator(copy.deepcopy(kp_fast), copy.deepcopy(gen_fast), config, device=device,
                                           dtype=dtype, cuda_graphs=graphs, frame_size=(size, size))
            animator.set_source(source)
            animator(first)
            label = f"fastmotion.Animator {dtype}" + (" + CUDA graphs" if graphs else "")
            stream[label] = (lambda a: lambda: a(driving))(animator)
    per_frame = {"reference (original transfer loop, backend=reference)":
                 original_transfer_call(kp_ref, gen_ref, source, first, driving, params),
                 "fast path (same loop)": original_transfer_call(kp_fast, gen_fast, source, first, driving, params)}
    return {STREAMING: stream, PER_FRAME: per_frame}


def compiled_transfer_loop(name: str, size: int, batch: int, device: str) -> Callable:
    """The original transfer loop on ``backend="reference"`` with torch.compile'd networks."""
    config, (kp_detector, generator, _) = random_models(name, "reference", False)
    kp_detector.to(device)
    generator.to(device)
    params = config["transfer_params"]["normalization_params"]
    source, first, driving = _frames(batch, size, device)
    return original_transfer_call(torch.compile(kp_detector, dynamic=False), torch.compile(generator, dynamic=False),
                                  source, first, driving, params)


def original_transfer_call(kp_detector, generator, source, first, driving, params) -> Callable:
    """One driving frame animated the way the original transfer.py does it: the source's and the first
    frame's keypoints found once, then per frame the driving keypoints, their normalisation and the
    whole generator (the source re-encoded every frame)."""
    from fastmotion.models import normalize_kp

    with torch.no_grad():
        kp_source, kp_initial = kp_detector(source), kp_detector(first)

    def call():
        with torch.no_grad():
            kp_norm = normalize_kp(kp_detector(driving), kp_source, kp_initial=kp_initial, **params)
            return generator(source, kp_norm, kp_source)["video_prediction"]
    return call


def _compare(suite: str, workload: str, comparison: str, fns: Dict[str, Callable], device: str, rounds: int,
             per_item: int, progress=None, peak: bool = True) -> List[dict]:
    """Rows of providers doing the same work, timed interleaved; ``peak``: also measure each one's
    peak memory (one more profiled call; --quick leaves it out of whole-model rows)."""
    rows = []
    times = timing.measure_interleaved(fns, device, rounds)
    for i, (label, fn) in enumerate(fns.items()):
        t = times[label]
        row = {"suite": suite, "op": workload, "case": comparison, "mode": "inference" if suite == "model" else suite,
               "provider": "reference" if i == 0 else label, "label": label, "device": device, "dtype": "fp32",
               "status": "ok", **timing_fields(t), "per_second": round(per_item / t.median, 2),
               "peak_mb": round(memory.peak_bytes(fn, device) / 2**20, 1) if peak else None}
        rows.append(row)
        if progress:
            progress(row)
    return rows


def run(device: str, quick: bool = False, tiny: bool = False, rounds: Optional[int] = None, progress=None) -> list:
    cases = INFERENCE_TINY if tiny else INFERENCE_QUICK if quick else INFERENCE
    rounds = rounds or (50 if device == "cuda" else 3 if (quick or tiny) else 10)
    return compare_cases("model", cases, lambda name, size, batch: (
        f"inference {name} {size}x{size} batch {batch}", inference_providers(name, size, batch, device)),
        device, rounds, progress, peak=not (quick or tiny))


def compare_cases(suite: str, cases, providers: Callable, device: str, rounds: int, progress=None,
                  peak: bool = True) -> List[dict]:
    """Rows of every (config, size, batch) case, with speed-ups; ``providers(name, size, batch)``
    gives the case's workload label and its {comparison: {provider label: callable}}."""
    rows = []
    for name, size, batch in cases:
        workload, comparisons = providers(name, size, batch)
        for comparison, fns in comparisons.items():
            rows += _compare(suite, workload, comparison, fns, device, rounds, batch, progress, peak=peak)
    add_speedups(rows, group_keys=("suite", "op", "case", "device"))
    return rows
