"""Which image sizes a network takes, and an error that says the rule and the nearest valid size.

An hourglass (encoder with 2x2 pooling, decoder with 2x up-sampling and skip concatenation) needs
each side, after the network's ``scale_factor`` (``floor(side * scale_factor)``, as
``F.interpolate``), to be a positive multiple of ``2**num_blocks``; the discriminator's unpadded
4x4 convolutions, each followed by 2x2 pooling, need a minimum size. Without these checks a wrong
size fails deep inside with "Sizes of tensors must match except in dimension 1".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

# How far the nearest valid size is searched for (sides beyond this are not suggested).
_SEARCH = 1 << 16


def _scaled(side: int, scale_factor) -> int:
    if scale_factor == 1:
        return side
    return int(math.floor(float(side) * float(scale_factor)))


def _scale_text(scale_factor) -> str:
    return "" if scale_factor == 1 else f" after scaling by scale_factor={scale_factor} (rounded down)"


@dataclass(frozen=True)
class HourglassSize:
    """Sides (after ``scale_factor``) must be positive multiples of ``2**num_blocks``."""

    num_blocks: int
    scale_factor: float = 1

    def ok(self, side: int) -> bool:
        multiple = 2 ** self.num_blocks
        scaled = _scaled(side, self.scale_factor)
        return scaled >= multiple and scaled % multiple == 0

    def describe(self) -> str:
        return (f"a multiple of {2 ** self.num_blocks} (2**num_blocks, num_blocks={self.num_blocks})"
                f"{_scale_text(self.scale_factor)}")


@dataclass(frozen=True)
class PooledConvSize:
    """``num_blocks`` times: an unpadded ``kernel`` x ``kernel`` convolution, then 2x2 pooling."""

    num_blocks: int
    kernel: int = 4
    scale_factor: float = 1

    def ok(self, side: int) -> bool:
        side = _scaled(side, self.scale_factor)
        for _ in range(self.num_blocks):
            side = side - self.kernel + 1
            if side < 2:
                return False
            side //= 2
        return True

    def minimum(self) -> int:
        side = 1
        while not self.ok(side):
            side += 1
        return side

    def describe(self) -> str:
        return (f"at least {self.minimum()} ({self.num_blocks} blocks of {self.kernel}x{self.kernel} convolution "
                f"and 2x2 pooling)")


def nearest_valid(side: int, rules: Sequence) -> int:
    """The valid side closest to ``side`` (the larger one on a tie), or -1 if none is near."""
    for distance in range(_SEARCH):
        for candidate in (side + distance, side - distance):
            if candidate >= 1 and all(rule.ok(candidate) for rule in rules):
                return candidate
    return -1


def check_size(x: torch.Tensor, name: str, op: str, rules: Sequence) -> None:
    """Raise a ValueError naming ``name``, the rule and the nearest valid size unless the last two
    dimensions of ``x`` satisfy every rule. Skipped while torch.compile / torch.export trace (no
    guards on the sizes)."""
    if torch.compiler.is_compiling():
        return
    rules = list(dict.fromkeys(rules))  # the same rule from two sub-networks is said once
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if all(rule.ok(h) and rule.ok(w) for rule in rules):
        return
    nh, nw = nearest_valid(h, rules), nearest_valid(w, rules)
    suggestion = f"; the nearest valid size is {nh}x{nw} (height x width)" if nh > 0 and nw > 0 else ""
    rule_text = " and ".join(rule.describe() for rule in rules)
    raise ValueError(f"{op}: {name} height and width must each be {rule_text}, got {h}x{w}{suggestion}")
