"""DataLoaders that keep the training step fed: worker processes that stay alive between epochs,
pinned memory for the copy to the GPU, a sampler whose order depends only on ``(seed, epoch)``."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from fastmotion.data.errors import DataError


class EpochSampler(Sampler):
    """Indices ``0..n-1``, shuffled by ``(seed, epoch)`` when ``shuffle``: a resumed run sees the same order
    as an uninterrupted one once it calls ``set_epoch(epoch)`` (as with ``DistributedSampler``)."""

    def __init__(self, length: int, shuffle: bool, seed: int = 0):
        self.length = int(length)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.length))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch (and Python's random) in each worker from the loader's generator; numpy too,
    # so any numpy randomness in a dataset differs between workers and follows the seed.
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset, batch_size: int, shuffle: bool, workers: int, seed: int, distributed: bool = False,
                drop_last: bool = True) -> DataLoader:
    """A DataLoader over ``dataset``: ``workers`` persistent worker processes (0: load in this process),
    pinned memory when CUDA is available, an order set by ``seed`` and the epoch (call
    ``loader.sampler.set_epoch(epoch)``), a ``DistributedSampler`` (this rank's share) when ``distributed``.
    Raises :class:`DataError` when ``drop_last`` would leave no batch at all."""
    batch_size, workers = int(batch_size), int(workers)
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise DataError(f"workers must be >= 0, got {workers}")
    if len(dataset) == 0:
        raise DataError("the dataset is empty")
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=False)
    else:
        sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed)
    if drop_last and len(sampler) < batch_size:
        where = " on this rank" if distributed else ""
        raise DataError(f"the dataset has {len(sampler)} videos{where}, fewer than one batch of {batch_size}; "
                        f"lower the batch size or add videos")
    generator = torch.Generator().manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0, drop_last=drop_last,
                      worker_init_fn=_seed_worker if workers > 0 else None, generator=generator,
                      prefetch_factor=4 if workers > 0 else None)
