"""The user-facing animator: images in, images out.

Built on :class:`fastmotion.models.Animator` (the source's keypoints and encoder maps computed
once): per driving frame the keypoint detector, the relative motion against a fixed anchor
(:class:`RelativeMotion`, no host work), the dense motion, the warp and the decoder run, under
``torch.inference_mode``, optionally in half precision (CUDA autocast, or CPU autocast to
bfloat16 on CPUs with bfloat16 convolutions: Winograd on AVX512_BF16, else oneDNN's) and replayed
as a CUDA graph.

Usage::

    animator = fastmotion.Animator.from_checkpoint()          # the built-in demo model
    animator.set_source(source)                               # numpy HWC / PIL / tensor
    frames = animator.animate(driving_frames)                 # the same kind back
    for frame in stream:                                      # or frame by frame
        out = animator(frame)
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from fastmotion import nvtx
from fastmotion.inference import images as im
from fastmotion.inference.best_frame import best_frame_index
from fastmotion.inference.cuda_graph import CudaGraphStep
from fastmotion.inference.relative_motion import RelativeMotion
from fastmotion.models import animator as streaming
from fastmotion.models.generator import MotionTransferGenerator
from fastmotion.models.keypoint_detector import KPDetector

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


@dataclass
class FrameResult:
    """One animated frame: ``image`` (the kind the driving frame was), the driving frame's
    keypoints and the normalized keypoints that drove the generator, ``(K, 2)`` numpy arrays in
    [-1, 1] (x, y)."""

    image: object
    kp_driving: np.ndarray
    kp_norm: np.ndarray


def resolve_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        return dtype
    if isinstance(dtype, str) and dtype.lower() in DTYPES:
        return DTYPES[dtype.lower()]
    raise ValueError(f"dtype must be one of fp32, fp16, bf16 (or a torch dtype), got {dtype!r}")


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively on this CPU (AVX-512 with bf16 or AMX)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and check is not None and check())


def config_frame_size(config: Mapping) -> Optional[Tuple[int, int]]:
    """``(H, W)`` the model was trained at: ``dataset_params.image_shape``, else the crop size."""
    data = config.get("dataset_params") or {}
    shape = data.get("image_shape")
    if shape is None:
        shape = ((data.get("augmentation_params") or {}).get("crop_param") or {}).get("size")
    return None if shape is None else (int(shape[0]), int(shape[1]))


def _size_multiple(kp_detector: KPDetector, generator: MotionTransferGenerator) -> int:
    """Frame sizes must be multiples of this: each hourglass halves its input num_blocks times
    (after its scale factor) and concatenates skips of matching sizes."""
    need = [(len(generator.appearance_encoder.down_blocks), 1.0),
            (len(kp_detector.predictor.encoder.down_blocks), float(kp_detector.scale_factor))]
    dense = generator.dense_motion_module
    if hasattr(dense, "hourglass"):
        need.append((len(dense.hourglass.encoder.down_blocks), float(dense.scale_factor)))
    return max(int(round(2 ** blocks / scale)) for blocks, scale in need)


class Animator:
    """Animate one source image with driving frames (see the module docstring).

    Args:
        kp_detector, generator: the trained networks (put in eval mode here).
        config: the config (for the normalization defaults and the frame size).
        device: ``'cpu'``, ``'cuda'``, ... (default: CUDA when available).
        dtype: ``fp32`` (default), ``fp16`` (CUDA autocast), ``bf16`` (CUDA autocast; on CPU
            bfloat16 convolutions, where the CPU has them: Winograd on AVX512_BF16, else oneDNN's).
        relative: relative motion (the driving keypoints' displacement from the anchor frame
            moves the source's keypoints; keeps the source's proportions) or absolute (the
            driving keypoints as they are).
        adapt_variance: adapt the keypoint covariances as the original's ``adapt_variance``.
        movement_scale: scale the displacement by the ratio of the source's and the anchor's
            keypoint hull sizes (the original's ``movement_mult``); default from the config.
        frame_size: ``(H, W)`` the model runs at; inputs are resized to it. Default: the
            config's ``image_shape`` (or crop size), else the source's size.
        cuda_graphs: replay the per-frame step as a CUDA graph (CUDA only).
        compile: ``torch.compile`` the per-frame step (experimental: the fast path's weight caches
            break the graph; on CPU a tiny model gave the same output after a ~1 min first frame
            and no speed-up).
        channels_last: channels_last weights and activations (default: on CUDA in half precision,
            where tensor-core convolutions want it; the CPU fast path chooses its own layout).
    """

    def __init__(self, kp_detector: KPDetector, generator: MotionTransferGenerator, config: Optional[Mapping] = None,
                 *, device=None, dtype=None, relative: bool = True, adapt_variance: bool = False,
                 movement_scale: Optional[bool] = None, frame_size: Optional[Sequence[int]] = None,
                 cuda_graphs: bool = False, compile: bool = False, channels_last: Optional[bool] = None):
        try:
            self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:1', got {device!r}") from None
        self.dtype = resolve_dtype(dtype)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but no CUDA device is available here")
        if self.device.type == "cpu" and self.dtype == torch.float16:
            raise ValueError("dtype fp16 needs a CUDA device; on CPU use bf16 (CPUs with bfloat16 instructions) "
                             "or fp32")
        if self.device.type == "cpu" and self.dtype == torch.bfloat16 and not cpu_has_bf16():
            raise ValueError("dtype bf16 on CPU needs bfloat16 convolution support (AVX-512 BF16 / AMX), which "
                             "oneDNN does not report on this CPU; use fp32")
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device, got device {str(self.device)!r}")
        config = dict(config or {})
        params = dict((config.get("transfer_params") or {}).get("normalization_params") or {})
        self.relative = bool(relative)
        self.motion = RelativeMotion(
            move_location=self.relative,
            movement_mult=bool(params.get("movement_mult", False) if movement_scale is None else movement_scale),
            adapt_variance=bool(adapt_variance), clip_mean=bool(params.get("clip_mean", False)))
        self.kp_detector = kp_detector.to(self.device).eval()
        self.generator = generator.to(self.device).eval()
        self.channels_last = (self.device.type == "cuda" and self.dtype != torch.float32
                              if channels_last is None else bool(channels_last))
        if self.channels_last:
            self.kp_detector.to(memory_format=torch.channels_last)
            self.generator.to(memory_format=torch.channels_last)
        self.core = streaming.Animator(self.kp_detector, self.generator)
        self.size_multiple = _size_multiple(self.kp_detector, self.generator)
        self.frame_size = tuple(int(s) for s in frame_size) if frame_size is not None else config_frame_size(config)
        if self.frame_size is not None:
            self._check_size(self.frame_size)
        self._generate_fn = torch.compile(self._generate, dynamic=False) if compile else self._generate
        self._graph = CudaGraphStep(self._graphed_step) if cuda_graphs else None
        self._source = None
        self._anchor = None  # keypoints of the anchor frame, or None: the next frame becomes it

    # --- construction ------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, config=None, checkpoint=None, *, device=None, dtype=None, relative: bool = True,
                        adapt_variance: bool = False, backend=None, **kwargs) -> "Animator":
        """An animator from a config (a dict, a packaged name such as ``'vox'`` or a YAML path) and
        a checkpoint (original or fastmotion format; a fastmotion checkpoint carries its config).
        Neither (or ``config='demo'``): the built-in demo model. Other keywords: see the class."""
        from fastmotion.checkpoint import load_checkpoint
        from fastmotion.config import load_config
        from fastmotion.inference.demo import demo_assets

        if (config is None and checkpoint is None) or (isinstance(config, str) and config == "demo"):
            if checkpoint is not None:
                raise ValueError("from_checkpoint: config='demo' is the built-in model; pass no checkpoint with it")
            assets = demo_assets(("config", "checkpoint"))
            config, checkpoint = assets.config, assets.checkpoint
        elif checkpoint is None:
            raise ValueError("from_checkpoint: a config without a checkpoint would animate with random weights; pass "
                             "checkpoint=..., or neither for the built-in demo model")
        if config is not None and not isinstance(config, Mapping):
            config = load_config(config)
        loaded = load_checkpoint(checkpoint, config, map_location="cpu", backend=backend)
        missing = [name for name in ("kp_detector", "generator") if getattr(loaded, name) is None]
        if missing:
            raise ValueError(f"from_checkpoint: {checkpoint} holds no {' and no '.join(missing)} (needed to animate)")
        return cls(loaded.kp_detector, loaded.generator, loaded.config, device=device, dtype=dtype,
                   relative=relative, adapt_variance=adapt_variance, **kwargs)

    # --- precision and sizes -------------------------------------------------------------------

    def _precision(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        # no autocast weight-cast cache under graph capture: cached casts would be freed with it
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=self._graph is None)

    def _check_size(self, size) -> None:
        m = self.size_multiple
        if size[0] % m or size[1] % m or size[0] <= 0 or size[1] <= 0:
            raise ValueError(f"frame size {size[0]}x{size[1]} (HxW) does not fit the model: both sides must be "
                             f"positive multiples of {m} (its hourglasses halve the frame repeatedly)")

    def _input(self, image, where: str) -> Tuple[torch.Tensor, im.ImageKind]:
        x, kind = im.to_model(image, where, self.frame_size, self.device, self.generator.num_channels)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, kind

    # --- source and anchor ---------------------------------------------------------------------

    @torch.inference_mode()
    def set_source(self, image) -> None:
        """The image to animate (any accepted kind); encoded once. Resets the anchor."""
        if self.frame_size is None:
            x, _ = im.to_model(image, "set_source", None, self.device, self.generator.num_channels)
            self._check_size(tuple(x.shape[-2:]))
            self.frame_size = tuple(x.shape[-2:])
        x, _ = self._input(image, "set_source")
        # On CPU the source's encoder maps stay float32 (encoded once): the per-frame warp then
        # reads one dtype in one call, and its float32 CPU kernel is the faster one.
        with self._precision() if self.device.type == "cuda" else contextlib.nullcontext():
            self.core.set_source(x)
        self._source = x
        self._anchor = None
        if self._graph is not None:
            self._graph.reset()

    @property
    def source(self) -> np.ndarray:
        """The source as the model sees it, ``(H, W, 3)`` uint8."""
        self._need_source()
        return im.tensor_to_uint8(self._source)

    @property
    def kp_source(self) -> np.ndarray:
        """The source's keypoints ``(K, 2)`` (x, y in [-1, 1])."""
        self._need_source()
        return self.core.kp_source["mean"][0].float().cpu().numpy()

    def _need_source(self):
        if self._source is None:
            raise RuntimeError("Animator: call set_source(image) first")

    @torch.inference_mode()
    def _detect(self, x: torch.Tensor):
        with self._precision(), nvtx.range("keypoints"):
            return self.kp_detector.detect(x)

    def keypoints(self, image) -> np.ndarray:
        """Keypoints ``(K, 2)`` of any image at the model's frame size."""
        x, _ = self._input(image, "keypoints")
        return self._detect(x)["mean"][0].float().cpu().numpy()

    def set_anchor(self, frame) -> None:
        """The driving frame whose pose is matched to the source's (relative motion); without one,
        the first frame animated after :meth:`set_source` becomes it."""
        self._need_source()
        x, _ = self._input(frame, "set_anchor")
        self._use_anchor(self._detect(x))

    @torch.inference_mode()
    def _use_anchor(self, kp) -> None:
        self._anchor = kp
        self.motion.set(self.core.kp_source, kp)

    def best_frame(self, frames) -> int:
        """Index of the driving frame whose normalized keypoints are closest to the source's."""
        self._need_source()
        kps = [self.keypoints(f) for f in frames]
        if not kps:
            raise ValueError("best_frame: no driving frames")
        return best_frame_index(self.kp_source, np.stack(kps))

    # --- per frame -------------------------------------------------------------------------------

    def _generate(self, kp_driving):
        kp_norm = self.motion(kp_driving)
        out = self.generator.decode(self.core.source_skips, kp_norm, self.core.kp_source)
        return out["video_prediction"], kp_norm

    def _graphed_step(self, x):
        with self._precision():
            with nvtx.range("keypoints"):
                kp = self.kp_detector.detect(x)
            prediction, kp_norm = self._generate_fn(kp)
        return prediction, kp, kp_norm

    @torch.inference_mode()
    def _step_tensor(self, x: torch.Tensor, kp=None):
        self._need_source()
        if self._anchor is None:
            kp = self._detect(x) if kp is None else kp
            self._use_anchor(kp)
        if self._graph is not None:
            prediction, kp, kp_norm = self._graph(x)
            return prediction.clone(), {k: v.clone() for k, v in kp.items()}, {k: v.clone() for k, v in kp_norm.items()}
        if kp is None:
            kp = self._detect(x)
        with self._precision():
            prediction, kp_norm = self._generate_fn(kp)
        return prediction, kp, kp_norm

    def step(self, frame) -> FrameResult:
        """Animate one driving frame; the image and the keypoints."""
        x, kind = self._input(frame, "driving frame")
        prediction, kp, kp_norm = self._step_tensor(x)
        return FrameResult(im.from_model(prediction.float(), kind), kp["mean"][0].float().cpu().numpy(),
                           kp_norm["mean"][0].float().cpu().numpy())

    def __call__(self, frame):
        """The animated frame, the kind ``frame`` was."""
        return self.step(frame).image

    def animate(self, frames, anchor: Union[str, int] = "first"):
        """Animate a clip: a list of images (-> a list), a ``(T, H, W[, C])`` numpy array (-> an array
        ``(T, H, W, 3)``) or a ``(T, C, H, W)`` tensor (-> a tensor). ``anchor``: ``'first'``,
        ``'best'`` (see :meth:`best_frame`) or a frame index."""
        self._need_source()
        if isinstance(frames, torch.Tensor):
            if frames.dim() != 4:
                raise ValueError(f"animate: a tensor clip must be (T, C, H, W), got {tuple(frames.shape)}")
            items, pack = list(frames), (lambda outs: torch.stack(outs))
        elif isinstance(frames, np.ndarray):
            if frames.ndim not in (3, 4):
                raise ValueError(f"animate: an array clip must be (T, H, W[, C]), got {frames.shape}")
            items, pack = list(frames), (lambda outs: np.stack(outs))
        else:
            items, pack = list(frames), list
        if not items:
            raise ValueError("animate: no driving frames")
        inputs = [self._input(f, f"driving frame {i}") for i, f in enumerate(items)]
        kps = [None] * len(inputs)
        if anchor == "best":
            kps = [self._detect(x) for x, _ in inputs]
            anchor = best_frame_index(self.kp_source, np.stack([kp["mean"][0].float().cpu().numpy() for kp in kps]))
        if anchor == "first":
            anchor = 0
        if isinstance(anchor, bool) or not isinstance(anchor, (int, np.integer)):
            raise ValueError(f"animate: anchor must be 'first', 'best' or a frame index, got {anchor!r}")
        if not -len(items) <= anchor < len(items):
            raise ValueError(f"animate: anchor {anchor} out of range for {len(items)} frames")
        self._use_anchor(kps[anchor] if kps[anchor] is not None else self._detect(inputs[anchor][0]))
        outs = []
        for (x, kind), kp in zip(inputs, kps):
            prediction, _, _ = self._step_tensor(x, kp)
            outs.append(im.from_model(prediction.float(), kind))
        return pack(outs)
