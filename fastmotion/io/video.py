"""Reading and writing videos as ``(T, H, W, 3)`` uint8 arrays.

Formats, by file name:

- ``.png`` / ``.jpg`` / ``.jpeg``: a frame strip, frames side by side along the width, as the
  original Monkey-Net ``read_video`` stores videos (split into tiles of ``frame_shape`` width); a
  single image is a strip of one frame.
- ``.gif``: an animated (or still) GIF.
- ``.mp4`` / ``.mov`` / ``.webm`` / ``.avi`` / ``.mkv``: decoded with PyAV (the optional extra
  ``fastmotion[video]``).
- a folder: its image files in name order, one frame each.

Gray frames become RGB, alpha is dropped. Every failure is a :class:`VideoError` that names the
file and the cause. Writers build the file under a temporary name beside the target and rename
it at the end, so a failed or interrupted write never leaves half a file.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from fastmotion.io.permissions import make_ordinary

PathLike = Union[str, os.PathLike]

STRIP_EXTENSIONS = (".png", ".jpg", ".jpeg")
GIF_EXTENSIONS = (".gif",)
CONTAINER_EXTENSIONS = (".mp4", ".mov", ".webm", ".avi", ".mkv")
FRAME_FILE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_EXTENSIONS = STRIP_EXTENSIONS + GIF_EXTENSIONS + CONTAINER_EXTENSIONS

# mp4 (H.264) and webm (VP9) want even sizes and a widely readable pixel format.
_CONTAINER_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".avi": "mpeg4", ".webm": "libvpx-vp9"}


class VideoError(ValueError):
    """A video or image that cannot be read or written; the message names the file."""


def video_kind(path: PathLike) -> str:
    """``'strip'``, ``'gif'``, ``'container'`` or ``'folder'``; a :class:`VideoError` for anything else."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return "folder"
    ext = os.path.splitext(path)[1].lower()
    if ext in STRIP_EXTENSIONS:
        return "strip"
    if ext in GIF_EXTENSIONS:
        return "gif"
    if ext in CONTAINER_EXTENSIONS:
        return "container"
    raise VideoError(f"{path}: unknown video format {ext or '(no extension)'!r}; expected a folder of frames "
                     f"or one of {', '.join(VIDEO_EXTENSIONS)}")


def is_video_path(path: PathLike) -> bool:
    """Whether ``path`` names something :func:`read_video` reads (by extension, or a folder)."""
    try:
        video_kind(path)
        return True
    except VideoError:
        return False


def to_rgb_uint8(frame: np.ndarray, where: str = "frame") -> np.ndarray:
    """``(H, W)``, ``(H, W, 1|3|4)`` uint8 or float in [0, 1] -> ``(H, W, 3)`` uint8 (gray repeated, alpha dropped)."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 2, 3, 4):
        raise VideoError(f"{where}: expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                         f"got {tuple(frame.shape)}")
    if frame.shape[-1] in (1, 2):  # gray, gray + alpha
        frame = np.repeat(frame[..., :1], 3, axis=-1)
    frame = frame[..., :3]
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    if np.issubdtype(frame.dtype, np.floating):
        return np.ascontiguousarray((np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    if frame.dtype == np.uint16:
        return np.ascontiguousarray((frame >> 8).astype(np.uint8))
    if frame.dtype == np.bool_:
        return np.ascontiguousarray(frame.astype(np.uint8) * 255)
    raise VideoError(f"{where}: unsupported pixel type {frame.dtype}")


def _open_image(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
    except FileNotFoundError:
        raise VideoError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise VideoError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except OSError as exc:
        raise VideoError(f"{path}: cannot open ({exc})") from None
    return image


def _decode_image(path: str) -> np.ndarray:
    image = _open_image(path)
    try:
        with image:
            image.load()
            if image.mode not in ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise VideoError(f"{path}: cannot decode ({exc})") from None
    return to_rgb_uint8(array, path)


def read_image(path: PathLike) -> np.ndarray:
    """One image file -> ``(H, W, 3)`` uint8."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a folder, expected an image file")
    return _decode_image(path)


def _strip_tile_width(path: str, width: int, height: int, frame_shape: Optional[Sequence[int]]) -> int:
    if frame_shape is None:
        return width  # a single image
    fh, fw = int(frame_shape[0]), int(frame_shape[1])
    if height != fh or fw <= 0 or width % fw != 0:
        raise VideoError(f"{path}: a frame strip of size {width}x{height} (WxH) cannot be split into "
                         f"{fw}x{fh} frames (frame_shape {tuple(frame_shape)[:2]}); expected a height of {fh} "
                         f"and a width that is a multiple of {fw}")
    return fw


