"""Training throughput: a full :class:`fastmotion.train.Trainer` iteration, data loading included.

- ``trainer``: one iteration (next batch from the DataLoader: PNG strips decoded, two frames picked,
  the config's augmentations; then the generator and discriminator steps and the three Adam steps)
  at the taichi config, batch 8, on the project's synthetic moving-shapes videos (64x64, written
  once per session). Providers: ``reference`` (backend="reference": the original's math, plain
  PyTorch layers) and ``fast`` (fused ops + model rewrites). ``extra_info``: videos/s, peak memory,
  and for ``fast`` the ratios to the reference of the same session (targets: >= 1.5x videos/s,
  <= 0.6x peak memory).
- ``loader``: the DataLoader alone on ../shared/data/shapes (the original's shapes strips; skipped
  when absent), videos/s, to compare with the step's rate (target: >= 5x).

Rounds: FASTMOTION_BENCH_ROUNDS (default 10; a taichi iteration on two CPU cores takes seconds).
"""
import itertools
import os

import pytest
import torch

import fastmotion
from bench import harness
from fastmotion.data import FramesDataset, make_loader, write_synthetic_videos
from fastmotion.train.trainer import Trainer

BATCH = 8
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("FASTMOTION_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
_reference = {}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("train-bench") / "shapes")
    write_synthetic_videos(root, 4 * BATCH, 0, frames=32, size=64, seed=0)
    os.makedirs(os.path.join(root, "test"), exist_ok=True)
    return root


def _trainer(root, backend, log_dir, workers):
    config = fastmotion.load_config("taichi")
    params = config["dataset_params"]
    dataset = FramesDataset(root, is_train=True, augmentation_params=params["augmentation_params"])
    device = harness.devices()[0]
    return Trainer(config, dataset, log_dir, batch_size=BATCH, epochs=1000, device=device, workers=workers,
                   backend=backend, progress=False, picture_every=0)


@pytest.mark.parametrize("provider", ["reference", "fast"])
def test_trainer_iteration(benchmark, videos, tmp_path, provider):
    workers = int(os.environ.get("FASTMOTION_BENCH_WORKERS", "0"))
    trainer = _trainer(videos, "reference" if provider == "reference" else None, str(tmp_path / "log"), workers)
    device = harness.devices()[0]
    batches = iter(itertools.chain.from_iterable(itertools.repeat(trainer.loader)))

    def iteration():
        return trainer.step(next(batches))

    benchmark.group = f"trainer iteration taichi batch {BATCH} {device}"
    harness.run(benchmark, iteration, device, 0, model="taichi", provider=provider, batch=BATCH, workers=workers,
                threads=torch.get_num_threads())
    if benchmark.stats is None:
        return
    median, fastest = benchmark.stats.stats.median, benchmark.stats.stats.min
    benchmark.extra_info["videos_per_s"] = round(BATCH / median, 3)
    benchmark.extra_info["videos_per_s_best"] = round(BATCH / fastest, 3)
    if provider == "reference":
        _reference.update(median=median, min=fastest, peak=benchmark.extra_info["peak_MB"])
    elif _reference:
        benchmark.extra_info["speedup_vs_reference"] = round(_reference["median"] / median, 3)
        benchmark.extra_info["speedup_vs_reference_min"] = round(_reference["min"] / fastest, 3)
        if _reference["peak"]:
            benchmark.extra_info["peak_vs_reference"] = round(benchmark.extra_info["peak_MB"] / _reference["peak"], 3)


def test_loader_alone(benchmark):
    root = os.path.join(DATA, "shapes")
    if not os.path.isdir(root):
        pytest.skip(f"{root} not found (the original's shapes data; FASTMOTION_SHARED_DATA points elsewhere)")
    config = fastmotion.load_config("shapes")
    dataset = FramesDataset(root, is_train=True, augmentation_params=config["dataset_params"]["augmentation_params"])
    workers = int(os.environ.get("FASTMOTION_BENCH_WORKERS", "2"))
    loader = make_loader(dataset, BATCH, shuffle=True, workers=workers, seed=0)
    batches = iter(itertools.chain.from_iterable(itertools.repeat(loader)))

    def load():
        return next(batches)["video"]

    benchmark.group = f"trainer loader shapes batch {BATCH}"
    for _ in range(3):
        load()
    benchmark.pedantic(load, rounds=int(os.environ.get("FASTMOTION_BENCH_ROUNDS", "20")), iterations=1,
                       warmup_rounds=1)
    if benchmark.stats is not None:
        benchmark.extra_info.update(workers=workers, videos_per_s=round(BATCH / benchmark.stats.stats.median, 2))
