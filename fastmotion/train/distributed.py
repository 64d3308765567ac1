"""Multi-process training (``torchrun --nproc_per_node N -m fastmotion train ...``).

Every process holds the whole model and a slice of each global batch. BatchNorm statistics are
reduced over all processes (the original used synchronized BatchNorm), gradients are averaged
over processes before each optimizer step, so N processes with B/N videos each follow the same
trajectory as one process with B videos. Rank 0 alone writes logs, pictures and checkpoints.

Gradients are averaged by one flat all-reduce per network after the iteration's backward passes
(the iteration runs two backward passes with ``inputs=`` restricted to some networks, which
``DistributedDataParallel``'s per-forward bucketing does not follow).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device_type: str) -> ProcessInfo:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU); one process
    without torchrun."""
    if not launched_by_torchrun():
        return ProcessInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return ProcessInfo(rank=dist.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                       world_size=dist.get_world_size())


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


class SyncBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are computed over every process's batch (a
    differentiable all-reduce: the gradient flows back to each process's inputs). Same
    parameters, buffers and state_dict keys as BatchNorm2d; a plain BatchNorm2d when no process
    group is running. Works on CPU (gloo), where ``torch.nn.SyncBatchNorm`` does not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        all_reduce = _differentiable_all_reduce

        self._check_input_dim(x)
        c = x.shape[1]
        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # half inputs: statistics in float32
        count = torch.full((1,), xf.numel() // c, dtype=xf.dtype, device=xf.device)
        # Two passes (mean, then centred squares): no cancellation in E[x^2] - E[x]^2.
        sums = all_reduce(torch.cat([xf.sum((0, 2, 3)), count]))
        n = sums[c]
        mean = sums[:c] / n
        centred = xf - mean.view(1, c, 1, 1)
        var = all_reduce((centred * centred).sum((0, 2, 3))) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), factor)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            out = centred * (scale * self.weight.to(xf.dtype)).view(1, c, 1, 1) + self.bias.to(xf.dtype).view(1, c, 1, 1)
        else:
            out = centred * scale.view(1, c, 1, 1)
        return out.to(x.dtype)


def _differentiable_all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over the processes; the gradient of each input is the sum of the gradients of the output."""
    import warnings

    from torch.distributed.nn.functional import all_reduce

    with warnings.catch_warnings():  # deprecated in favour of a private module; same math
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(tensor)


def convert_sync_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Every BatchNorm2d of ``module`` made synchronized, keeping its parameters and state_dict
    keys: ``torch.nn.SyncBatchNorm`` on CUDA, :class:`SyncBatchNorm2d` elsewhere."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            like = next(iter(child.parameters()), None)
            like = like if like is not None else next(iter(child.buffers()), None)
            factory = {} if like is None else dict(device=like.device, dtype=like.dtype)
            sync = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats, **factory)
            sync.load_state_dict(child.state_dict())
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            convert_sync_batchnorm(child, device_type)
    return module


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Rank ``src``'s parameters and buffers on every process (identical starting weights)."""
    if not active():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src)


def average_gradients(parameters: Iterable[torch.Tensor]) -> None:
    """Mean of each parameter's gradient over the processes (one flat all-reduce)."""
    if not active():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def mean_over_processes(values: dict, device="cpu") -> dict:
    """Scalar losses averaged over the processes (so rank 0 logs the global batch's losses)."""
    if not active() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist()))
