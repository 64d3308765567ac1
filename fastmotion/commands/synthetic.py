"""``fastmotion synthetic``: write the project's seeded moving-shapes videos (PNG strips) for training and tests."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("synthetic", help="write seeded moving-shapes videos (PNG frame strips) into DIR/train and DIR/test")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write train/ and test/ into")
    p.add_argument("--train", type=int, default=1000, metavar="N", help="number of training videos (default 1000)")
    p.add_argument("--test", type=int, default=100, metavar="N", help="number of test videos (default 100)")
    p.add_argument("--frames", type=int, default=32, help="frames per video (default 32)")
    p.add_argument("--size", type=int, default=64, help="frame width and height in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same videos (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from fastmotion.cli import CommandError
    from fastmotion.data.synthetic import write_synthetic_videos

    if args.train < 0 or args.test < 0:
        raise CommandError(f"--train and --test must be >= 0, got --train {args.train} --test {args.test}")
    if args.frames < 1:
        raise CommandError(f"--frames must be >= 1, got {args.frames}")
    if args.size < 8:
        raise CommandError(f"--size must be >= 8 pixels, got {args.size}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CommandError(f"--out {args.out}: exists and is not a folder")
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=args.train + args.test, unit="video", desc="synthetic")
    try:
        train, test = write_synthetic_videos(args.out, args.train, args.test, frames=args.frames, size=args.size,
                                             seed=args.seed, progress=None if bar is None else lambda d, t: bar.update(1))
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {len(train)} training and {len(test)} test videos ({args.frames} frames of {args.size}x{args.size}, "
          f"seed {args.seed}) to {os.path.join(args.out, 'train')} and {os.path.join(args.out, 'test')}")
    print(f"read them with image_shape: [{args.size}, {args.size}, 3]")
    return 0
