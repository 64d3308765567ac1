"""The Monkey-Net training loop around :func:`fastmotion.train.step.train_step`.

The original schedule, read from the config's ``train_params``: Adam (betas 0.5, 0.999) per
network (``lr``, or ``lr_<network>`` where a config sets one), MultiStepLR (gamma 0.1) at
``epoch_milestones``, ``num_epochs``, ``batch_size``, the loss weights, ``log_params``
(``log_freq_iter``: a ``log.txt`` line and a picture; ``cpk_freq_epoch``: a numbered checkpoint).
Around it: mixed precision (bf16 autocast, or fp16 autocast + GradScaler), several processes
(:mod:`fastmotion.train.distributed`), resumable checkpoints (position, schedulers, GradScaler
and random states in the checkpoint's ``'fastmotion'`` entry), a stop on SIGINT/SIGTERM or after
a time budget that saves where it is, a tqdm bar, TensorBoard scalars when tensorboard imports.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader

from fastmotion.checkpoint import load_checkpoint, save_checkpoint
from fastmotion.models.build import build_models
from fastmotion.train import distributed as fmdist
from fastmotion.train.losses import discriminator_loss_names, generator_loss_names
from fastmotion.train.sampler import ResumableSampler
from fastmotion.train.step import train_step

NETWORKS = ("kp_detector", "generator", "discriminator")
AMP_MODES = ("off", "fp16", "bf16")
LATEST = "checkpoint.pth.tar"


class TrainingError(RuntimeError):
    """A problem found before training starts (empty dataset, bad option): one sentence."""


@dataclass
class TrainResult:
    epoch: int  # epochs completed
    iteration: int  # iterations completed
    stopped: str  # "finished", "interrupted", "time budget", "max iterations"
    checkpoint: Optional[str]
    losses: List[Dict[str, float]] = field(default_factory=list)  # per iteration (rank 0)
    videos_per_second: float = 0.0


def _rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "cached_gaussian": float(cached)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    # Each loader worker gets its own numpy / random streams, derived from torch's worker seed
    # (itself drawn from the trainer's seeded generator).
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def resolve_device(device: Optional[str], local_rank: int = 0) -> torch.device:
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise TrainingError(f"--device {device!r} is not a device (expected cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {device}: CUDA is not available on this machine")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    return dev


class _StopSignals:
    """SIGINT / SIGTERM set a flag (the loop saves and stops after the current iteration)."""

    def __init__(self):
        self.received: Optional[str] = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


class Trainer:
    """Train Monkey-Net from a config on a dataset of ``{'video': (3, T, H, W)}`` items.

    Each item's first frame is the source, the others the driving frames (the original's
    ``SplitSourceDriving``). ``batch_size`` is the global batch (split over the processes).
    """

    def __init__(self, config: Mapping, dataset, log_dir: str, *, checkpoint: Optional[str] = None,
                 epochs: Optional[int] = None, batch_size: Optional[int] = None, amp: str = "off",
                 device: Optional[str] = None, workers: int = 0, seed: int = 0, save_every: Optional[int] = None,
                 compile: bool = False, max_minutes: Optional[float] = None, max_iterations: Optional[int] = None,
                 backend=None, picture_every: Optional[int] = None, progress: bool = True, models=None):
        self.config = dict(config)
        tp = dict(self.config.get("train_params") or {})
        if not tp:
            raise TrainingError("the config has no train_params")
        self.train_params = tp
        if amp not in AMP_MODES:
            raise TrainingError(f"--amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
        self.amp = amp
        self.process = fmdist.init_from_env("cuda" if (device or "").startswith("cuda") or
                                            (device in (None, "auto") and torch.cuda.is_available()) else "cpu")
        self.device = resolve_device(device, self.process.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if amp == "fp16" and self.device.type != "cuda":
            raise TrainingError("--amp fp16 needs a CUDA device (use --amp bf16 on CPU)")
        self.log_dir = log_dir
        self.num_epochs = int(epochs if epochs is not None else tp.get("num_epochs", 1))
        self.batch_size = int(batch_size if batch_size is not None else tp.get("batch_size", 1))
        if self.num_epochs < 1 or self.batch_size < 1:
            raise TrainingError(f"epochs and batch size must be >= 1 (got {self.num_epochs}, {self.batch_size})")
        world = self.process.world_size
        if self.batch_size % world:
            raise TrainingError(f"batch size {self.batch_size} does not split over {world} processes")
        self.local_batch = self.batch_size // world
        log_params = dict(tp.get("log_params") or {})
        self.log_freq = int(log_params.get("log_freq_iter", 100))
        self.cpk_freq_epoch = int(log_params.get("cpk_freq_epoch", 1))
        self.picture_every = int(picture_every) if picture_every is not None else self.log_freq
        self.save_every = save_every
        self.max_seconds = None if max_minutes is None else 60.0 * float(max_minutes)
        self.max_iterations = max_iterations
        self.workers = int(workers)
        self.seed = int(seed)
        self.progress = progress and self.process.is_main
        self.names = generator_loss_names(tp["loss_weights"]) + discriminator_loss_names()
        blocks = int((self.config["model_params"].get("discriminator_params") or {}).get("num_blocks", 4))
        rec = tp["loss_weights"].get("reconstruction")
        if isinstance(rec, (list, tuple)) and len(rec) != blocks + 1:
            raise TrainingError(f"train_params.loss_weights.reconstruction has {len(rec)} weights; the discriminator "
                                f"has {blocks} blocks, so it needs {blocks + 1} (one per feature map)")
        self.gradient_hook = None  # called with the trainer after gradients are averaged, before the steps

        self.dataset = dataset
        try:
            size = len(dataset)
        except TypeError as exc:
            raise TrainingError("the training dataset has no length") from exc
        if size < self.batch_size:
            where = getattr(dataset, "root_dir", None) or getattr(getattr(dataset, "dataset", None), "root_dir", "")
            raise TrainingError(f"the training set{' in ' + str(where) if where else ''} has {size} videos, fewer "
                                f"than one batch ({self.batch_size})")

        seed_everything(self.seed)
        if models is None:
            models = build_models(self.config, backend=backend)
        self.models = {name: m.to(self.device) for name, m in zip(NETWORKS, models)}
        if self.process.distributed:
            for name, m in self.models.items():
                self.models[name] = fmdist.convert_sync_batchnorm(m, self.device.type)
                fmdist.broadcast_module(self.models[name])
        for m in self.models.values():
            m.train()
        betas = (0.5, 0.999)
        self.optimizers = {f"optimizer_{n}": torch.optim.Adam(m.parameters(), lr=float(tp.get(f"lr_{n}", tp["lr"])),
                                                              betas=betas) for n, m in self.models.items()}
        milestones = list(tp.get("epoch_milestones") or [])
        self.schedulers = {k: torch.optim.lr_scheduler.MultiStepLR(o, milestones, gamma=0.1)
                           for k, o in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=(amp == "fp16"))
        self.forward_models = dict(self.models)
        if compile:
            self.forward_models = {n: torch.compile(m, dynamic=False) for n, m in self.models.items()}

        self.epoch, self.batch_in_epoch, self.iteration = 0, 0, 0
        if checkpoint is not None:
            self._resume(checkpoint)
        self.sampler = ResumableSampler(size, self.local_batch, seed=self.seed, shuffle=True,
                                    rank=self.process.rank, world_size=world)
        if self.sampler.batches_per_epoch == 0:
            raise TrainingError(f"the training set has {size} videos, fewer than one batch ({self.batch_size})")
        self.loader = DataLoader(dataset, batch_size=self.local_batch, sampler=self.sampler,
                                 num_workers=self.workers, pin_memory=self.device.type == "cuda",
                                 persistent_workers=self.workers > 0, drop_last=True, worker_init_fn=_seed_worker,
                                 generator=torch.Generator().manual_seed(self.seed))

    # ----------------------------------------------------------------------------- checkpoints
    def _resume(self, path: str) -> None:
        try:
            ckpt = load_checkpoint(path, self.config, optimizers=self.optimizers, map_location=self.device,
                                   **self.models)
        except (FileNotFoundError, RuntimeError, ValueError) as exc:
            raise TrainingError(f"--checkpoint: {exc}") from exc
        state = ckpt.resume
        if state is None:  # an original checkpoint: 'epoch' is the last completed epoch
            self.epoch = int(ckpt.epoch) + 1 if ckpt.epoch is not None else 0
            self.iteration = int(ckpt.it or 0)
            for s in self.schedulers.values():
                for _ in range(self.epoch):
                    s.step()
            return
        self.epoch, self.batch_in_epoch, self.iteration = state["epoch"], state["batch"], state["iteration"]
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = state.get("rng", {}).get(str(self.process.rank))
        if rng is not None:
            _set_rng_state(rng)

    def checkpoint_state(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch_in_epoch, "iteration": self.iteration,
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "rng": self._gathered_rng(), "seed": self.seed, "batch_size": self.batch_size, "amp": self.amp,
                "world_size": self.process.world_size}

    def _gathered_rng(self) -> dict:
        mine = _rng_state()
        if not self.process.distributed:
            return {"0": mine}
        everyone = [None] * self.process.world_size
        torch.distributed.all_gather_object(everyone, mine)
        return {str(r): s for r, s in enumerate(everyone)}

    def save(self, path: Optional[str] = None) -> Optional[str]:
        """Write the checkpoint (every process takes part; rank 0 writes). Returns its path."""
        path = path or os.path.join(self.log_dir, LATEST)
        state = self.checkpoint_state()
        fmdist.barrier()
        if self.process.is_main:
            # 'epoch' as the original writes it: the last completed epoch.
            save_checkpoint(path, **self.models, optimizers=self.optimizers, epoch=self.epoch - 1,
                            it=self.iteration, config=self.config, resume=state)
        fmdist.barrier()
        return path

    # ----------------------------------------------------------------------------- loop
    def _autocast(self):
        if self.amp == "off":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.amp == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def step(self, batch) -> dict:
        """One iteration on a loader batch; returns the losses (averaged over the processes)."""
        video = batch["video"].to(self.device, non_blocking=True)
        if video.dim() != 5 or video.shape[2] < 2:
            raise TrainingError(f"training items must be videos (3, T>=2, H, W); got a batch of shape "
                                f"{tuple(video.shape)}")
        source, driving = video[:, :, :1], video[:, :, 1:]
        m = self.forward_models
        want_picture = self.process.is_main and self.picture_every > 0 and self.iteration % self.picture_every == 0
        out = train_step(m["kp_detector"], m["generator"], m["discriminator"], source, driving, self.train_params,
                         forward_context=self._autocast, scaler=self.scaler if self.scaler.is_enabled() else None,
                         return_terms=True, return_generated=want_picture)
        for net in self.models.values():
            fmdist.average_gradients(net.parameters())
        if self.gradient_hook is not None:
            self.gradient_hook(self)
        for opt in self.optimizers.values():
            self.scaler.step(opt)
            opt.zero_grad(set_to_none=True)
        self.scaler.update()
        terms = fmdist.mean_over_processes(out["terms"], self.device)
        if want_picture:
            self._picture(source, driving, out["generated"])
        return terms

    def fit(self) -> TrainResult:
        """Train to ``num_epochs`` (or the time / iteration budget, or a stop signal)."""
        from fastmotion.train.logger import TrainLogger

        per_epoch = self.sampler.batches_per_epoch
        total = max(0, (self.num_epochs - self.epoch) * per_epoch - self.batch_in_epoch)
        logger = TrainLogger(self.log_dir, self.names, self.log_freq, enabled=self.process.is_main,
                             progress=self.progress, total=total)
        losses: List[Dict[str, float]] = []
        start = time.perf_counter()
        done_videos = 0
        stopped = "finished"
        with _StopSignals() as signals, logger:
            while self.epoch < self.num_epochs and stopped == "finished":
                self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
                for batch in self.loader:
                    terms = self.step(batch)
                    self.batch_in_epoch += 1
                    self.iteration += 1
                    done_videos += self.batch_size
                    losses.append(terms)
                    elapsed = time.perf_counter() - start
                    logger.iteration(self.iteration - 1, terms, done_videos / max(elapsed, 1e-9), self._lr())
                    reason = self._should_stop(signals, elapsed)
                    if reason:
                        stopped = reason
                        break
                    if self.save_every and self.iteration % self.save_every == 0:
                        self.save()
                if stopped != "finished":
                    break
                self._end_epoch()
            path = self.save()
            if stopped == "finished":
                logger.message(f"finished {self.num_epochs} epochs ({self.iteration} iterations); saved {path}",
                               last=True)
            else:
                logger.message(f"stopped ({stopped}) at epoch {self.epoch}, iteration {self.iteration}; saved {path}",
                               last=True)
        elapsed = time.perf_counter() - start
        return TrainResult(epoch=self.epoch, iteration=self.iteration, stopped=stopped, checkpoint=path, losses=losses,
                           videos_per_second=done_videos / max(elapsed, 1e-9))

    def _should_stop(self, signals, elapsed) -> Optional[str]:
        reason = None
        if signals.received:
            reason = f"received {signals.received}"
        elif self.max_seconds is not None and elapsed >= self.max_seconds:
            reason = "time budget"
        elif self.max_iterations is not None and self.iteration >= self.max_iterations:
            reason = "max iterations"
        if self.process.distributed:  # every process stops at the same iteration
            flag = torch.tensor([0 if reason is None else 1], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            if flag.item() and reason is None:
                reason = "stopped by another process"
        return reason

    def _end_epoch(self) -> None:
        for s in self.schedulers.values():
            s.step()
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.cpk_freq_epoch > 0 and (self.epoch - 1) % self.cpk_freq_epoch == 0:
            self.save(os.path.join(self.log_dir, f"{self.epoch - 1:08d}-checkpoint.pth.tar"))

    def _lr(self) -> float:
        return self.optimizers["optimizer_generator"].param_groups[0]["lr"]

    def _picture(self, source, driving, generated) -> None:
        from fastmotion.train.logger import training_picture

        path = os.path.join(self.log_dir, "train-vis", f"{self.iteration:08d}-rec.png")
        training_picture(path, source, driving, generated)


def finite(losses: List[Dict[str, float]]) -> bool:
    return all(math.isfinite(v) for d in losses for v in d.values())
