"""Whole-model benchmarks of the drop-in Monkey-Net: backend="reference" (the original's math)
against the fast path (fused ops + model-level rewrites), time and peak memory.

- inference: keypoints of one driving frame + the generator, per frame, as the original
  transfer.py runs it (source keypoints detected once per video). ``reference``: the original
  flow on backend="reference"; ``fast``: :class:`fastmotion.models.Animator` (source encoded once,
  fast path); ``fast-nocache``: the original flow on the fast path (no source caching).
  Configs: vox (256x256, scale_factor 0.25) batch 1 and taichi (64x64) batch 16.
- train: one training iteration's forward + backward (generator step and discriminator step
  with the original losses, :func:`fastmotion.train.step.train_step` without optimizer steps) at
  taichi batch 8.

Precision: float32, and on CUDA float16 / bfloat16 autocast (``torch.autocast``, as mixed-precision
training and half inference run); the reference runs under the same autocast. ``extra_info``
holds frames per second (``fps``) for inference.

Weights are random (no checkpoints are downloaded); BatchNorm statistics are randomised so that
eval mode is not trivial. ``extra_info`` holds peak memory and, for the fast providers, the
ratios to the reference measured in the same session (medians and minima). ``compile`` (torch.compile of the
reference model) is opt-in with FASTMOTION_BENCH_MODEL_COMPILE=1: compiling the whole model
takes minutes on a small CPU.
"""
import contextlib
import os

import pytest
import torch

import fastmotion
from bench import harness
from fastmotion.models import Animator, build_models, normalize_kp
from fastmotion.train.step import train_step

INFERENCE = [("vox", 1, 256), ("taichi", 16, 64)]
TRAIN = [("taichi", 8, 64)]
_reference_stats = {}
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def _precision(precision, device):
    """The autocast context of a precision; skips half precisions off CUDA (CPU autocast does not
    reach the fast path's oneDNN inference convolutions, so it would compare unlike things)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if device != "cuda":
        pytest.skip(f"{precision} autocast benchmarks run on CUDA")
    return torch.autocast(device, dtype=dtype)


def _models(name, backend, train):
    torch.manual_seed(0)
    config = fastmotion.load_config(name)
    models = build_models(config, backend=backend)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in models:
            for m in module.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
        w = models.generator.dense_motion_module.hourglass.decoder.conv.weight
        w.copy_(torch.randn(w.shape, generator=gen) * 0.01)
    for m in models:
        m.train(train)
    return config, models


def _skip_reason(provider):
    if provider == "compile" and os.environ.get("FASTMOTION_BENCH_MODEL_COMPILE") != "1":
        return "set FASTMOTION_BENCH_MODEL_COMPILE=1 (compiling the whole model takes minutes)"
    return harness.provider_skip_reason("compile" if provider == "compile" else "reference", harness.devices()[0])


def _param_bytes(*modules):
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def _record(benchmark, key, provider):
    """Ratios to the reference of the same session: on medians and on minima (best of the rounds;
    the steadier figure on a shared, noisy machine)."""
    if benchmark.stats is None:  # --benchmark-disable
        return
    median, fastest = benchmark.stats.stats.median, benchmark.stats.stats.min
    if provider == "reference":
        _reference_stats[key] = (median, fastest, benchmark.extra_info["peak_MB"])
    elif key in _reference_stats:
        ref_time, ref_min, ref_peak = _reference_stats[key]
        benchmark.extra_info["time_vs_reference"] = round(median / ref_time, 3)
        benchmark.extra_info["speedup_vs_reference"] = round(ref_time / median, 3)
        benchmark.extra_info["time_vs_reference_min"] = round(fastest / ref_min, 3)
        benchmark.extra_info["speedup_vs_reference_min"] = round(ref_min / fastest, 3)
        if ref_peak:
            benchmark.extra_info["peak_vs_reference"] = round(benchmark.extra_info["peak_MB"] / ref_peak, 3)


@pytest.mark.parametrize("provider", ["reference", "fast", "fast-nocache", "compile"])
@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("case", INFERENCE, ids=lambda c: f"{c[0]}-b{c[1]}")
def test_inference(benchmark, case, precision, provider):
    reason = _skip_reason(provider)
    if reason:
        pytest.skip(reason)
    name, batch, size = case
    device = harness.devices()[0]
    autocast = _precision(precision, device)
    config, (kp_detector, generator, _) = _models(name, None if provider.startswith("fast") else "reference", False)
    kp_detector.to(device)
    generator.to(device)
    params = config["transfer_params"]["normalization_params"]
    gen = torch.Generator().manual_seed(2)
    source = torch.rand((batch, 3, size, size), generator=gen).to(device)
    first, driving = (torch.rand((batch, 3, size, size), generator=gen).to(device) for _ in range(2))

    if provider == "fast":
        animator = Animator(kp_detector, generator, params)
        with autocast:
            animator.set_source(source)
            animator(first)  # the initial driving pose

        def call():
            with autocast:
                return animator(driving)["video_prediction"]
    else:
        with torch.no_grad(), autocast:
            kp_source, kp_initial = kp_detector(source), kp_detector(first)
        detect, generate = kp_detector, generator
        if provider == "compile":
            detect, generate = harness.compiled(kp_detector), harness.compiled(generator)

        def call():
            with torch.no_grad(), autocast:  # the original transfer loop
                kp_driving = detect(driving)
                kp_norm = normalize_kp(kp_driving, kp_source, kp_initial=kp_initial, **params)
                return generate(source, kp_norm, kp_source)["video_prediction"]

    benchmark.group = f"model inference {name} batch {batch} {precision} {device}"
    bytes_moved = _param_bytes(kp_detector, generator) + 3 * source.numel() * source.element_size()
    harness.run(benchmark, call, device, bytes_moved, model=name, provider=provider, batch=batch,
                precision=precision, mode="inference", threads=torch.get_num_threads())
    if benchmark.stats is not None:
        benchmark.extra_info["fps"] = round(batch / benchmark.stats.stats.median, 2)
    _record(benchmark, ("inference", name, batch, precision), provider)


@pytest.mark.parametrize("provider", ["reference", "fast"])
@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("case", TRAIN, ids=lambda c: f"{c[0]}-b{c[1]}")
def test_train_step(benchmark, case, precision, provider):
    name, batch, size = case
    device = harness.devices()[0]
    autocast = _precision(precision, device)
    config, models = _models(name, None if provider == "fast" else "reference", True)
    models = [m.to(device) for m in models]
    gen = torch.Generator().manual_seed(3)
    source = torch.rand((batch, 3, 1, size, size), generator=gen).to(device)
    video = torch.rand((batch, 3, 1, size, size), generator=gen).to(device)
    train_params = config["train_params"]

    def call():
        for m in models:
            m.zero_grad(set_to_none=True)
        with autocast:
            return train_step(*models, source, video, train_params)

    benchmark.group = f"model train step {name} batch {batch} {precision} {device}"
    harness.run(benchmark, call, device, 3 * _param_bytes(*models), model=name, provider=provider, batch=batch,
                precision=precision, mode="train", threads=torch.get_num_threads())
    _record(benchmark, ("train", name, batch, precision), provider)
