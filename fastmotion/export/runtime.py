"""Running exported graphs as a streaming animator: the three graphs chained as
:class:`fastmotion.models.Animator` runs the networks, with the keypoint normalisation of
:class:`fastmotion.inference.Animator` (relative motion against an anchor frame) on the host.

Subclasses run one graph: :class:`OnnxRuntimeAnimator` (onnxruntime), :class:`AOTIAnimator`
(AOTInductor packages), :class:`fastmotion.export.TensorRTAnimator` (TensorRT engines).
Frames are tensors ``(B, C, H, W)`` with values in [0, 1] at the exported frame size.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence

import torch

from fastmotion.export.deps import require
from fastmotion.export.files import read_manifest
from fastmotion.export.graphs import GRAPHS
from fastmotion.inference.relative_motion import RelativeMotion


class ExportedAnimator:
    """Animate a source image with driving frames through exported graphs.

    Args:
        folder: an export folder (with ``manifest.json``).
        relative, adapt_variance, movement_scale: as :class:`fastmotion.inference.Animator`
            (``movement_scale`` and ``clip_mean`` default to the exported config's
            ``normalization_params``).
    """

    format: str = ""

    def __init__(self, folder, *, relative: bool = True, adapt_variance: bool = False,
                 movement_scale: Optional[bool] = None):
        self.folder = os.fspath(folder)
        self.manifest = read_manifest(self.folder)
        if self.format and self.manifest.get("format") != self.format and not (
                self.format == "onnx" and self.manifest.get("format") == "tensorrt"):
            raise ValueError(f"{type(self).__name__}: {folder} holds a {self.manifest.get('format')!r} export, "
                             f"not {self.format!r}")
        missing = [g for g in GRAPHS if g not in self.manifest.get("graphs", {})]
        if missing:
            raise ValueError(f"{type(self).__name__}: {folder} holds no {', '.join(missing)} graph (export all three)")
        params = self.manifest.get("normalization_params") or {}
        self.motion = RelativeMotion(
            move_location=bool(relative),
            movement_mult=bool(params.get("movement_mult", False) if movement_scale is None else movement_scale),
            adapt_variance=bool(adapt_variance), clip_mean=bool(params.get("clip_mean", False)))
        self.frame_size = tuple(self.manifest["frame_size"])
        self._with_var = any(o["name"] == "kp_var" for o in self.manifest["graphs"]["keypoint_detector"]["outputs"])
        self._source = None
        self._skips: List[torch.Tensor] = []
        self._kp_source: List[torch.Tensor] = []
        self._anchored = False

    # one graph ------------------------------------------------------------------------------
    def run(self, graph: str, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Outputs of ``graph`` (one of keypoint_detector, source_encoder, frame_generator)."""
        raise NotImplementedError

    # the chain ------------------------------------------------------------------------------
    def _kp_dict(self, tensors):
        return {"mean": tensors[0], "var": tensors[1]} if self._with_var else {"mean": tensors[0]}

    def _kp_list(self, kp):
        return [kp["mean"], kp["var"]] if self._with_var else [kp["mean"]]

    def _check(self, x, what):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[-2:]) != self.frame_size:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__}: {what} must be a tensor (B, C, {self.frame_size[0]}, "
                             f"{self.frame_size[1]}) (the exported frame size), got {shape}")

    def keypoints(self, frame: torch.Tensor):
        """The keypoint detector's output: ``{'mean', 'var'}``."""
        self._check(frame, "frame")
        return self._kp_dict(self.run("keypoint_detector", [frame]))

    def set_source(self, source: torch.Tensor) -> None:
        """Detect and encode the source once; the next driving frame becomes the anchor."""
        self._check(source, "source")
        self._kp_source = self._kp_list(self.keypoints(source))
        self._skips = list(self.run("source_encoder", [source]))
        self._source = source
        self._anchored = False

    def set_anchor(self, frame: torch.Tensor) -> None:
        """The driving frame whose pose is matched to the source's (relative motion)."""
        if self._source is None:
            raise RuntimeError(f"{type(self).__name__}: call set_source(source) first")
        self.motion.set(self._kp_dict(self._kp_source), self.keypoints(frame))
        self._anchored = True

    def __call__(self, driving: torch.Tensor) -> torch.Tensor:
        """The animated frame ``(B, C, H, W)`` for a driving frame."""
        if self._source is None:
            raise RuntimeError(f"{type(self).__name__}: call set_source(source) first")
        kp = self.keypoints(driving)
        if not self._anchored:
            self.motion.set(self._kp_dict(self._kp_source), kp)
            self._anchored = True
        kp_norm = self.motion(kp)
        inputs = [self._source, *self._skips, *self._kp_source, *self._kp_list(kp_norm)]
        return self.run("frame_generator", inputs)[0]


class OnnxRuntimeAnimator(ExportedAnimator):
    """The ONNX graphs run by onnxruntime (CPU by default; ``providers`` as onnxruntime takes them)."""

    format = "onnx"

    def __init__(self, folder, *, providers=None, threads: Optional[int] = None, **kwargs):
        super().__init__(folder, **kwargs)
        ort = require("onnxruntime", "running ONNX exports")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        providers = providers or ["CPUExecutionProvider"]
        self.sessions = {name: ort.InferenceSession(os.path.join(self.folder, self.manifest["graphs"][name]["file"]),
                                                    options, providers=providers) for name in GRAPHS}
        dtypes = {"tensor(float16)": torch.float16, "tensor(double)": torch.float64}
        self._inputs = {name: [(i.name, dtypes.get(i.type, torch.float32)) for i in s.get_inputs()]
                        for name, s in self.sessions.items()}

    def run(self, graph, inputs):
        feed = {n: t.detach().to("cpu", dtype).contiguous().numpy() for (n, dtype), t in zip(self._inputs[graph], inputs)}
        return [torch.from_numpy(a) for a in self.sessions[graph].run(None, feed)]


class AOTIAnimator(ExportedAnimator):
    """The AOTInductor packages, loaded with ``torch._inductor.aoti_load_package``."""

    format = "aoti"

    def __init__(self, folder, **kwargs):
        super().__init__(folder, **kwargs)
        self.runners = {name: torch._inductor.aoti_load_package(os.path.join(self.folder,
                                                                             self.manifest["graphs"][name]["file"]))
                        for name in GRAPHS}
        self._dtype = torch.float16 if self.manifest.get("dtype") == "fp16" else torch.float32
        self._device = {name: torch.device(self.manifest["graphs"][name].get("device", "cpu")) for name in GRAPHS}

    def run(self, graph, inputs):
        out = self.runners[graph](*[t.to(self._device[graph], self._dtype).contiguous() for t in inputs])
        return list(out) if isinstance(out, (tuple, list)) else [out]
