"""The project's own moving-shapes videos: seeded, a few coloured shapes, each with its own motion.

Each video is a dark background with 2-4 shapes (disc, square, triangle, ellipse, cross). Every shape
has a motion of its own: a smooth Lissajous translation, a constant-speed rotation and a slow
breathing scale, with random phases and amplitudes. Shapes carry a small off-centre mark so that
rotation is visible even for a disc. Edges are anti-aliased from the exact signed distance to each
shape, so frames are smooth at any size.

Videos are written as PNG frame strips (the original Monkey-Net format, readable by
:class:`fastmotion.data.FramesDataset` with ``image_shape=(size, size, 3)``). Video ``i`` of a split
depends only on ``(seed, split, i)``: asking for more videos never changes the earlier ones.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

import numpy as np

SHAPES = ("disc", "square", "triangle", "ellipse", "cross")
_SPLIT_IDS = {"train": 0, "test": 1}

# Saturated, well separated colours on a dark background (RGB in [0, 1]).
_PALETTE = np.array([
    [0.95, 0.30, 0.25], [0.25, 0.70, 0.95], [0.98, 0.80, 0.20], [0.35, 0.85, 0.40],
    [0.80, 0.40, 0.90], [0.98, 0.55, 0.15], [0.30, 0.40, 0.95], [0.95, 0.45, 0.70],
])


def _signed_distance(kind: str, x: np.ndarray, y: np.ndarray, r: float, aspect: float) -> np.ndarray:
    """Signed distance (negative inside) to a shape of radius ``r`` centred at the origin."""
    if kind == "disc":
        return np.hypot(x, y) - r
    if kind == "square":
        h = r * 0.85
        dx, dy = np.abs(x) - h, np.abs(y) - h
        return np.hypot(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)
    if kind == "triangle":  # equilateral, circumradius r: the largest of the three edge distances
        k = r * 0.5  # inradius
        d = -y - k
        for angle in (np.pi / 6, 5 * np.pi / 6):
            d = np.maximum(d, x * np.cos(angle) + y * np.sin(angle) - k)
        return d
    if kind == "ellipse":  # a first-order distance approximation, exact enough for anti-aliasing
        a, b = r, r * aspect
        f = np.hypot(x / a, y / b)
        grad = np.hypot(x / a ** 2, y / b ** 2) / np.maximum(f, 1e-6)
        return (f - 1.0) / np.maximum(grad, 1e-6)
    if kind == "cross":
        w, h = r * 0.32, r
        def box(px, py):
            dx, dy = np.abs(px) - h, np.abs(py) - w
            return np.hypot(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)
        return np.minimum(box(x, y), box(y, x))
    raise ValueError(f"shape kind must be one of {SHAPES}, got {kind!r}")


def _coverage(distance: np.ndarray) -> np.ndarray:
    """Pixel coverage from a signed distance in pixels (a one-pixel linear ramp: anti-aliased edges)."""
    return np.clip(0.5 - distance, 0.0, 1.0)


def _random_shapes(rng: np.random.Generator, size: int) -> List[dict]:
    count = int(rng.integers(2, 5))
    kinds = rng.choice(len(SHAPES), size=count, replace=False)
    colours = rng.choice(len(_PALETTE), size=count, replace=False)
    shapes = []
    for kind, colour in zip(kinds, colours):
        radius = size * rng.uniform(0.09, 0.16)
        margin = radius * 1.3 / size
        # Lissajous translation inside the frame: centre + amplitude * sin(2 pi f t + phase).
        amplitude = rng.uniform(0.08, 0.5 - margin, size=2)
        centre = np.array([rng.uniform(margin + a, 1 - margin - a) for a in amplitude])
        shapes.append(dict(
            kind=SHAPES[int(kind)], colour=_PALETTE[int(colour)], radius=radius,
            aspect=rng.uniform(0.45, 0.7), centre=centre * size, amplitude=amplitude * size,
            frequency=rng.uniform(0.3, 1.2, size=2) * rng.choice([-1, 1], size=2),
            phase=rng.uniform(0, 2 * np.pi, size=2),
            angle=rng.uniform(0, 2 * np.pi), spin=rng.uniform(0.2, 1.0) * rng.choice([-1, 1]),
            scale_amplitude=rng.uniform(0.0, 0.3), scale_frequency=rng.uniform(0.5, 1.5),
            scale_phase=rng.uniform(0, 2 * np.pi),
            mark_colour=np.clip(1.0 - _PALETTE[int(colour)] * 0.6, 0, 1),
        ))
    return shapes


def render_video(rng: np.random.Generator, frames: int = 32, size: int = 64) -> np.ndarray:
    """One random moving-shapes video as ``(frames, size, size, 3)`` uint8."""
    if frames < 1 or size < 8:
        raise ValueError(f"frames must be >= 1 and size >= 8, got frames={frames}, size={size}")
    shapes = _random_shapes(rng, size)
    background = np.array([0.06, 0.06, 0.09]) + rng.uniform(0, 0.06, size=3)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    video = np.empty((frames, size, size, 3), dtype=np.float64)
    # Time advances 1/32 per frame whatever `frames` is: a longer video continues the same motion.
    for t_index in range(frames):
        t = t_index / 32.0
        image = np.broadcast_to(background, (size, size, 3)).copy()
        for s in shapes:
            cx, cy = s["centre"] + s["amplitude"] * np.sin(2 * np.pi * s["frequency"] * t + s["phase"])
            theta = s["angle"] + s["spin"] * 2 * np.pi * t
            scale = 1.0 + s["scale_amplitude"] * np.sin(2 * np.pi * s["scale_frequency"] * t + s["scale_phase"])
            c, sn = np.cos(theta), np.sin(theta)
            # Pixel centres in the shape's own frame (inverse rotation, then inverse scale); distances
            # are scaled back to pixels.
            lx = (c * (xs - cx) + sn * (ys - cy)) / scale
            ly = (-sn * (xs - cx) + c * (ys - cy)) / scale
            alpha = _coverage(_signed_distance(s["kind"], lx, ly, s["radius"], s["aspect"]) * scale)
            image += alpha[..., None] * (s["colour"] - image)
            mark_r = s["radius"] * 0.22
            mark = _coverage((np.hypot(lx - s["radius"] * 0.45, ly) - mark_r) * scale) * alpha
            image += mark[..., None] * (s["mark_colour"] - image)
        video[t_index] = image
    return (np.clip(video, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of video ``index`` of ``split``: independent of every other video."""
    return np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index)])


