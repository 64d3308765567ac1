"""The original Monkey-Net training augmentations, on a clip tensor ``(T, C, H, W)`` in [0, 1].

Every random parameter is drawn once per clip, so all frames of a clip get the same flip, rotation,
resize, crop and colour change (the model learns motion between frames, not augmentation noise).
Each step is a plain function of its parameters (testable on its own) and :class:`VideoAugmentation`
draws the parameters and applies the steps in the original order: flip, rotation, resize, crop,
colour jitter. Randomness comes from torch's RNG (or an explicit ``generator``), which DataLoader
seeds per worker.

Differences from the original (which ran scikit-image / PIL per frame on numpy arrays), kept small
on purpose: the crop offset is drawn in the full valid range for non-square clips (the original
swapped height and width in that test), and colour jitter works on floats without rounding to
8 bits between its steps. Nearest-neighbour resize has no anti-aliasing pre-filter.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

# ITU-R 601 luma, as torchvision's rgb_to_grayscale (the original's jitter used torchvision).
_LUMA = (0.299, 0.587, 0.114)


def horizontal_flip(clip: torch.Tensor) -> torch.Tensor:
    return clip.flip(-1)


def time_flip(clip: torch.Tensor) -> torch.Tensor:
    return clip.flip(0)


def rotate(clip: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every frame counter-clockwise by ``degrees`` about the image centre (bilinear, zeros
    outside; the output keeps the input size), as scikit-image's ``rotate``."""
    t, c, h, w = clip.shape
    theta = math.radians(float(degrees))
    cos, sin = math.cos(theta), math.sin(theta)
    dtype = clip.dtype if clip.is_floating_point() else torch.float32
    ys = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    # Output pixel (x, y) (y pointing down) shows the input at the inverse rotation of (x, y).
    src_x = cos * x - sin * y
    src_y = sin * x + cos * y
    grid = torch.stack((src_x / max((w - 1) / 2, 1e-12) if w > 1 else src_x * 0,
                        src_y / max((h - 1) / 2, 1e-12) if h > 1 else src_y * 0), dim=-1)
    grid = grid.to(dtype).unsqueeze(0).expand(t, h, w, 2)
    return F.grid_sample(clip.to(dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def resize(clip: torch.Tensor, size: Sequence[int], interpolation: str = "nearest") -> torch.Tensor:
    """Resize every frame to ``size = (height, width)``; ``interpolation`` 'nearest' or 'bilinear'."""
    height, width = int(size[0]), int(size[1])
    if (height, width) == tuple(clip.shape[-2:]):
        return clip
    if interpolation == "nearest":
        return F.interpolate(clip, size=(height, width), mode="nearest-exact")
    if interpolation == "bilinear":
        return F.interpolate(clip, size=(height, width), mode="bilinear", align_corners=False,
                             antialias=height < clip.shape[-2] or width < clip.shape[-1]).clamp_(0, 1)
    raise ValueError(f"resize_param interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")


def pad_to(clip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad by repeating the border (centred, as the original ``pad_clip``) to at least ``height x width``."""
    h, w = clip.shape[-2:]
    ph, pw = max(height - h, 0), max(width - w, 0)
    if ph == 0 and pw == 0:
        return clip
    return F.pad(clip, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")


def crop(clip: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    return clip[..., top:top + height, left:left + width]


def grayscale(clip: torch.Tensor) -> torch.Tensor:
    r, g, b = clip.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def _blend(image: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (factor * image + (1.0 - factor) * other).clamp_(0.0, 1.0)


def adjust_brightness(clip: torch.Tensor, factor: float) -> torch.Tensor:
    return (clip * factor).clamp_(0.0, 1.0)


def adjust_contrast(clip: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend each frame with its mean gray level (torchvision's definition)."""
    return _blend(clip, grayscale(clip).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(clip: torch.Tensor, factor: float) -> torch.Tensor:
    return _blend(clip, grayscale(clip), factor)


def rgb_to_hsv(clip: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> HSV with hue in [0, 1) (the channel dimension is -3)."""
    r, g, b = clip.unbind(-3)
    value, argmax = clip.max(dim=-3)
    chroma = value - clip.min(dim=-3).values
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)),
                             torch.zeros_like(value))
    # Hue sector by which channel is the largest (ties: red, then green, as colorsys).
    hue = torch.where(argmax == 0, ((g - b) / safe_chroma) % 6.0,
                      torch.where(argmax == 1, (b - r) / safe_chroma + 2.0, (r - g) / safe_chroma + 4.0))
    hue = torch.where(chroma > 0, hue / 6.0, torch.zeros_like(hue)) % 1.0
    return torch.stack((hue, saturation, value), dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    hue, saturation, value = hsv.unbind(-3)
    # Each channel is value - chroma * clamp(min(k, 4 - k), 0, 1), k = (n + 6 hue) mod 6 with n = 5, 3, 1.
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device).view(3, 1, 1)
    k = (n + 6.0 * hue.unsqueeze(-3)) % 6.0
    weight = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return value.unsqueeze(-3) * (1.0 - saturation.unsqueeze(-3) * weight)


def adjust_hue(clip: torch.Tensor, factor: float) -> torch.Tensor:
    """Rotate the hue by ``factor`` of a full turn (``factor`` in [-0.5, 0.5])."""
    hsv = rgb_to_hsv(clip)
    hue = (hsv[..., 0:1, :, :] + factor) % 1.0
    return hsv_to_rgb(torch.cat((hue, hsv[..., 1:, :, :]), dim=-3)).clamp_(0.0, 1.0)


def _uniform(low: float, high: float, generator: Optional[torch.Generator]) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64))


def _coin(generator: Optional[torch.Generator]) -> bool:
    return bool(torch.rand((), generator=generator) < 0.5)


def _pair(value, name: str):
    if isinstance(value, (int, float)):
        return (-abs(float(value)), abs(float(value))) if name == "degrees" else (float(value), float(value))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return float(value[0]), float(value[1])
    raise ValueError(f"{name} must be a number or a pair [low, high], got {value!r}")


def _check_keys(group: str, params, allowed) -> dict:
    params = dict(params or {})
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"augmentation_params.{group}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")
    return params


class VideoAugmentation:
    """The original ``AllAugmentationTransform`` (less frame selection, which the dataset does):
    ``flip_param`` (``horizontal_flip``, ``time_flip``), ``rotation_param`` (``degrees``),
    ``resize_param`` (``ratio``, ``interpolation``), ``crop_param`` (``size``), ``jitter_param``
    (``brightness``, ``contrast``, ``saturation``, ``hue``). Call on ``(T, C, H, W)`` in [0, 1]."""

    def __init__(self, flip_param=None, rotation_param=None, resize_param=None, crop_param=None, jitter_param=None):
        self.flip = None if flip_param is None else _check_keys("flip_param", flip_param, ("horizontal_flip", "time_flip"))
        self.degrees = None
        if rotation_param is not None:
            self.degrees = _pair(_check_keys("rotation_param", rotation_param, ("degrees",)).get("degrees", 0), "degrees")
        self.resize = None
        if resize_param is not None:
            p = _check_keys("resize_param", resize_param, ("ratio", "interpolation"))
            self.resize = (_pair(p.get("ratio", (3.0 / 4.0, 4.0 / 3.0)), "ratio"), p.get("interpolation", "nearest"))
            if self.resize[1] not in ("nearest", "bilinear"):
                raise ValueError(f"augmentation_params.resize_param.interpolation must be 'nearest' or 'bilinear', "
                                 f"got {self.resize[1]!r}")
        self.crop_size = None
        if crop_param is not None:
            size = _check_keys("crop_param", crop_param, ("size",)).get("size")
            size = [size, size] if isinstance(size, int) else size
            if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(int(s) > 0 for s in size)):
                raise ValueError(f"augmentation_params.crop_param.size must be [height, width], got {size!r}")
            self.crop_size = (int(size[0]), int(size[1]))
        self.jitter = None
        if jitter_param is not None:
            p = _check_keys("jitter_param", jitter_param, ("brightness", "contrast", "saturation", "hue"))
            self.jitter = {k: float(p.get(k, 0) or 0) for k in ("brightness", "contrast", "saturation", "hue")}
            if any(v < 0 for v in self.jitter.values()) or self.jitter["hue"] > 0.5:
                raise ValueError(f"augmentation_params.jitter_param: values must be >= 0 and hue <= 0.5, got {p}")

    def __call__(self, clip: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if self.flip is not None:
            # As the original: a time flip excludes a horizontal flip of the same clip.
            if self.flip.get("time_flip") and _coin(generator):
                clip = time_flip(clip)
            elif self.flip.get("horizontal_flip") and _coin(generator):
                clip = horizontal_flip(clip)
        if self.degrees is not None:
            clip = rotate(clip, _uniform(*self.degrees, generator))
        if self.resize is not None:
            scale = _uniform(*self.resize[0], generator)
            h, w = clip.shape[-2:]
            clip = resize(clip, (max(int(h * scale), 1), max(int(w * scale), 1)), self.resize[1])
        if self.crop_size is not None:
            ch, cw = self.crop_size
            clip = pad_to(clip, ch, cw)
            h, w = clip.shape[-2:]
            top = int(torch.randint(0, h - ch + 1, (), generator=generator))
            left = int(torch.randint(0, w - cw + 1, (), generator=generator))
            clip = crop(clip, top, left, ch, cw)
        if self.jitter is not None:
            steps = []
            j = self.jitter
            if j["brightness"] > 0:
                steps.append((adjust_brightness, _uniform(max(0.0, 1 - j["brightness"]), 1 + j["brightness"], generator)))
            if j["contrast"] > 0:
                steps.append((adjust_contrast, _uniform(max(0.0, 1 - j["contrast"]), 1 + j["contrast"], generator)))
            if j["saturation"] > 0:
                steps.append((adjust_saturation, _uniform(max(0.0, 1 - j["saturation"]), 1 + j["saturation"], generator)))
            if j["hue"] > 0:
                steps.append((adjust_hue, _uniform(-j["hue"], j["hue"], generator)))
            for i in torch.randperm(len(steps), generator=generator).tolist():  # random order, as the original
                fn, factor = steps[i]
                clip = fn(clip, factor)
        return clip.contiguous()
