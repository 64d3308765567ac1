"""The training suite: one training iteration of the drop-in Monkey-Net (generator and
discriminator steps with the original losses, ``fastmotion.train.step.train_step``, no optimizer
step), ``backend="reference"`` against the fast path, interleaved; and a full
``fastmotion.train.Trainer`` iteration (loader included): the rows of bench/test_train.py, the
trainer's own pytest-benchmark suite (reported as not run while ``fastmotion.train.Trainer`` cannot
be imported, and in --quick runs)."""
from __future__ import annotations

from typing import Optional

import torch

from fastmotion.benchmark import pytest_suite
from fastmotion.benchmark.model import compare_cases, random_models

STEP = [("taichi", 64, 8)]
STEP_QUICK = [("shapes", 64, 1)]
STEP_TINY = [("shapes", 64, 1)]


def step_call(name: str, size: int, batch: int, backend: Optional[str], device: str):
    from fastmotion.train.step import train_step

    config, models = random_models(name, backend, True)
    models = [m.to(device) for m in models]
    gen = torch.Generator().manual_seed(3)
    source, video = (torch.rand((batch, 3, 1, size, size), generator=gen).to(device) for _ in range(2))
    params = config["train_params"]

    def call():
        for m in models:
            m.zero_grad(set_to_none=True)
        return train_step(*models, source, video, params)
    return call


def trainer_unavailable() -> Optional[str]:
    try:
        from fastmotion.train import Trainer  # noqa: F401
    except ImportError as exc:
        return f"fastmotion.train.Trainer is not importable here ({exc})"
    return None


def run(device: str, quick: bool = False, tiny: bool = False, rounds: Optional[int] = None, progress=None) -> list:
    cases = STEP_TINY if tiny else STEP_QUICK if quick else STEP
    rounds = rounds or (20 if device == "cuda" else 2 if (quick or tiny) else 5)

    def providers(name, size, batch):
        return f"training step {name} {size}x{size} batch {batch}", {"train_step, no optimizer step": {
            "reference (backend=reference)": step_call(name, size, batch, "reference", device),
            "fast path": step_call(name, size, batch, None, device)}}
    rows = compare_cases("train", cases, providers, device, rounds, progress, peak=not (quick or tiny))
    reason = trainer_unavailable()
    if reason is None and (quick or tiny):
        reason = "left out of --quick / --tiny runs: `fastmotion bench train` runs bench/test_train.py"
    if reason is None:
        rows += pytest_suite.run("bench/test_train.py", "train", device, quick, rounds)
    else:
        rows.append({"suite": "train", "op": "Trainer iteration (loader included)", "case": "-", "mode": "train",
                     "provider": "fastmotion.train.Trainer", "device": device, "dtype": "fp32", "status": "skipped",
                     "reason": reason})
    return rows