def write_synthetic_videos(out_dir, num_train: int, num_test: int, frames: int = 32, size: int = 64,
                           seed: int = 0, progress: Optional[callable] = None) -> Tuple[List[str], List[str]]:
    """Write ``num_train`` / ``num_test`` moving-shapes videos as PNG strips into ``out_dir/train`` and
    ``out_dir/test`` (``00000.png``, ``00001.png``, ...). Deterministic in ``seed``. Each file is written
    atomically. Returns the lists of written paths. ``progress(done, total)`` is called after each file."""
    from fastmotion.io.video import write_video

    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if int(frames) < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if int(size) < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    out_dir = os.fspath(out_dir)
    written = {"train": [], "test": []}
    total, done = int(num_train) + int(num_test), 0
    for split, count in (("train", int(num_train)), ("test", int(num_test))):
        folder = os.path.join(out_dir, split)
        os.makedirs(folder, exist_ok=True)
        width = max(5, len(str(max(count - 1, 0))))
        for i in range(count):
            video = render_video(video_rng(seed, split, i), frames=int(frames), size=int(size))
            path = os.path.join(folder, f"{i:0{width}d}.png")
            write_video(path, video)
            written[split].append(path)
            done += 1
            if progress is not None:
                progress(done, total)
    return written["train"], written["test"]
