"""``fastmotion demo``: animate the built-in source image with the built-in driving clip.

Writes a side-by-side video (source | driving with its keypoints | result) and a PNG contact sheet of
a few frames into the output folder, and says where.
"""
from __future__ import annotations

import os
import time

from fastmotion.cli import CommandError
from fastmotion.commands._model_options import add_model_options, build_animator

DEFAULT_OUT = "fastmotion-demo"
SHEET_ROWS = 6
MIN_PANEL_HEIGHT = 128  # small demo frames are enlarged (nearest neighbour) to at least this


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="animate the built-in demo (no arguments needed)",
                       description="Animate the built-in source image with the built-in driving clip using the "
                                   "built-in model; writes demo.gif (and demo.mp4 with PyAV), a side-by-side video, "
                                   "and contact_sheet.png (source | driving with keypoints | result) into --out.")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: ./{DEFAULT_OUT}, created)")
    add_model_options(p, checkpoint=False)
    p.set_defaults(func=run)


def _enlarge(frame, factor):
    import numpy as np

    return frame if factor == 1 else np.kron(frame, np.ones((factor, factor, 1), dtype=frame.dtype))


def run(args) -> int:
    from fastmotion.inference import demo_assets
    from fastmotion.inference.drawing import contact_sheet, draw_keypoints, side_by_side
    from fastmotion.io import VideoError, read_video, strip_frame_shape, write_image, write_video

    try:
        assets = demo_assets()
    except FileNotFoundError as exc:
        raise CommandError(str(exc)) from exc
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise CommandError(f"--out {args.out}: exists and is not a folder")
    args.config = args.checkpoint = None
    animator = build_animator(args)
    try:
        source = read_video(assets.source, strip_frame_shape(assets.source, animator.frame_size), frames=[0])[0]
        driving = read_video(assets.driving, strip_frame_shape(assets.driving, animator.frame_size))
    except VideoError as exc:
        raise CommandError(f"the built-in demo clip is unreadable: {exc}") from exc

    animator.set_source(source)
    start = time.perf_counter()
    results = [animator.step(frame) for frame in driving]
    elapsed = time.perf_counter() - start

    factor = max(1, -(-MIN_PANEL_HEIGHT // animator.frame_size[0]))
    shown_source, kp_source = animator.source, animator.kp_source
    video = [side_by_side([_enlarge(shown_source, factor), draw_keypoints(_enlarge(d, factor), r.kp_driving),
                           _enlarge(r.image, factor)]) for r, d in zip(results, driving)]
    picks = sorted({round(i * (len(results) - 1) / max(SHEET_ROWS - 1, 1)) for i in range(SHEET_ROWS)})
    rows = []
    for i in picks:
        driving_with_kp = draw_keypoints(_enlarge(driving[i], factor), results[i].kp_driving)
        rows.append([draw_keypoints(_enlarge(shown_source, factor), kp_source), driving_with_kp,
                     _enlarge(results[i].image, factor)])

    os.makedirs(args.out, exist_ok=True)
    written = [write_video(os.path.join(args.out, "demo.gif"), video, fps=10)]
    try:
        import av  # noqa: F401
        written.append(write_video(os.path.join(args.out, "demo.mp4"), video, fps=10))
    except ImportError:
        pass
    sheet = contact_sheet(rows, titles=("source", "driving + keypoints", "result"))
    written.append(write_image(os.path.join(args.out, "contact_sheet.png"), sheet))
    print(f"animated {len(results)} frames at {animator.frame_size[1]}x{animator.frame_size[0]} in {elapsed:.2f} s "
          f"({len(results) / elapsed:.1f} frames/s, {animator.device} {args.dtype})")
    for path in written:
        print(f"wrote {os.path.abspath(path)}")
    return 0
