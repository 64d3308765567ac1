"""2-D convolutions that read and write the original's Conv3d weight layout.

Every Conv3d of the original Monkey-Net has a (1, kh, kw) kernel, so frames fold into the
batch and the layers run as Conv2d. ``state_dict()`` writes the weight back as
``(out, in/groups, 1, kh, kw)`` and loading accepts that layout (or the 2-D one), so original
checkpoints load unchanged and ours load into the original code.
"""
from __future__ import annotations

from torch import nn


def spatial_kernel(kernel_size, padding, what: str = "kernel_size"):
    """Turn the original's Conv3d ``kernel_size`` / ``padding`` into 2-D ones.

    A 3-tuple must have depth 1 (kernel) and 0 (padding): a temporal kernel mixes frames and
    has no 2-D equivalent. An int or a pair is taken as the spatial size directly.
    """
    def two_d(value, name, depth_ok):
        if isinstance(value, int):
            return (value, value)
        value = tuple(int(v) for v in value)
        if len(value) == 2:
            return value
        if len(value) == 3:
            if value[0] != depth_ok:
                raise ValueError(f"{name} {value}: fastmotion runs frames independently and supports only a "
                                 f"temporal {name} of {depth_ok} (the original's (1, k, k) convolutions)")
            return value[1:]
        raise ValueError(f"{name} must be an int, a pair or a (depth, h, w) triple, got {value!r}")

    return two_d(kernel_size, what, 1), two_d(padding, "padding", 0)


class FrameConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose state_dict holds the original ``nn.Conv3d`` (1, kh, kw) weight."""

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        key = prefix + "weight"
        if key in destination:
            destination[key] = destination[key].unsqueeze(2)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "weight"
        weight = state_dict.get(key)
        if weight is not None and getattr(weight, "dim", lambda: 0)() == 5:
            if weight.shape[2] != 1:
                error_msgs.append(f"{key}: a Conv3d weight with temporal kernel size {weight.shape[2]} cannot load "
                                  f"into a 2-D convolution (expected (out, in, 1, kh, kw), got {tuple(weight.shape)})")
                return
            state_dict[key] = weight.squeeze(2)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
