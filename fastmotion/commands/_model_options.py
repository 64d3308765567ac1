"""Options shared by the commands: which model, where it runs, in which precision (animate, demo,
live: :func:`add_model_options`); which config, data and device (train, reconstruct:
:func:`add_config_options`); and turning their loading errors into one line."""
from __future__ import annotations

import os

from fastmotion.cli import CommandError


def add_model_options(p, checkpoint: bool = True) -> None:
    if checkpoint:
        p.add_argument("--config", help="model config: a packaged name (vox, taichi, ...) or a YAML path "
                                         "(default: the built-in demo model; a fastmotion checkpoint carries its own)")
        p.add_argument("--checkpoint", help="a Monkey-Net checkpoint (.pth.tar, original or fastmotion format)")
        motion = p.add_mutually_exclusive_group()
        motion.add_argument("--relative", dest="relative", action="store_true", default=True,
                            help="relative motion: the driving keypoints' displacement from the anchor frame moves "
                                 "the source's keypoints, keeping its proportions (default)")
        motion.add_argument("--absolute", dest="relative", action="store_false",
                            help="absolute motion: the source's keypoints go where the driving keypoints are")
        p.add_argument("--adapt-variance", action="store_true",
                       help="adapt the keypoint covariances to the source (the original's adapt_variance)")
    _add_device_option(p)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="precision: fp16 / bf16 autocast on CUDA; bf16 on CPUs with bfloat16 instructions")
    p.add_argument("--cuda-graphs", action="store_true", help="replay the per-frame step as a CUDA graph (CUDA)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the per-frame step (experimental: the fast path's weight caches break the "
                        "graph, so on CPU it runs mostly eager after a long first frame)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads (default: torch's; small frames on a busy machine run faster with fewer)")


def _add_device_option(p) -> None:
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")


def add_config_options(p, checkpoint_help: str) -> None:
    """--config (required), --checkpoint, --data and --device of the commands that read a dataset."""
    p.add_argument("--config", required=True, help="config: a packaged name (shapes, taichi, ...) or a YAML path")
    p.add_argument("--checkpoint", help=checkpoint_help)
    p.add_argument("--data", help="the data folder (default: the config's dataset_params.root_dir)")
    _add_device_option(p)


def load_config_option(args):
    """The config that :func:`add_config_options`' options name, after checking that --checkpoint
    and --data exist."""
    from fastmotion.config import load_config

    if args.checkpoint is not None and not os.path.isfile(args.checkpoint):
        raise CommandError(f"--checkpoint {args.checkpoint}: no such file")
    if args.data is not None and not os.path.isdir(args.data):
        raise CommandError(f"--data {args.data}: no such folder")
    try:
        return load_config(args.config)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        raise CommandError(f"--config {args.config}: {exc}") from exc


def _exists(path, what):
    if path is not None and not os.path.exists(path):
        raise CommandError(f"{what} {path}: no such file")


def build_animator(args, demo: bool = False):
    """The Animator the options ask for (the demo model when neither --config nor --checkpoint)."""
    import torch

    from fastmotion.inference import Animator

    if args.threads is not None:
        if args.threads <= 0:
            raise CommandError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    config = getattr(args, "config", None)
    checkpoint = getattr(args, "checkpoint", None)
    _exists(checkpoint, "--checkpoint")
    if config is not None and (os.sep in config or config.endswith((".yaml", ".yml"))):
        _exists(config, "--config")
    if config is not None and checkpoint is None:
        raise CommandError("--config needs --checkpoint (without both, the built-in demo model is used)")
    try:
        return Animator.from_checkpoint(config, checkpoint, device=args.device, dtype=args.dtype,
                                        relative=getattr(args, "relative", True),
                                        adapt_variance=getattr(args, "adapt_variance", False),
                                        cuda_graphs=args.cuda_graphs, compile=args.compile)
    except (FileNotFoundError, ValueError, TypeError, RuntimeError) as exc:
        raise CommandError(" ".join(str(exc).split())) from exc
