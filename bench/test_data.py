"""Loader throughput: training videos per second delivered by ``make_loader`` on the shapes data set.

The shapes config's training set (``../shared/data/shapes/train``: 64x64 PNG strips of 32 frames),
train mode (2 random frames per video, the config's flip + crop augmentation), batch 16 (the config's
batch size), ``workers`` 0 (loading in the training process) and 2. Each round draws ``BATCHES``
more batches from one running pass over the data (steady state, as during training); worker start-up
and the first batches are not timed.
``extra_info["videos_per_s"]`` is what the trainer compares with its step rate (the issue asks for
the loader to deliver at least 5x the step's videos/s).

Run: ``python -m pytest bench/test_data.py --benchmark-only``.
"""
import os
import time

import pytest

import fastmotion
from fastmotion.data import datasets_from_config, make_loader

SHAPES = os.path.normpath(os.environ.get("FASTMOTION_SHARED_DATA", os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "data")))
SHAPES = os.path.join(SHAPES, "shapes")
BATCH = 16
BATCHES = 20


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_videos_per_second(benchmark, workers):
    if not os.path.isdir(os.path.join(SHAPES, "train")):
        pytest.skip(f"the shapes data set is not at {SHAPES} (set FASTMOTION_SHARED_DATA)")
    train, _ = datasets_from_config(fastmotion.load_config("shapes"), root_dir=SHAPES)
    loader = make_loader(train, BATCH, shuffle=True, workers=workers, seed=0)
    batches = iter(loader)
    assert len(loader) >= 4 * BATCHES + 5, "one pass must hold the warm-up and every round"

    def draw():
        for _ in range(BATCHES):
            batch = next(batches)
            assert batch["video"].shape == (BATCH, 3, 2, 64, 64)

    for _ in range(5):  # start the workers, fill the prefetch queue
        next(batches)
    start = time.perf_counter()
    benchmark.pedantic(draw, rounds=3, iterations=1)
    elapsed = time.perf_counter() - start
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update({"workers": workers, "batch_size": BATCH, "batches": BATCHES,
                                 "videos_per_s": BATCH * BATCHES / seconds, "wall_s": elapsed,
                                 "cpus": os.cpu_count()})
    print(f"\nloader workers={workers}: {BATCH * BATCHES / seconds:.0f} videos/s (median of 3 passes of "
          f"{BATCHES} batches of {BATCH})")
