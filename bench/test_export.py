"""Per-frame latency of the exported graphs at batch 1 against PyTorch, same model, same frames.

Providers (timed in one process, alternating frame by frame so that load from other processes on
a shared machine hits all of them alike; each runs the keypoint detector on the driving frame,
the keypoint normalisation and the per-frame generator, with the source encoded once):

- ``onnxruntime``: the ONNX export (:class:`fastmotion.export.OnnxRuntimeAnimator`, CPU provider
  on CPU, CUDA provider where onnxruntime has it on a GPU machine);
- ``eager reference``: :class:`fastmotion.models.Animator` on ``backend="reference"`` (the plain
  PyTorch ops the export was traced from);
- ``fastmotion fast path``: :class:`fastmotion.Animator` (fused ops, folded BatchNorm, oneDNN
  packed weights), float32;
- ``AOTInductor``: the ``.pt2`` packages (:class:`fastmotion.export.AOTIAnimator`); compiling them
  takes minutes on a few cores: ``FASTMOTION_BENCH_AOTI=0`` leaves the row out.

Ratios (medians of the same run) are in ``extra_info`` and printed. Weights are random (BatchNorm
statistics randomized, as bench/test_model.py, seeded: the same every run).
``FASTMOTION_BENCH_EXPORT_DIR``: keep the exports there and reuse them in later runs (the AOTI
compile of vox takes minutes); ``FASTMOTION_BENCH_THREADS``: threads for every provider (torch and
onnxruntime; set OMP_NUM_THREADS to the same for the AOTI package).
"""
import copy
import os
import time

import numpy as np
import pytest
import torch

import fastmotion
import fastmotion.export as fx
from bench import harness
from bench.test_model import _models
from fastmotion.benchmark.timing import measure_interleaved
from fastmotion.models import Animator as StreamingAnimator

CASES = [("vox", 256)]
ORT, EAGER, FAST, AOTI = "onnxruntime", "eager reference", "fastmotion fast path", "AOTInductor"


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _export(folder, fmt, setup, **kwargs):
    out = os.path.join(folder, fmt)
    if os.path.isfile(os.path.join(out, "manifest.json")):
        manifest = fx.read_manifest(out)
        if manifest["frame_size"] == list(kwargs["frame_size"]) and manifest["dtype"] == "fp32":
            setup[f"{fmt} export"] = f"reused {out}"
            return
    start = time.perf_counter()
    fx.export(out, fmt, **kwargs)
    setup[f"{fmt} export s"] = round(time.perf_counter() - start, 1)


def _providers(name, size, device, folder):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install fastmotion[export])")
    pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install fastmotion[export])")
    config, (kp, gen, _) = _models(name, None, False)
    params = config["transfer_params"]["normalization_params"]
    g = torch.Generator().manual_seed(2)
    source, first, driving = (torch.rand((1, 3, size, size), generator=g) for _ in range(3))
    providers, setup = {}, {}

    threads = os.environ.get("FASTMOTION_BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    _export(folder, "onnx", setup, config=config, kp_detector=kp, generator=gen, frame_size=(size, size))
    import onnxruntime
    cuda_ort = device == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    setup["onnxruntime provider"] = "CUDAExecutionProvider" if cuda_ort else "CPUExecutionProvider"
    ort_providers = [setup["onnxruntime provider"]]
    ort_chain = fx.OnnxRuntimeAnimator(os.path.join(folder, "onnx"), providers=ort_providers,
                                       threads=int(threads) if threads else None)
    ort_chain.set_source(source)
    ort_chain(first)
    providers[ORT] = lambda: ort_chain(driving)

    kp_ref, gen_ref = copy.deepcopy(kp).set_backend("reference").to(device), copy.deepcopy(gen).set_backend(
        "reference").to(device)
    eager = StreamingAnimator(kp_ref.eval(), gen_ref.eval(), params)
    eager.set_source(source.to(device))
    eager(first.to(device))
    providers[EAGER] = lambda: eager(driving.to(device))["video_prediction"]

    fast = fastmotion.Animator(copy.deepcopy(kp), copy.deepcopy(gen), config, device=device,
                               frame_size=(size, size))
    fast.set_source(source.to(device))
    fast(first.to(device))
    providers[FAST] = lambda: fast(driving.to(device))

    if os.environ.get("FASTMOTION_BENCH_AOTI", "1") != "0":
        _export(folder, "aoti", setup, config=config, kp_detector=kp, generator=gen, frame_size=(size, size),
                device=device)
        aoti_chain = fx.AOTIAnimator(os.path.join(folder, "aoti"))
        aoti_chain.set_source(source.to(device))
        aoti_chain(first.to(device))
        providers[AOTI] = lambda: aoti_chain(driving.to(device))
    return providers, setup


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-b1")
def test_exported_per_frame_latency(benchmark, case, tmp_path):
    name, size = case
    device = harness.devices()[0]
    folder = os.environ.get("FASTMOTION_BENCH_EXPORT_DIR") or str(tmp_path)
    providers, setup = _providers(name, size, device, os.path.join(folder, f"{name}-{size}-{device}"))
    outputs = {label: fn().float().cpu() for label, fn in providers.items()}
    rounds = int(os.environ.get("FASTMOTION_BENCH_ROUNDS", "50" if device == "cuda" else "10"))
    load_before = _load()
    timings = measure_interleaved(providers, device, rounds, warmup=0)
    times = {label: t.samples for label, t in timings.items()}
    median = {label: float(np.median(t)) for label, t in times.items()}
    info = {"load_before": load_before, "load_after": _load(), "threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "rounds": rounds, **setup}
    for label in providers:
        info[f"{label}: median ms"] = round(1000 * median[label], 2)
        info[f"{label}: min ms"] = round(1000 * float(np.min(times[label])), 2)
        info[f"max |{label} - {EAGER}|"] = float((outputs[label] - outputs[EAGER]).abs().max())
    for label in providers:
        if label != EAGER:
            info[f"speedup {label} vs {EAGER}"] = round(median[EAGER] / median[label], 3)
    if AOTI in providers:
        info[f"speedup {FAST} vs {AOTI}"] = round(median[AOTI] / median[FAST], 3)
    info[f"speedup {FAST} vs {ORT}"] = round(median[ORT] / median[FAST], 3)
    info["fastest"] = min(median, key=median.get)
    benchmark.group = f"exported per frame {name} {size}x{size} batch 1 {device}"
    benchmark.extra_info.update(info)
    benchmark.pedantic(providers[ORT], rounds=max(3, rounds // 2), iterations=1, warmup_rounds=1)
    for key, value in info.items():
        print(f"{key}: {value}")
