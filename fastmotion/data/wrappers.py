"""Datasets built on another one: repeated epochs (``num_repeats``) and source/driving pairs for transfer."""
from __future__ import annotations

import csv
import os

import numpy as np
from torch.utils.data import Dataset

from fastmotion.data.errors import DataError


class DatasetRepeater(Dataset):
    """``dataset`` seen ``num_repeats`` times per epoch (short epochs over small datasets waste time in
    per-epoch work); item ``i`` is ``dataset[i % len(dataset)]``."""

    def __init__(self, dataset, num_repeats: int = 100):
        if int(num_repeats) < 1:
            raise DataError(f"num_repeats must be >= 1, got {num_repeats}")
        self.dataset = dataset
        self.num_repeats = int(num_repeats)

    def __len__(self) -> int:
        return self.num_repeats * len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index % len(self.dataset)]

    @property
    def skipped(self) -> int:
        return getattr(self.dataset, "skipped", 0)


def read_pairs_csv(path: str):
    """Rows of a pairs CSV (columns ``source`` and ``driving``: video names) as ``(source, driving)``."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"source", "driving"} - set(reader.fieldnames or ())
            if missing:
                raise DataError(f"pairs_list {path}: expected the columns 'source' and 'driving', "
                                f"got {reader.fieldnames}")
            return [(row["source"], row["driving"]) for row in reader]
    except OSError as exc:
        raise DataError(f"pairs_list {path}: cannot read ({exc.strerror or exc})") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"pairs_list {path}: not a readable CSV ({exc})") from None


class PairedDataset(Dataset):
    """Pairs ``(driving video, source video)`` of ``initial_dataset`` for motion transfer, as the original:
    from its ``pairs_list`` CSV (the first ``number_of_pairs`` rows whose videos are both in the dataset),
    or else ``number_of_pairs`` distinct random index pairs among the first ``number_of_pairs`` videos,
    drawn with numpy's RNG seeded by ``seed``. Items are ``{"driving_video", "driving_name",
    "source_video", "source_name"}``."""

    def __init__(self, initial_dataset, number_of_pairs: int, seed: int = 0):
        self.initial_dataset = initial_dataset
        pairs_list = getattr(initial_dataset, "pairs_list", None)
        if pairs_list is None:
            max_index = min(int(number_of_pairs), len(initial_dataset))
            grid = np.mgrid[:max_index, :max_index].reshape(2, -1).T
            count = min(grid.shape[0], int(number_of_pairs))
            rng = np.random.RandomState(seed)  # the original seeded numpy's global RNG: the same stream
            self.pairs = [tuple(int(v) for v in p) for p in grid.take(rng.choice(grid.shape[0], count, replace=False),
                                                                     axis=0)]
        else:
            pairs_list = os.fspath(pairs_list)
            index = {name: i for i, name in enumerate(initial_dataset.images)}
            rows = [(s, d) for s, d in read_pairs_csv(pairs_list) if s in index and d in index]
            self.pairs = [(index[d], index[s]) for s, d in rows[:int(number_of_pairs)]]
        if not self.pairs:
            raise DataError(f"no pairs: the dataset has {len(initial_dataset)} videos"
                            + (f" and none of the rows of {pairs_list} name two of them" if pairs_list else ""))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        driving, source = self.pairs[index]
        first = self.initial_dataset[driving]
        second = self.initial_dataset[source]
        return {**{"driving_" + k: v for k, v in first.items()}, **{"source_" + k: v for k, v in second.items()}}
