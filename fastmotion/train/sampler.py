"""The order in which the trainer visits the training videos: resumable and split over processes.

Epoch ``e`` visits a permutation drawn from ``seed + e`` (so an epoch's order does not depend on
what ran before it), cut into global batches of ``batch_size * world_size`` videos (the last,
incomplete one dropped, as the original's ``drop_last=True``); process ``r`` takes the ``r``-th
``batch_size`` videos of each global batch. One process with the global batch and N processes
with a share each therefore see the same videos at every step. ``set_epoch(e, start_batch=k)``
skips the first ``k`` batches without loading them (resuming in the middle of an epoch).
"""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler):
    def __init__(self, size: int, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"ResumableSampler: batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"ResumableSampler: rank must be in [0, {world_size}), got {rank}")
        self.size, self.batch_size, self.seed, self.shuffle = int(size), int(batch_size), int(seed), shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self):
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        global_batch = self.batch_size * self.world_size
        order = order[:self.batches_per_epoch * global_batch].view(-1, self.world_size, self.batch_size)
        mine = order[self.start_batch:, self.rank].reshape(-1)
        return iter(mine.tolist())
