"""``fastmotion reconstruct``: the original reconstruction evaluation on the test split.

Every test video is re-generated from its first frame; prints the mean L1 (the paper's metric),
writes ``reconstruction.csv`` (per-video L1) and one side-by-side video per test video (real |
reconstruction) into --out.
"""
from __future__ import annotations

import csv
import os

from fastmotion.cli import CommandError
from fastmotion.commands._model_options import add_config_options, load_config_option


def add_parser(sub) -> None:
    p = sub.add_parser("reconstruct", help="reconstruction L1 of a model on the test split (the paper's metric)",
                       description="The original reconstruction protocol: each test video re-generated from its "
                                   "first frame; prints the mean L1, writes per-video L1 (CSV) and side-by-side "
                                   "videos (real | reconstruction).")
    add_config_options(p, checkpoint_help="the model (.pth.tar); without it, an untrained model (seeded by "
                                          "--seed) is evaluated, the baseline a trained one is compared with")
    p.add_argument("--out", help="output folder (default: reconstruction/ beside the checkpoint, else ./reconstruction)")
    p.add_argument("--num-videos", type=int, help="evaluate only the first N test videos (default: the config's "
                                                  "reconstruction_params.num_videos, else all)")
    p.add_argument("--format", default=None, choices=[".gif", ".mp4", ".png"],
                   help="side-by-side video format (default: the config's reconstruction_params.format, else .gif)")
    p.add_argument("--no-videos", action="store_true", help="write only the CSV")
    p.add_argument("--seed", type=int, default=0, help="seed of the untrained model's weights (no --checkpoint)")
    p.add_argument("--skip-bad", action="store_true", help="warn about and skip unreadable videos")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from fastmotion.checkpoint import load_checkpoint
    from fastmotion.data import DataError, datasets_from_config
    from fastmotion.inference.drawing import side_by_side
    from fastmotion.io import write_video
    from fastmotion.io.video import atomic_path
    from fastmotion.models.build import build_models
    from fastmotion.train.reconstruction import evaluate_reconstruction, mean_l1
    from fastmotion.train.trainer import TrainingError, resolve_device

    if args.num_videos is not None and args.num_videos < 1:
        raise CommandError(f"--num-videos must be >= 1, got {args.num_videos}")
    config = load_config_option(args)
    try:
        device = resolve_device(args.device)
    except TrainingError as exc:
        raise CommandError(str(exc)) from exc
    try:
        _, test_set = datasets_from_config(config, root_dir=args.data, skip_bad=args.skip_bad)
    except DataError as exc:
        raise CommandError(f"--data: {exc}") from exc
    if len(test_set) == 0:
        raise CommandError(f"--data: the test split of {test_set.root_dir} has no videos")

    torch.manual_seed(args.seed)
    kp_detector, generator, _ = build_models(config)
    if args.checkpoint is not None:
        try:
            load_checkpoint(args.checkpoint, config, kp_detector=kp_detector, generator=generator,
                            discriminator=None)
        except (RuntimeError, ValueError) as exc:
            raise CommandError(f"--checkpoint: {exc}") from exc
    kp_detector.to(device)
    generator.to(device)

    rec_params = config.get("reconstruction_params") or {}
    num_videos = args.num_videos if args.num_videos is not None else rec_params.get("num_videos")
    fmt = args.format or rec_params.get("format") or ".gif"
    out = args.out or (os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "reconstruction")
                       if args.checkpoint else "reconstruction")
    if os.path.exists(out) and not os.path.isdir(out):
        raise CommandError(f"--out {out}: exists and is not a folder")
    os.makedirs(out, exist_ok=True)

    def write_pair(name, real, generated):
        if args.no_videos:
            return
        to_uint8 = lambda v: (v.detach().float().clamp(0, 1).permute(1, 2, 3, 0).cpu().numpy() * 255 + 0.5
                              ).astype("uint8")
        frames = [side_by_side([r, g]) for r, g in zip(to_uint8(real), to_uint8(generated))]
        write_video(os.path.join(out, os.path.splitext(name)[0] + fmt), frames, fps=10)

    try:
        scores = evaluate_reconstruction(kp_detector, generator, test_set, device=device, num_videos=num_videos,
                                         on_video=write_pair)
    except DataError as exc:
        raise CommandError(str(exc)) from exc
    csv_path = os.path.join(out, "reconstruction.csv")
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "l1", "frames"])
        for s in scores:
            writer.writerow([s.name, f"{s.l1:.6f}", s.frames])
    what = args.checkpoint if args.checkpoint else f"untrained model (seed {args.seed})"
    print(f"reconstruction L1 {mean_l1(scores):.5f} over {len(scores)} test videos ({what})")
    print(f"wrote {os.path.abspath(csv_path)}" + ("" if args.no_videos else f" and {len(scores)} {fmt} videos"))
    return 0
