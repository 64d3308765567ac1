"""Small drawing helpers for the commands' outputs: keypoint markers, side-by-side rows, contact
sheets. Plain numpy on ``(H, W, 3)`` uint8 frames."""
from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np


def keypoint_colors(count: int) -> np.ndarray:
    """``count`` distinct, saturated colours around the hue circle (uint8 ``(count, 3)``)."""
    hues = np.linspace(0.0, 0.85, max(count, 1))  # stop short of red again
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 1.0, 1.0)] for h in hues], dtype=np.uint8)


def draw_keypoints(frame: np.ndarray, keypoints, radius=None) -> np.ndarray:
    """A copy of ``frame`` with a disc (dark outline, coloured centre) at each keypoint; keypoints
    ``(K, 2)`` in Monkey-Net's coordinates: x, y in [-1, 1] over the frame, endpoints included."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    kps = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    if radius is None:
        radius = max(1.5, min(h, w) / 40)
    colors = keypoint_colors(len(kps))
    yy, xx = np.mgrid[0:h, 0:w]
    for (x, y), color in zip(kps, colors):
        if not np.isfinite([x, y]).all():
            continue
        cx, cy = (x + 1) / 2 * (w - 1), (y + 1) / 2 * (h - 1)
        dist2 = (xx - cx) ** 2 + (yy - cy) ** 2
        out[dist2 <= (radius + 1) ** 2] = (0, 0, 0)
        out[dist2 <= radius ** 2] = color
    return out


def fit(frame: np.ndarray, height: int) -> np.ndarray:
    """``frame`` scaled to ``height`` rows (nearest neighbour for enlarging, area-like for shrinking:
    PIL's resampling), keeping its aspect ratio."""
    if frame.shape[0] == height:
        return frame
    from PIL import Image

    width = max(1, round(frame.shape[1] * height / frame.shape[0]))
    resample = Image.NEAREST if height > frame.shape[0] else Image.BOX
    return np.asarray(Image.fromarray(frame).resize((width, height), resample))


def side_by_side(frames: Sequence[np.ndarray], gap: int = 2, background=(255, 255, 255)) -> np.ndarray:
    """Frames in a row, all at the first one's height, separated by ``gap`` pixels."""
    height = frames[0].shape[0]
    parts = []
    for i, frame in enumerate(frames):
        if i and gap:
            parts.append(np.full((height, gap, 3), background, dtype=np.uint8))
        parts.append(fit(frame, height))
    return np.concatenate(parts, axis=1)


def title_bar(text_per_column: Sequence[str], widths: Sequence[int], gap: int = 2, height: int = 14,
              background=(255, 255, 255)) -> np.ndarray:
    """A strip of column titles (PIL's built-in bitmap font), centred over columns of ``widths``."""
    from PIL import Image, ImageDraw

    total = sum(widths) + gap * (len(widths) - 1)
    bar = Image.new("RGB", (total, height), tuple(background))
    draw = ImageDraw.Draw(bar)
    x = 0
    for text, width in zip(text_per_column, widths):
        box = draw.textbbox((0, 0), text)
        draw.text((x + (width - (box[2] - box[0])) // 2, (height - (box[3] - box[1])) // 2 - box[1]), text,
                  fill=(0, 0, 0))
        x += width + gap
    return np.asarray(bar)


def contact_sheet(rows: Sequence[Sequence[np.ndarray]], gap: int = 2, background=(255, 255, 255),
                  titles: Sequence[str] = ()) -> np.ndarray:
    """Rows of frames (each row :func:`side_by_side`) stacked vertically, under optional column titles."""
    lines = [side_by_side(row, gap, background) for row in rows]
    if titles:
        height = rows[0][0].shape[0]
        lines.insert(0, title_bar(titles, [fit(f, height).shape[1] for f in rows[0]], gap, background=background))
    width = max(line.shape[1] for line in lines)
    out = []
    for i, line in enumerate(lines):
        if i and gap:
            out.append(np.full((gap, width, 3), background, dtype=np.uint8))
        if line.shape[1] < width:
            line = np.concatenate([line, np.full((line.shape[0], width - line.shape[1], 3), background,
                                                 dtype=np.uint8)], axis=1)
        out.append(line)
    return np.concatenate(out, axis=0)


def animation_frame(result, source=None, kp_source=None, driving=None, row=False, show_keypoints=False):
    """One output frame of the animate / demo / live commands from a :class:`FrameResult`
    (uint8 image): the result alone, or with ``row`` the row ``source | driving | result``; with ``show_keypoints``
    each panel carries its keypoints (source: detected, driving: detected, result: the normalized
    keypoints that drove it)."""
    image = result.image
    if show_keypoints:
        image = draw_keypoints(image, result.kp_norm)
    if not row:
        return image
    height = image.shape[0]
    src = fit(source, height)
    drv = fit(driving, height)
    if show_keypoints:
        src = draw_keypoints(src, kp_source)
        drv = draw_keypoints(drv, result.kp_driving)
    return side_by_side([src, drv, image])
