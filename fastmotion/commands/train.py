"""``fastmotion train``: train Monkey-Net on a folder of videos with the original schedule.

Several processes: ``torchrun --nproc_per_node N -m fastmotion train ...`` (``--batch-size`` is
the global batch). Ctrl-C / SIGTERM saves a checkpoint at the current iteration and exits 0;
``--checkpoint`` resumes from it.
"""
from __future__ import annotations

import os
import time

from fastmotion.cli import CommandError
from fastmotion.commands._model_options import add_config_options, load_config_option


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train Monkey-Net on a folder of videos (original schedule)",
                       description="Train Monkey-Net from a config (a packaged name or a YAML path) on the videos "
                                   "in --data (train/ and test/ subfolders, or a flat folder split as the original). "
                                   "Writes log.txt, pictures and checkpoints into --log-dir.")
    add_config_options(p, checkpoint_help="resume from this checkpoint (weights, optimizers, schedule, position)")
    p.add_argument("--log-dir", default=None,
                   help="output folder (default: log/<config name> <date>; with --checkpoint: its folder)")
    p.add_argument("--epochs", type=int, help="number of epochs (default: the config's num_epochs)")
    p.add_argument("--batch-size", type=int, help="global batch size (default: the config's batch_size)")
    p.add_argument("--amp", default="off", choices=["off", "fp16", "bf16"],
                   help="mixed precision: bf16 autocast, or fp16 autocast + gradient scaling (CUDA)")
    p.add_argument("--workers", type=int, default=2, help="data loading worker processes (default 2; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (weights, data order, augmentation)")
    p.add_argument("--save-every", type=int, metavar="N", help="also save the checkpoint every N iterations")
    p.add_argument("--picture-every", type=int, metavar="N",
                   help="write a picture every N iterations (default: the config's log_freq_iter)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (experimental)")
    p.add_argument("--skip-bad", action="store_true", help="warn about and skip unreadable videos")
    p.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's; on a machine busy with other "
                                                "work, 1 thread per process can be several times faster)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def default_log_dir(config_name: str) -> str:
    base = os.path.splitext(os.path.basename(config_name))[0]
    return os.path.join("log", f"{base} {time.strftime('%d-%m-%y %H:%M:%S', time.gmtime())}")


def run(args) -> int:
    import torch

    from fastmotion.data import DataError, datasets_from_config
    from fastmotion.train.trainer import Trainer, TrainingError

    for name in ("epochs", "batch_size", "save_every", "picture_every", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.workers < 0:
        raise CommandError(f"--workers must be >= 0, got {args.workers}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise CommandError(f"--max-minutes must be > 0, got {args.max_minutes}")
    config = load_config_option(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        train_set, _ = datasets_from_config(config, root_dir=args.data, skip_bad=args.skip_bad)
    except DataError as exc:
        raise CommandError(f"--data: {exc}") from exc
    log_dir = args.log_dir
    if log_dir is None:
        log_dir = os.path.dirname(os.path.abspath(args.checkpoint)) if args.checkpoint else default_log_dir(args.config)
    try:
        trainer = Trainer(config, train_set, log_dir, checkpoint=args.checkpoint, epochs=args.epochs,
                          batch_size=args.batch_size, amp=args.amp, device=args.device, workers=args.workers,
                          seed=args.seed, save_every=args.save_every, compile=args.compile,
                          max_minutes=args.max_minutes, picture_every=args.picture_every,
                          progress=not args.no_progress)
    except (TrainingError, DataError) as exc:
        raise CommandError(str(exc)) from exc
    if trainer.process.is_main:
        os.makedirs(log_dir, exist_ok=True)
        _save_config(config, log_dir)
        print(f"training {args.config} on {len(train_set)} videos ({trainer.sampler.batches_per_epoch} iterations per "
              f"epoch, batch {trainer.batch_size}, {trainer.process.world_size} process(es), {trainer.device}, "
              f"amp {args.amp}) from epoch {trainer.epoch} iteration {trainer.iteration}; logging to {log_dir}")
    try:
        result = trainer.fit()
    except DataError as exc:
        raise CommandError(str(exc)) from exc
    if trainer.process.is_main:
        skipped = getattr(getattr(train_set, "dataset", train_set), "skipped", 0)
        note = f"; skipped {skipped} unreadable video load(s) (--skip-bad)" if skipped else ""
        print(f"{result.stopped}: {result.iteration} iterations, epoch {result.epoch}, "
              f"{result.videos_per_second:.2f} videos/s; checkpoint {result.checkpoint}{note}")
    return 0


def _save_config(config, log_dir) -> None:
    import yaml

    from fastmotion.io.video import atomic_path

    path = os.path.join(log_dir, "config.yaml")
    if os.path.exists(path):
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)
