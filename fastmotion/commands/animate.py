"""``fastmotion animate``: a source image and a driving video in, the animated video out."""
from __future__ import annotations

import os
import sys
import time

from fastmotion.cli import CommandError
from fastmotion.commands._model_options import add_model_options, build_animator


def add_parser(sub) -> None:
    p = sub.add_parser("animate", help="animate a source image with a driving video",
                       description="Animate --source with the motion of --driving and write --out (gif, png/jpg "
                                   "frame strip, mp4/webm/mov/mkv/avi with the 'video' extra). Without --config and "
                                   "--checkpoint the built-in demo model runs.")
    p.add_argument("--source", required=True, help="the image to animate (a frame strip: see --source-frame)")
    p.add_argument("--driving", required=True,
                   help="the driving video: gif, mp4/webm/..., a png/jpg frame strip, or a folder of frames")
    p.add_argument("--out", required=True, help="output video; the extension picks the format")
    add_model_options(p)
    p.add_argument("--best-frame", action="store_true",
                   help="anchor relative motion on the driving frame whose pose is closest to the source's "
                        "(default: the first frame)")
    p.add_argument("--anchor", type=int, default=None, metavar="N", help="anchor on driving frame N instead")
    p.add_argument("--source-frame", type=int, default=0, metavar="N",
                   help="when --source is a frame strip or a video: which frame (default 0)")
    p.add_argument("--side-by-side", action="store_true", help="write source | driving | result rows")
    p.add_argument("--show-keypoints", action="store_true", help="draw the keypoints")
    p.add_argument("--fps", type=float, default=None,
                   help="output frames per second (default: the driving video's, else 25)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def check_output_path(path: str) -> None:
    from fastmotion.io.video import VIDEO_EXTENSIONS

    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path) or ext not in VIDEO_EXTENSIONS:
        raise CommandError(f"--out {path}: expected a file name ending in {', '.join(VIDEO_EXTENSIONS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"--out {path}: the folder {folder} does not exist")
    if ext not in (".gif", ".png", ".jpg", ".jpeg"):
        try:
            import av  # noqa: F401
        except ImportError:
            raise CommandError(f"--out {path}: writing {ext} needs PyAV: pip install 'fastmotion[video]' (or write "
                               ".gif / .png)") from None


def read_source(path: str, frame_size, index: int = 0):
    from fastmotion.io import read_video, strip_frame_shape

    if not os.path.exists(path):
        raise CommandError(f"--source {path}: no such file")
    try:
        return read_video(path, strip_frame_shape(path, frame_size), frames=[index])[0]
    except ValueError as exc:
        raise CommandError(f"--source {exc}") from exc


def progress(total, quiet, desc):
    from tqdm import tqdm

    return tqdm(total=total, disable=quiet, desc=desc, unit="frame", file=sys.stderr, leave=False,
                dynamic_ncols=True)


def run(args) -> int:
    if args.anchor is not None and args.best_frame:
        raise CommandError("--anchor and --best-frame pick the anchor frame two ways; pass one")
    if args.fps is not None and not args.fps > 0:
        raise CommandError(f"--fps must be positive, got {args.fps}")
    if not os.path.exists(args.driving):
        raise CommandError(f"--driving {args.driving}: no such file")
    check_output_path(args.out)

    from fastmotion.inference.drawing import animation_frame
    from fastmotion.io import VideoError, count_frames, iter_frames, strip_frame_shape, video_fps, write_video

    animator = build_animator(args)
    source = read_source(args.source, animator.frame_size, args.source_frame)
    try:
        shape = strip_frame_shape(args.driving, animator.frame_size)
        total = count_frames(args.driving, shape)
        fps = args.fps or video_fps(args.driving) or 25.0
    except VideoError as exc:
        raise CommandError(f"--driving {exc}") from exc
    if total == 0:
        raise CommandError(f"--driving {args.driving}: the video has no frames")
    if args.anchor is not None and not 0 <= args.anchor < total:
        raise CommandError(f"--anchor {args.anchor}: the driving video has {total} frames (0..{total - 1})")

    animator.set_source(source)
    shown_source, kp_source = animator.source, animator.kp_source
    try:
        if args.best_frame:
            with progress(total, args.quiet, "best frame") as bar:
                def frames():
                    for frame in iter_frames(args.driving, shape):
                        bar.update(1)
                        yield frame
                anchor = animator.best_frame(frames())
            print(f"anchor: driving frame {anchor} (closest pose to the source's)", file=sys.stderr)
        else:
            anchor = args.anchor
        if anchor is not None:
            for i, frame in enumerate(iter_frames(args.driving, shape)):
                if i == anchor:
                    animator.set_anchor(frame)
                    break
        out = []
        model_time = 0.0
        start = time.perf_counter()
        with progress(total, args.quiet, "animate") as bar:
            for frame in iter_frames(args.driving, shape):
                t0 = time.perf_counter()
                result = animator.step(frame)
                model_time += time.perf_counter() - t0
                out.append(animation_frame(result, shown_source, kp_source, frame, args.side_by_side,
                                           args.show_keypoints))
                bar.update(1)
        elapsed = time.perf_counter() - start
        if not out:
            raise CommandError(f"--driving {args.driving}: the video has no frames")
        write_video(args.out, out, fps=fps)
    except VideoError as exc:
        raise CommandError(str(exc)) from exc
    print(f"wrote {args.out}: {len(out)} frames of {out[0].shape[1]}x{out[0].shape[0]} at {fps:g} fps")
    print(f"{len(out) / elapsed:.1f} frames/s ({len(out) / model_time:.1f} frames/s in the model; "
          f"{animator.device} {args.dtype})")
    return 0
