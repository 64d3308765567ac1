"""Folding the original's videos ``(B, C, D, H, W)`` into frame batches ``(B*D, C, H, W)`` and back,
plus the argument checks of the model's forward passes (clear errors that name the argument)."""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F


def check_image(x, name: str, op: str, channels: Optional[int] = None) -> bool:
    """Validate an image batch; True if it is a 5-D video ``(B, C, D, H, W)``, False if 4-D."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in (4, 5):
        raise ValueError(f"{op}: {name} must be a video (B, C, D, H, W) or frames (B, C, H, W), "
                         f"got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, got dtype {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{op}: {name} must have {channels} channels (dim 1), got shape {tuple(x.shape)}")
    if x.dim() == 5 and x.shape[2] == 0:
        raise ValueError(f"{op}: {name} is a video with no frames (D = 0 in (B, C, D, H, W), shape "
                         f"{tuple(x.shape)}); pass at least one frame")
    return x.dim() == 5


def check_dtype(x: torch.Tensor, name: str, op: str, module: torch.nn.Module) -> None:
    """Images must have the dtype of the network's parameters (a float64 image into a float32
    network would fail deep inside, or silently compute in another precision); under autocast
    on ``x``'s device any floating dtype goes, as autocast casts per op."""
    param = next(module.parameters(), None)
    if param is None or x.dtype == param.dtype or torch.is_autocast_enabled(x.device.type):
        return
    raise TypeError(f"{op}: {name} has dtype {x.dtype} but the network's parameters are {param.dtype}; convert "
                    f"the images with .to({param.dtype}) (or the network with .to({x.dtype}), or run under "
                    "torch.autocast)")


def video_to_frames(x: torch.Tensor) -> Tuple[torch.Tensor, Optional[int]]:
    """``(B, C, D, H, W)`` -> ``((B*D, C, H, W), D)``; 4-D input passes through with ``None``."""
    if x.dim() == 4:
        return x, None
    b, c, d, h, w = x.shape
    return x.transpose(1, 2).reshape(b * d, c, h, w), d


def frames_to_video(y: torch.Tensor, d: Optional[int]) -> torch.Tensor:
    """Inverse of :func:`video_to_frames` for any ``(B*D, C, ...)`` output (contiguous)."""
    if d is None:
        return y
    return y.view(y.shape[0] // d, d, *y.shape[1:]).transpose(1, 2).contiguous()


def repeat_frames(x: torch.Tensor, d: int) -> torch.Tensor:
    """``(B, ...)`` -> ``(B*d, ...)``, each item repeated for its d frames (no copy when d == 1)."""
    if d == 1:
        return x
    return x.unsqueeze(1).expand(x.shape[0], d, *x.shape[1:]).reshape(x.shape[0] * d, *x.shape[1:])


def check_kp(kp, name: str, op: str, video: bool, num_kp: Optional[int] = None,
             batch: Optional[int] = None) -> None:
    """Keypoints: ``{'mean': (B, [D,] K, 2), 'var': (B, [D,] K, 2, 2) or (..., 1, 1)}`` (var optional)."""
    if not isinstance(kp, dict) or "mean" not in kp:
        raise TypeError(f"{op}: {name} must be a dict with 'mean' (and 'var'), got {type(kp).__name__}")
    mean = kp["mean"]
    if not isinstance(mean, torch.Tensor):
        raise TypeError(f"{op}: {name}['mean'] must be a torch.Tensor, got {type(mean).__name__}")
    dims = 4 if video else 3
    layout = "(B, D, K, 2)" if video else "(B, K, 2)"
    if mean.dim() != dims or mean.shape[-1] != 2:
        raise ValueError(f"{op}: {name}['mean'] must be {layout} for a {dims + 1}-D image input, "
                         f"got shape {tuple(mean.shape)}")
    if video and mean.shape[1] == 0:
        raise ValueError(f"{op}: {name}['mean'] has no frames (D = 0 in {layout}); pass at least one frame")
    if num_kp is not None and mean.shape[-2] != num_kp:
        raise ValueError(f"{op}: {name}['mean'] has {mean.shape[-2]} keypoints, the module expects {num_kp}")
    if batch is not None and mean.shape[0] != batch:
        raise ValueError(f"{op}: {name}['mean'] has batch {mean.shape[0]}, the images have batch {batch}")
    var = kp.get("var")
    if var is not None:
        if (not isinstance(var, torch.Tensor) or tuple(var.shape[:-2]) != tuple(mean.shape[:-1])
                or tuple(var.shape[-2:]) not in ((2, 2), (1, 1))):
            shape = tuple(var.shape) if isinstance(var, torch.Tensor) else type(var).__name__
            raise ValueError(f"{op}: {name}['var'] must be {tuple(mean.shape[:-1]) + (2, 2)} (or (..., 1, 1)), "
                             f"got {shape}")


def check_source_frames(kp_source, d: int, op: str) -> None:
    """Source keypoints of a video have one frame (broadcast over the driving frames) or d."""
    if isinstance(kp_source, dict) and kp_source["mean"].shape[1] not in (1, d):
        raise ValueError(f"{op}: kp_source['mean'] has {kp_source['mean'].shape[1]} frames; expected 1 "
                         f"(or one per driving frame, {d})")


def kp_to_frames(kp: Dict[str, torch.Tensor], d: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """``(B, D, K, ...)`` keypoints -> ``(B*D, K, ...)``; with ``d``, a single frame ``D == 1`` is
    repeated to d frames (the original broadcasts the source keypoints over the driving frames)."""
    out = {}
    for key, v in kp.items():
        if v is None:
            continue
        if d is not None and v.shape[1] == 1 and d > 1:
            v = v.expand(v.shape[0], d, *v.shape[2:])
        out[key] = v.reshape(v.shape[0] * v.shape[1], *v.shape[2:])
    return out


def kp_to_video(kp: Dict[str, torch.Tensor], d: Optional[int]) -> Dict[str, torch.Tensor]:
    if d is None:
        return kp
    return {k: v.view(v.shape[0] // d, d, *v.shape[1:]) for k, v in kp.items()}


def downsample(x: torch.Tensor, scale_factor) -> torch.Tensor:
    """The original's ``F.interpolate(x, scale_factor=(1, s, s))`` (nearest) on frames."""
    if scale_factor == 1:
        return x
    return F.interpolate(x, scale_factor=(scale_factor, scale_factor))


def downsampled_size(size, scale_factor):
    """Output (h, w) of :func:`downsample` without computing it (``floor(size * scale)``, as
    F.interpolate)."""
    if scale_factor == 1:
        return tuple(int(s) for s in size)
    return tuple(int(math.floor(float(s) * float(scale_factor))) for s in size)


def resize(x: torch.Tensor, size, mode: str) -> torch.Tensor:
    """The original's per-frame ``F.interpolate(..., size=(d, h, w), mode)``: 'trilinear' over an
    unchanged depth is bilinear over (h, w) (align_corners=False)."""
    size = tuple(int(s) for s in size)
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
