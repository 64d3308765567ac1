"""The three graphs of streaming inference, as exportable modules.

:class:`fastmotion.models.Animator` runs the source-side work once and then, per driving frame,
the keypoint detector and the decoder. Deployment splits the same way:

- ``keypoint_detector``: image ``(N, C, H, W)`` -> keypoint ``mean (N, K, 2)`` (and ``var``);
- ``source_encoder``: source image -> the generator's encoder maps ``skip_1 .. skip_n`` (the
  source itself is skip 0 and goes to the per-frame graph as it is);
- ``frame_generator``: ``source, skip_1 .. skip_n, kp_source_*, kp_norm_*`` -> ``prediction``.

The keypoint normalisation between the detector and the generator (relative motion against
an anchor frame) is a few tensor operations that depend on the anchor, so it stays on the host
(:class:`fastmotion.inference.relative_motion.RelativeMotion`).

The modules run the networks with ``backend="reference"``: plain PyTorch ops, and none of the
fast path's model rewrites (oneDNN packed weights, fused BatchNorm/ReLU kernels), which do not
export to standard ONNX.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from fastmotion.models.generator import MotionTransferGenerator
from fastmotion.models.keypoint_detector import KPDetector

GRAPHS = ("keypoint_detector", "source_encoder", "frame_generator")


def has_var(kp_detector: KPDetector) -> bool:
    """Whether the keypoints carry a covariance (``kp_variance`` 'matrix' or 'single')."""
    return kp_detector.kp_variance in ("matrix", "single")


def kp_names(prefix: str, with_var: bool) -> List[str]:
    return [f"{prefix}_mean"] + ([f"{prefix}_var"] if with_var else [])


class KeypointDetectorGraph(nn.Module):
    """image -> (mean, var) or (mean,)."""

    def __init__(self, kp_detector: KPDetector):
        super().__init__()
        self.kp_detector = kp_detector

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        kp = self.kp_detector.detect(image)
        return (kp["mean"], kp["var"]) if "var" in kp else (kp["mean"],)


class SourceEncoderGraph(nn.Module):
    """source image -> the generator's encoder maps below the source (skip_1 .. skip_n)."""

    def __init__(self, generator: MotionTransferGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, source: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.generator.encode_source(source)[1:])


class FrameGeneratorGraph(nn.Module):
    """``(source, skip_1 .. skip_n, kp_source mean [, var], kp_norm mean [, var])`` -> prediction."""

    def __init__(self, generator: MotionTransferGenerator, with_var: bool):
        super().__init__()
        self.generator = generator
        self.with_var = with_var
        self.num_skips = len(generator.appearance_encoder.down_blocks)

    def _kp(self, tensors) -> Dict[str, torch.Tensor]:
        return {"mean": tensors[0], "var": tensors[1]} if self.with_var else {"mean": tensors[0]}

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        skips = list(inputs[:self.num_skips + 1])
        kps = inputs[self.num_skips + 1:]
        per_kp = 2 if self.with_var else 1
        kp_source, kp_norm = self._kp(kps[:per_kp]), self._kp(kps[per_kp:])
        return self.generator.decode(skips, kp_norm, kp_source)["video_prediction"]


def graph_modules(kp_detector: KPDetector, generator: MotionTransferGenerator) -> Dict[str, nn.Module]:
    """The three graph modules (in eval mode, on the reference backend: see the module docstring)."""
    kp_detector.eval().set_backend("reference")
    generator.eval().set_backend("reference")
    with_var = has_var(kp_detector)
    return {"keypoint_detector": KeypointDetectorGraph(kp_detector),
            "source_encoder": SourceEncoderGraph(generator),
            "frame_generator": FrameGeneratorGraph(generator, with_var)}


def io_names(kp_detector: KPDetector, generator: MotionTransferGenerator) -> Dict[str, Tuple[List[str], List[str]]]:
    """``{graph: (input names, output names)}``."""
    with_var = has_var(kp_detector)
    skips = [f"skip_{i}" for i in range(1, len(generator.appearance_encoder.down_blocks) + 1)]
    return {
        "keypoint_detector": (["image"], kp_names("kp", with_var)),
        "source_encoder": (["source"], skips),
        "frame_generator": (["source"] + skips + kp_names("kp_source", with_var) + kp_names("kp_norm", with_var),
                            ["prediction"]),
    }


@torch.no_grad()
def example_inputs(kp_detector: KPDetector, generator: MotionTransferGenerator, frame_size, batch: int = 1,
                   dtype=torch.float32, seed: int = 0) -> Dict[str, Tuple[torch.Tensor, ...]]:
    """Inputs of each graph for tracing: a random image pair run through the networks, so the
    keypoints and encoder maps are ones the model would produce."""
    gen = torch.Generator().manual_seed(seed)
    h, w = frame_size
    c = generator.num_channels
    source = torch.rand(batch, c, h, w, generator=gen).to(dtype)
    driving = torch.rand(batch, c, h, w, generator=gen).to(dtype)
    mods = graph_modules(kp_detector, generator)
    kp_source = mods["keypoint_detector"](source)
    kp_norm = mods["keypoint_detector"](driving)
    skips = mods["source_encoder"](source)
    return {"keypoint_detector": (driving,), "source_encoder": (source,),
            "frame_generator": (source, *skips, *kp_source, *kp_norm)}
