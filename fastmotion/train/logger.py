"""What the trainer shows and writes: a tqdm bar, ``log.txt`` loss lines as the original Logger
writes them (``00000200) rec - 0.12345; ...``: the mean of each loss since the last line, every
``log_freq_iter`` iterations), TensorBoard scalars when tensorboard imports, and pictures
(source | driving with keypoints | deformed source | prediction) written atomically."""
from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch


class TrainLogger:
    def __init__(self, log_dir: str, names: Sequence[str], log_freq: int, enabled: bool = True,
                 progress: bool = True, total: Optional[int] = None):
        self.names = list(names)
        self.log_freq = max(1, int(log_freq))
        self.enabled = enabled
        self.pending: List[Dict[str, float]] = []
        self.bar = None
        self.file = None
        self.writer = None
        if not enabled:
            return
        os.makedirs(log_dir, exist_ok=True)
        self.file = open(os.path.join(log_dir, "log.txt"), "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            SummaryWriter = None
        if SummaryWriter is not None:
            self.writer = SummaryWriter(log_dir=os.path.join(log_dir, "tensorboard"))
        if progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="it", dynamic_ncols=True, file=sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def iteration(self, it: int, losses: Dict[str, float], videos_per_second: float, lr: float) -> None:
        """Record iteration ``it`` (0-based, as the original's ``it``)."""
        if not self.enabled:
            return
        self.pending.append(losses)
        if self.writer is not None:
            for name, value in losses.items():
                self.writer.add_scalar(f"loss/{name}", value, it)
            self.writer.add_scalar("videos_per_second", videos_per_second, it)
            self.writer.add_scalar("lr", lr, it)
        if it % self.log_freq == 0:
            self.flush_line(it)
        if self.bar is not None:
            shown = {k: f"{v:.4g}" for k, v in losses.items()}
            shown["videos/s"] = f"{videos_per_second:.1f}"
            self.bar.set_postfix(shown, refresh=False)
            self.bar.update(1)

    def flush_line(self, it: int) -> None:
        if not self.pending or self.file is None:
            return
        means = {n: float(np.mean([d[n] for d in self.pending if n in d])) for n in self.names}
        line = "; ".join(f"{n} - {v:.5f}" for n, v in means.items())
        print(f"{str(it).zfill(8)}) {line}", file=self.file)
        self.file.flush()
        self.pending = []

    def message(self, text: str, last: bool = False) -> None:
        """A line on stderr (above the bar); ``last``: the bar is closed first."""
        if not self.enabled:
            return
        if last and self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.file is not None:
            self.file.close()
            self.file = None


def _frames(video: torch.Tensor, index: int = 0) -> np.ndarray:
    """``(B, 3, D, H, W)`` float -> ``(B, H, W, 3)`` uint8 of frame ``index``."""
    v = video[:, :, index].detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return (v * 255 + 0.5).astype(np.uint8)


def training_picture(path: str, source: torch.Tensor, driving: torch.Tensor, generated: Dict, rows: int = 4) -> str:
    """A grid of up to ``rows`` videos of the batch: source (its keypoints) | driving (its keypoints) |
    deformed source | prediction; first driving frame. Written atomically."""
    from fastmotion.inference.drawing import contact_sheet, draw_keypoints
    from fastmotion.io import write_image

    kp_source = generated["kp_source"]["mean"][:, 0].float().cpu().numpy()
    kp_driving = generated["kp_driving"]["mean"][:, 0].float().cpu().numpy()
    src, drv = _frames(source), _frames(driving)
    deformed = _frames(generated["video_deformed"]) if "video_deformed" in generated else np.zeros_like(src)
    prediction = _frames(generated["video_prediction"])
    scale = max(1, 128 // src.shape[1])

    def big(image):
        return np.kron(image, np.ones((scale, scale, 1), dtype=image.dtype)) if scale > 1 else image

    grid = [[draw_keypoints(big(src[i]), kp_source[i]), draw_keypoints(big(drv[i]), kp_driving[i]), big(deformed[i]),
             big(prediction[i])] for i in range(min(rows, src.shape[0]))]
    sheet = contact_sheet(grid, titles=("source", "driving + keypoints", "deformed", "prediction"))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return write_image(path, sheet)
