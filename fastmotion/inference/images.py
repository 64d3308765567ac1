"""Images as users hold them <-> the model's ``(1, C, H, W)`` float tensors in [0, 1].

Accepted: numpy ``(H, W)`` / ``(H, W, 1|3|4)`` uint8 or float in [0, 1], PIL images, torch
tensors ``(C, H, W)`` / ``(1, C, H, W)`` (float in [0, 1] or uint8). :func:`from_model` gives
back the kind :func:`to_model` was handed (numpy dtype, tensor shape / dtype / device), with the
model's frame size and 3 channels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageKind:
    """What an input image was, so the output can be the same kind."""

    kind: str  # 'numpy' | 'pil' | 'tensor'
    dtype: object = None
    batched: bool = False  # tensor (1, C, H, W) rather than (C, H, W)
    device: Optional[torch.device] = None


def _numpy_rgb(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"{where}: expected an image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
                         f"got shape {tuple(array.shape)}")
    if array.shape[-1] in (1, 2):
        array = np.repeat(array[..., :1], 3, axis=-1)
    return array[..., :3]


def to_model(image, where: str, size: Optional[Sequence[int]] = None, device=None,
             channels: int = 3) -> Tuple[torch.Tensor, ImageKind]:
    """``(1, channels, H, W)`` float32 in [0, 1] on ``device``, resized to ``size`` (bilinear,
    antialiased) when given and different; and the input's :class:`ImageKind`."""
    if isinstance(image, torch.Tensor):
        if image.dim() not in (3, 4) or (image.dim() == 4 and image.shape[0] != 1):
            raise ValueError(f"{where}: a tensor image must be (C, H, W) or (1, C, H, W), got {tuple(image.shape)}")
        kind = ImageKind("tensor", image.dtype, image.dim() == 4, image.device)
        x = image if image.dim() == 4 else image.unsqueeze(0)
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        elif not x.is_floating_point():
            raise TypeError(f"{where}: a tensor image must be float in [0, 1] or uint8, got {x.dtype}")
        if x.shape[1] == 1:
            x = x.expand(1, 3, *x.shape[2:])
        if x.shape[1] != channels:
            raise ValueError(f"{where}: expected {channels} channels (dim -3), got shape {tuple(image.shape)}")
        x = x.to(device=device, dtype=torch.float32)
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - pillow is a base dependency
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            kind = ImageKind("pil")
            image = np.asarray(image.convert("RGBA" if "A" in image.getbands() else "RGB"))
        elif isinstance(image, np.ndarray):
            kind = ImageKind("numpy", image.dtype)
        else:
            raise TypeError(f"{where}: expected a numpy array, a PIL image or a torch tensor, "
                            f"got {type(image).__name__}")
        array = _numpy_rgb(np.asarray(image), where)
        if not array.flags.writeable:  # torch.from_numpy warns about read-only memory
            array = array.copy()
        if array.dtype == np.uint8:
            x = torch.from_numpy(np.ascontiguousarray(array)).to(device).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        elif np.issubdtype(array.dtype, np.floating):
            x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device).permute(2, 0, 1)
            x = x.unsqueeze(0).clamp(0.0, 1.0)
        else:
            raise TypeError(f"{where}: expected uint8 or float pixels, got {array.dtype}")
        if channels != 3:
            raise ValueError(f"{where}: the model takes {channels}-channel images; pass a tensor")
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"{where}: empty image of shape {tuple(x.shape)}")
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(int(s) for s in size), mode="bilinear", align_corners=False, antialias=True)
        x = x.clamp_(0.0, 1.0)
    return x.contiguous(), kind


def from_model(x: torch.Tensor, kind: ImageKind):
    """``(1, C, H, W)`` float in [0, 1] -> the kind described by ``kind``."""
    x = x.detach()
    if kind.kind == "tensor":
        y = x.to(kind.device)
        y = (y.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8) if kind.dtype == torch.uint8 else y.to(kind.dtype)
        return y if kind.batched else y[0]
    array = x[0].permute(1, 2, 0).float().cpu().numpy()
    if kind.kind == "pil":
        from PIL import Image

        return Image.fromarray(to_uint8(array))
    if kind.dtype == np.uint8:
        return to_uint8(array)
    return array.astype(kind.dtype if np.issubdtype(kind.dtype, np.floating) else np.float32)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` -> uint8, rounded."""
    return (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(1, C, H, W)`` float in [0, 1] -> ``(H, W, C)`` uint8 (for writing videos)."""
    return (x[0].detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