def _folder_files(path: str) -> List[str]:
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise VideoError(f"{path}: cannot list the folder ({exc.strerror or exc})") from None
    files = [os.path.join(path, n) for n in names
             if n.lower().endswith(FRAME_FILE_EXTENSIONS) and not n.startswith(".")]
    return files


def _container_module(path: str):
    try:
        import av
    except ImportError:
        raise VideoError(f"{path}: reading and writing {os.path.splitext(path)[1]} files needs PyAV: "
                         f"pip install 'fastmotion[video]' (or: pip install av)") from None
    return av


@contextlib.contextmanager
def _open_container(path: str, av):
    try:
        container = av.open(path)
    except FileNotFoundError:
        raise VideoError(f"{path}: no such file") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: not a readable video ({exc})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream")
        yield container
    finally:
        container.close()


def _iter_container(path: str) -> Iterator[np.ndarray]:
    av = _container_module(path)
    with _open_container(path, av) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise VideoError(f"{path}: cannot decode ({exc})") from None


def _iter_gif(path: str) -> Iterator[np.ndarray]:
    from PIL import ImageSequence

    image = _open_image(path)
    with image:
        try:
            for frame in ImageSequence.Iterator(image):
                yield to_rgb_uint8(np.asarray(frame.convert("RGBA")), path)
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise VideoError(f"{path}: cannot decode ({exc})") from None


def iter_frames(path: PathLike, frame_shape: Optional[Sequence[int]] = None) -> Iterator[np.ndarray]:
    """The frames of a video one by one, each ``(H, W, 3)`` uint8 (a container is decoded as it is read)."""
    path = os.fspath(path)
    kind = video_kind(path)
    if kind == "strip":
        strip = _decode_image(path)
        tile = _strip_tile_width(path, strip.shape[1], strip.shape[0], frame_shape)
        for x in range(0, strip.shape[1], tile):
            yield strip[:, x:x + tile]
    elif kind == "gif":
        yield from _iter_gif(path)
    elif kind == "container":
        yield from _iter_container(path)
    else:
        for name in _folder_files(path):
            yield _decode_image(name)


def count_frames(path: PathLike, frame_shape: Optional[Sequence[int]] = None) -> int:
    """Number of frames, reading headers only where the format allows it."""
    path = os.fspath(path)
    kind = video_kind(path)
    if kind == "strip":
        image = _open_image(path)
        with image:
            width, height = image.size
        return width // _strip_tile_width(path, width, height, frame_shape)
    if kind == "gif":
        image = _open_image(path)
        with image:
            return int(getattr(image, "n_frames", 1))
    if kind == "folder":
        return len(_folder_files(path))
    av = _container_module(path)
    with _open_container(path, av) as container:
        frames = int(container.streams.video[0].frames or 0)
    return frames if frames > 0 else sum(1 for _ in _iter_container(path))


def read_video(path: PathLike, frame_shape: Optional[Sequence[int]] = None,
               frames: Optional[Iterable[int]] = None) -> np.ndarray:
    """A video as ``(T, H, W, 3)`` uint8.

    ``frame_shape``: ``(H, W[, C])`` of one frame of a strip (the config's ``image_shape``); a strip
    whose size does not split into such frames is an error. ``frames``: indices to keep (in that
    order, repeats allowed), so that a clip sampled from a long video is not held whole in memory.
    """
    path = os.fspath(path)
    wanted = None if frames is None else [int(i) for i in frames]
    if wanted is not None and not wanted:
        raise VideoError(f"{path}: no frame indices asked for")
    kept = {}
    count = 0
    if wanted is not None and video_kind(path) == "folder":
        files = _folder_files(path)
        count = len(files)
        for i in sorted(set(wanted)):
            if 0 <= i < count:
                kept[i] = _decode_image(files[i])
    else:
        last = None if wanted is None else max(wanted)
        needed = None if wanted is None else set(wanted)
        for i, frame in enumerate(iter_frames(path, frame_shape)):
            count = i + 1
            if needed is None or i in needed:
                kept[i] = frame
            if last is not None and i >= last:
                break
    if count == 0:
        raise VideoError(f"{path}: has no frames")
    order = list(range(count)) if wanted is None else wanted
    missing = [i for i in order if i not in kept]
    if missing:
        raise VideoError(f"{path}: frame {missing[0]} asked for, but the video has {count} frames")
    shapes = {kept[i].shape for i in kept}
    if len(shapes) > 1:
        raise VideoError(f"{path}: frames of different sizes {sorted(shapes)}")
    return np.stack([kept[i] for i in order])


