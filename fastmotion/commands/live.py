"""``fastmotion live``: animate a source image with a camera (or a video file standing in for one).

Frames are read with OpenCV (the ``live`` extra: ``opencv-python``, whose window needs a desktop;
servers and CI use ``opencv-python-headless``, which has no window, through the ``live-headless``
extra, with ``--out``). The result is shown in a window (q / Esc quits, r re-anchors the motion on
the current frame) and / or written to ``--out``; frames/s is overlaid and printed.
"""
from __future__ import annotations

import os
import sys
import time

from fastmotion.cli import CommandError
from fastmotion.commands._model_options import add_model_options, build_animator

WINDOW = "fastmotion live"
MIN_SHOWN_HEIGHT = 256


def add_parser(sub) -> None:
    p = sub.add_parser("live", help="animate a source image with a camera or a video file, live",
                       description="Read driving frames from a camera (--camera) or a video file (--driving) with "
                                   "OpenCV, animate --source with them and show the result in a window and / or "
                                   "write it to --out. Needs OpenCV: pip install 'fastmotion[live]' (window) or "
                                   "'fastmotion[live-headless]' (servers: --out only).")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--camera", type=int, default=None, metavar="INDEX", help="camera index (default 0)")
    what.add_argument("--driving", help="a video file read like a camera")
    p.add_argument("--source", help="the image to animate (default: the built-in demo's, with the demo model)")
    p.add_argument("--out", help="also write the result video here (gif, png strip, mp4, ...)")
    p.add_argument("--no-window", action="store_true", help="do not open a window (needs --out)")
    p.add_argument("--side-by-side", action="store_true", help="show driving | result")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument("--fps", type=float, default=25.0, help="frames per second of --out (default 25)")
    p.add_argument("--no-overlay", action="store_true", help="no frames/s text on the frames")
    add_model_options(p)
    p.set_defaults(func=run)


def _cv2():
    try:
        import cv2
    except ImportError:
        raise CommandError("fastmotion live reads frames with OpenCV: pip install 'fastmotion[live]' (with a window) "
                           "or 'fastmotion[live-headless]' (servers, --out only)") from None
    return cv2


def _open_window(cv2):
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise CommandError("this OpenCV build has no window support (opencv-python-headless?): pip install "
                           "'fastmotion[live]' for a window, or pass --out FILE --no-window") from None


def overlay_fps(cv2, frame, fps: float):
    text = f"{fps:5.1f} frames/s"
    cv2.putText(frame, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(frame, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def run(args) -> int:
    if args.no_window and not args.out:
        raise CommandError("--no-window needs --out (otherwise nothing would come out)")
    if args.max_frames is not None and args.max_frames <= 0:
        raise CommandError(f"--max-frames must be positive, got {args.max_frames}")
    if args.driving is not None and not os.path.exists(args.driving):
        raise CommandError(f"--driving {args.driving}: no such file")
    if args.out:
        from fastmotion.commands.animate import check_output_path

        check_output_path(args.out)
    cv2 = _cv2()
    import numpy as np

    from fastmotion.commands.animate import read_source
    from fastmotion.inference.drawing import fit, side_by_side
    from fastmotion.io import write_video

    source_path = args.source
    if source_path is None:
        if args.config or args.checkpoint:
            raise CommandError("--source is needed with your own model (the demo source fits only the demo model)")
        from fastmotion.inference import demo_assets

        try:
            source_path = demo_assets(("source",)).source
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from exc
    animator = build_animator(args)
    animator.set_source(read_source(source_path, animator.frame_size))
    window = not args.no_window
    if window:
        _open_window(cv2)

    capture = cv2.VideoCapture(args.driving if args.driving is not None else (args.camera or 0))
    if not capture.isOpened():
        what = f"--driving {args.driving}" if args.driving is not None else f"--camera {args.camera or 0}"
        raise CommandError(f"{what}: OpenCV cannot open it")
    written, count, rate = [], 0, 0.0
    start = last = time.perf_counter()
    try:
        while args.max_frames is None or count < args.max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            result = animator.step(frame).image
            now = time.perf_counter()
            rate = 1.0 / max(now - last, 1e-9) if count == 0 else 0.9 * rate + 0.1 / max(now - last, 1e-9)
            last = now
            count += 1
            shown = side_by_side([fit(frame, result.shape[0]), result]) if args.side_by_side else result
            # enlarged so that the frames/s text stays readable on small frames
            shown = np.array(fit(shown, max(MIN_SHOWN_HEIGHT, shown.shape[0])))  # a writable copy
            if not args.no_overlay:
                shown = overlay_fps(cv2, shown, rate)
            if args.out:
                written.append(shown)
            if window:
                cv2.imshow(WINDOW, shown[..., ::-1])
                key = cv2.waitKey(1) & 0xFF
                if key in (ord("q"), 27):
                    break
                if key == ord("r"):
                    animator.set_anchor(frame)
            if count % 25 == 0:
                print(f"{count} frames, {rate:.1f} frames/s", file=sys.stderr)
    finally:
        capture.release()
        if window:
            cv2.destroyAllWindows()
    elapsed = time.perf_counter() - start
    if count == 0:
        what = args.driving if args.driving is not None else f"camera {args.camera or 0}"
        raise CommandError(f"{what}: no frames could be read")
    if args.out:
        write_video(args.out, written, fps=args.fps)
        print(f"wrote {args.out}: {count} frames")
    print(f"{count} frames in {elapsed:.2f} s: {count / elapsed:.1f} frames/s ({animator.device} {args.dtype})")
    return 0
