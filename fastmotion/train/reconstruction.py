"""The original reconstruction evaluation: every test video re-generated from its first frame.

For each video: keypoints of every frame, the first frame is the source, every frame (the
first included) is generated from the source with that frame's keypoints; the video's score is
the mean absolute difference between the generated and the real frames (pixels in [0, 1]),
and the result is the mean over videos (the paper's L1: Tai-Chi 0.050, Nemo 0.017, Bair 0.025).
Frames are generated in chunks, so long videos do not need memory for all of them at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import torch


@dataclass
class VideoScore:
    name: str
    l1: float
    frames: int


def _cat_kp(parts):
    return {k: torch.cat([p[k] for p in parts], dim=1) for k in parts[0]}


@torch.no_grad()
def reconstruct_video(kp_detector, generator, video: torch.Tensor, chunk: int = 16):
    """``video (3, T, H, W)`` in [0, 1] -> the reconstruction ``(3, T, H, W)`` (float32, on the video's device)."""
    v = video.unsqueeze(0)  # (1, 3, T, H, W)
    source = v[:, :, :1]
    t = v.shape[2]
    kp_parts = [kp_detector(v[:, :, i:i + chunk]) for i in range(0, t, chunk)]
    kp_video = _cat_kp(kp_parts)
    kp_source = {k: val[:, :1] for k, val in kp_video.items()}
    out = []
    for i in range(0, t, chunk):
        kp_driving = {k: val[:, i:i + chunk] for k, val in kp_video.items()}
        out.append(generator(source, kp_driving=kp_driving, kp_source=kp_source)["video_prediction"].float())
    return torch.cat(out, dim=2)[0]


def evaluate_reconstruction(kp_detector, generator, dataset, device="cpu", num_videos: Optional[int] = None,
                            on_video: Optional[Callable] = None, chunk: int = 16) -> List[VideoScore]:
    """Per-video L1 over ``dataset`` (items ``{'video': (3, T, H, W), 'name'}``, the test split).
    ``on_video(name, real, generated)`` sees each pair (e.g. to write side-by-side videos)."""
    kp_detector.eval()
    generator.eval()
    scores = []
    count = len(dataset) if num_videos is None else min(len(dataset), int(num_videos))
    for index in range(count):
        item = dataset[index]
        video = item["video"].to(device)
        generated = reconstruct_video(kp_detector, generator, video, chunk)
        l1 = float((generated - video.float()).abs().mean())
        scores.append(VideoScore(str(item.get("name", index)), l1, int(video.shape[1])))
        if on_video is not None:
            on_video(scores[-1].name, video, generated)
    return scores


def mean_l1(scores: List[VideoScore]) -> float:
    return float(np.mean([s.l1 for s in scores])) if scores else float("nan")