def as_uint8_frames(frames, where: str = "frames") -> np.ndarray:
    """``(T, H, W[, C])`` uint8 or float in [0, 1] (numpy or torch) -> ``(T, H, W, 3)`` uint8."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim not in (3, 4) or frames.shape[0] == 0:
        raise VideoError(f"{where}: expected (T, H, W[, C]) frames with T > 0, got shape {tuple(frames.shape)}")
    return np.stack([to_rgb_uint8(f, where) for f in frames])


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """A temporary path beside ``path`` (same extension) that becomes ``path`` when the block succeeds."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise VideoError(f"{path}: the folder {folder} does not exist")
    ext = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        make_ordinary(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _write_container(tmp: str, path: str, frames: np.ndarray, fps: float, quality: Optional[int]) -> None:
    av = _container_module(path)
    from fractions import Fraction

    ext = os.path.splitext(path)[1].lower()
    codec = _CONTAINER_CODECS[ext]
    height, width = frames.shape[1:3]
    pad_h, pad_w = height % 2, width % 2  # yuv420p needs even sizes
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(tmp, mode="w", format={".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}.get(ext, "mp4")) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(18 if quality is None else quality), "preset": "medium"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_video(path: PathLike, frames, fps: float = 25.0, quality: Optional[int] = None) -> str:
    """Write ``(T, H, W[, C])`` frames (uint8, or float in [0, 1]) to ``path``, atomically.

    The extension picks the format: ``.gif``; ``.png``/``.jpg`` (a frame strip, the format the
    original code reads); ``.mp4``/``.mov``/``.mkv`` (H.264), ``.webm`` (VP9), ``.avi`` (MPEG-4)
    through PyAV. Returns ``path``.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path) or ext not in VIDEO_EXTENSIONS:
        raise VideoError(f"{path}: cannot write a video there; expected a file name ending in "
                         f"{', '.join(VIDEO_EXTENSIONS)}")
    if not (fps > 0):
        raise VideoError(f"{path}: fps must be positive, got {fps}")
    frames = as_uint8_frames(frames, path)
    with atomic_path(path) as tmp:
        if ext in GIF_EXTENSIONS:
            from PIL import Image

            images = [Image.fromarray(f) for f in frames]
            duration = max(int(round(1000.0 / fps)), 20)  # browsers clamp shorter delays
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration,
                           loop=0, disposal=1)
        elif ext in STRIP_EXTENSIONS:
            from PIL import Image

            strip = np.concatenate(list(frames), axis=1)
            Image.fromarray(strip).save(tmp, format="PNG" if ext == ".png" else "JPEG",
                                        **({} if ext == ".png" else {"quality": 95}))
        else:
            _write_container(tmp, path, frames, fps, quality)
    return path


def write_image(path: PathLike, image) -> str:
    """Write one ``(H, W[, C])`` image (uint8 or float in [0, 1]) as PNG/JPEG, atomically."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in STRIP_EXTENSIONS:
        raise VideoError(f"{path}: expected an image file name ending in {', '.join(STRIP_EXTENSIONS)}")
    frame = to_rgb_uint8(image.detach().cpu().numpy() if hasattr(image, "detach") else image, path)
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(frame).save(tmp, format="PNG" if ext == ".png" else "JPEG")
    return path


def frame_size(path: PathLike, frame_shape: Optional[Sequence[int]] = None) -> Tuple[int, int]:
    """``(H, W)`` of one frame."""
    return tuple(read_video(path, frame_shape, frames=[0]).shape[1:3])


def strip_frame_shape(path: PathLike, preferred: Optional[Sequence[int]] = None) -> Optional[Tuple[int, int]]:
    """How to split an image file into frames when nobody said: ``preferred`` ``(H, W)`` if the
    image is a strip of such frames, else square frames if its width is a multiple of its height,
    else the whole image as one frame. None for anything that is not an image file."""
    path = os.fspath(path)
    if video_kind(path) != "strip":
        return None
    image = _open_image(path)
    with image:
        width, height = image.size
    if preferred is not None:
        fh, fw = int(preferred[0]), int(preferred[1])
        if height == fh and fw > 0 and width % fw == 0:
            return fh, fw
    if height > 0 and width % height == 0:
        return height, height
    return height, width


def video_fps(path: PathLike) -> Optional[float]:
    """Frames per second stored in a GIF or a container; None where the format has none."""
    path = os.fspath(path)
    kind = video_kind(path)
    if kind == "gif":
        image = _open_image(path)
        with image:
            duration = image.info.get("duration")
        return 1000.0 / duration if duration else None
    if kind == "container":
        av = _container_module(path)
        with _open_container(path, av) as container:
            rate = container.streams.video[0].average_rate
        return float(rate) if rate else None
    return None
