"""Whole-model benchmarks of the drop-in Monkey-Net, like for like (the same providers as
``fastmotion bench model``, from fastmotion.benchmark.model):

- inference, ``streaming (source encoded once)``: ``fastmotion.models.Animator`` on
  ``backend="reference"`` against the same class on the fast path (fused ops + model rewrites), and
  at batch 1 the user-facing ``fastmotion.Animator`` (fp32; bf16 on CPUs with bf16; bf16 and
  fp16 + CUDA graphs on CUDA);
- inference, ``per frame, source re-encoded every frame (the original's way of working)``: the
  original ``transfer.py`` loop on ``backend="reference"`` against the same loop on the fast path;
- train: one training iteration's forward + backward (generator and discriminator steps with the
  original losses, :func:`fastmotion.train.step.train_step` without optimizer steps) at taichi
  batch 8, in float32 and on CUDA under fp16 / bf16 autocast (the reference under the same autocast).

``extra_info`` holds the ratio to the reference row of the same comparison measured in this session
(medians and minima; the minima are the steadier figure on a shared, noisy machine), frames or
videos per second and peak memory. Weights are random (BatchNorm statistics randomised).
``compile`` (torch.compile of the reference transfer loop) is opt-in with
FASTMOTION_BENCH_MODEL_COMPILE=1: compiling the whole model takes minutes on a small CPU.
"""
import contextlib
import functools
import os

import pytest
import torch

from bench import harness
from fastmotion.benchmark import model as model_bench
from fastmotion.benchmark import train as train_bench

_reference_stats = {}
PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
STREAMING_PROVIDERS = ["reference (models.Animator, backend=reference)", "fast path (models.Animator)",
                       "fastmotion.Animator fp32", "fastmotion.Animator bf16", "fastmotion.Animator fp16 + CUDA graphs"]
PER_FRAME_PROVIDERS = ["reference (original transfer loop, backend=reference)", "fast path (same loop)",
                       "compile (torch.compile of the reference loop)"]
COMPARISONS = [(model_bench.STREAMING, p) for p in STREAMING_PROVIDERS] + \
              [(model_bench.PER_FRAME, p) for p in PER_FRAME_PROVIDERS]


def _precision(precision, device):
    """The autocast context of a precision; skips half precisions off CUDA (CPU autocast does not
    reach the fast path's oneDNN inference convolutions, so it would compare unlike things)."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if device != "cuda":
        pytest.skip(f"{precision} autocast benchmarks run on CUDA")
    return torch.autocast(device, dtype=dtype)


@functools.lru_cache(maxsize=2)
def _inference(name, size, batch, device):
    providers = model_bench.inference_providers(name, size, batch, device)
    if os.environ.get("FASTMOTION_BENCH_MODEL_COMPILE") == "1":
        providers[model_bench.PER_FRAME][PER_FRAME_PROVIDERS[2]] = model_bench.compiled_transfer_loop(
            name, size, batch, device)
    return providers


def _record(benchmark, key, is_reference):
    """Ratios to the reference of the same comparison in this session, on medians and on minima."""
    if benchmark.stats is None:  # --benchmark-disable
        return
    median, fastest = benchmark.stats.stats.median, benchmark.stats.stats.min
    if is_reference:
        _reference_stats[key] = (median, fastest, benchmark.extra_info["peak_MB"])
    elif key in _reference_stats:
        ref_time, ref_min, ref_peak = _reference_stats[key]
        benchmark.extra_info["speedup_vs_reference"] = round(ref_time / median, 3)
        benchmark.extra_info["speedup_vs_reference_min"] = round(ref_min / fastest, 3)
        if ref_peak:
            benchmark.extra_info["peak_vs_reference"] = round(benchmark.extra_info["peak_MB"] / ref_peak, 3)


@pytest.mark.parametrize("comparison,provider", COMPARISONS, ids=[f"{c.split()[0]}-{p.split(' (')[0]}"
                                                                  for c, p in COMPARISONS])
@pytest.mark.parametrize("case", model_bench.INFERENCE, ids=lambda c: f"{c[0]}-{c[1]}-b{c[2]}")
def test_inference(benchmark, case, comparison, provider):
    name, size, batch = case
    device = harness.devices()[0]
    if provider.startswith("compile") and os.environ.get("FASTMOTION_BENCH_MODEL_COMPILE") != "1":
        pytest.skip("set FASTMOTION_BENCH_MODEL_COMPILE=1 (compiling the whole model takes minutes)")
    fns = _inference(name, size, batch, device)[comparison]
    if provider not in fns:
        pytest.skip(f"{provider} does not run here ({device}, batch {batch})")
    benchmark.group = f"model inference {name} {size}x{size} batch {batch} {comparison} {device}"
    harness.run(benchmark, fns[provider], device, 0, model=name, provider=provider, batch=batch,
                comparison=comparison, threads=torch.get_num_threads())
    if benchmark.stats is not None:
        benchmark.extra_info["frames/s"] = round(batch / benchmark.stats.stats.median, 2)
    _record(benchmark, (name, size, batch, comparison), provider == next(iter(fns)))


@pytest.mark.parametrize("provider", ["reference", "fast"])
@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("case", train_bench.STEP, ids=lambda c: f"{c[0]}-b{c[2]}")
def test_train_step(benchmark, case, precision, provider):
    name, size, batch = case
    device = harness.devices()[0]
    autocast = _precision(precision, device)
    step = train_bench.step_call(name, size, batch, "reference" if provider == "reference" else None, device)

    def call():
        with autocast:
            return step()

    benchmark.group = f"model train step {name} batch {batch} {precision} {device}"
    harness.run(benchmark, call, device, 0, model=name, provider=provider, batch=batch, precision=precision,
                mode="train", threads=torch.get_num_threads())
    if benchmark.stats is not None:
        benchmark.extra_info["videos/s"] = round(batch / benchmark.stats.stats.median, 2)
    _record(benchmark, ("train", name, batch, precision), provider == "reference")


_models = model_bench.random_models  # the name other bench suites import
