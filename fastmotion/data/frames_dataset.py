"""``FramesDataset``: a folder of videos, as the original Monkey-Net dataset reads it.

``root_dir`` holds ``train/`` and ``test/`` subfolders, or is one flat folder that is split 80/20 with
the original's seeded split. Each entry is one video: a ``.png``/``.jpg`` frame strip (split by
``image_shape``), a ``.gif``, an ``.mp4``/``.mov``/``.webm`` (PyAV), or a folder of frames. An item is
``{"video": (3, T, H, W) float32 in [0, 1], "name": file name}``: in train mode ``num_frames`` random
frames (sorted, drawn with replacement as the original) with the training augmentations; in test mode
every frame, unchanged. Only the frames used are kept in memory (a training clip from a container is
drawn while the container is decoded once).
"""
from __future__ import annotations

import math
import multiprocessing
import os
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from fastmotion.data.augmentation import VideoAugmentation
from fastmotion.data.errors import DataError
from fastmotion.io import video as video_io

TEST_FRACTION = 0.2
# PIL modes that fastmotion.io.video.to_rgb_uint8 converts itself (others go through PIL's convert).
_DIRECT_MODES = ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L")


def seeded_split(names: Sequence[str], seed: int, test_fraction: float = TEST_FRACTION) -> Tuple[List[str], List[str]]:
    """The original's random train/test split (scikit-learn's ``train_test_split(names,
    random_state=seed, test_size=0.2)``): ``ceil(0.2 n)`` test items taken from the front of a seeded
    permutation, the rest (in permutation order) for training."""
    n = len(names)
    n_test = int(math.ceil(test_fraction * n))
    permutation = np.random.RandomState(seed).permutation(n)
    return [names[i] for i in permutation[n_test:]], [names[i] for i in permutation[:n_test]]


def list_videos(folder: str) -> List[str]:
    """Names of the videos in ``folder`` in sorted order (files with a video extension, and folders);
    hidden entries are ignored. Sorted, not ``os.listdir`` order, so a split is the same on every machine."""
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise DataError(f"root_dir {folder}: cannot list the folder ({exc.strerror or exc})") from None
    return [n for n in names if not n.startswith(".") and video_io.is_video_path(os.path.join(folder, n))]


def _image_shape(image_shape) -> Tuple[int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) not in (2, 3) or min(shape[:2]) <= 0 or (len(shape) == 3 and shape[2] != 3):
        raise DataError(f"image_shape must be [height, width] or [height, width, 3] with positive sizes, "
                        f"got {list(image_shape)}")
    return shape[0], shape[1]


class FramesDataset(Dataset):
    """Videos of a folder; see the module docstring. ``skip_bad``: a video that cannot be read is
    reported with a warning, counted in ``skipped`` and replaced by the next readable one, instead of
    raising :class:`DataError`."""

    def __init__(self, root_dir, image_shape=(64, 64, 3), is_train: bool = True, random_seed: int = 0,
                 pairs_list: Optional[str] = None, augmentation_params: Optional[dict] = None, num_frames: int = 2,
                 skip_bad: bool = False):
        root_dir = os.fspath(root_dir)
        self.frame_size = _image_shape(image_shape)
        self.image_shape = (*self.frame_size, 3)
        self.is_train = bool(is_train)
        self.pairs_list = pairs_list
        self.num_frames = int(num_frames)
        self.skip_bad = bool(skip_bad)
        if self.num_frames < 1:
            raise DataError(f"num_frames must be >= 1, got {num_frames}")
        if not os.path.isdir(root_dir):
            what = "is not a folder" if os.path.exists(root_dir) else "does not exist"
            raise DataError(f"root_dir {root_dir} {what}; expected a folder of videos, or one with train/ and test/ "
                            f"subfolders")
        train_dir, test_dir = os.path.join(root_dir, "train"), os.path.join(root_dir, "test")
        if os.path.isdir(train_dir) or os.path.isdir(test_dir):
            split = "train" if self.is_train else "test"
            self.root_dir = os.path.join(root_dir, split)
            if not os.path.isdir(self.root_dir):
                raise DataError(f"root_dir {root_dir} has a {'test' if self.is_train else 'train'}/ subfolder but no "
                                f"{split}/ subfolder; expected both, or a flat folder of videos")
            self.images = list_videos(self.root_dir)
            where = self.root_dir
        else:
            self.root_dir = root_dir
            train, test = seeded_split(list_videos(root_dir), random_seed)
            self.images = train if self.is_train else test
            where = f"{root_dir} ({'training' if self.is_train else 'test'} part of the seeded 80/20 split)"
        if not self.images:
            raise DataError(f"root_dir {where} has no videos; expected frame strips (.png, .jpg), .gif, .mp4, .mov, "
                            f".webm files or folders of frames")
        self.transform = VideoAugmentation(**(augmentation_params or {})) if self.is_train else None
        # Shared with DataLoader workers, so the main process sees every skip.
        self._skipped = multiprocessing.Value("i", 0) if self.skip_bad else None

    @property
    def skipped(self) -> int:
        """How many times a bad video was skipped (``skip_bad=True``), over all DataLoader workers."""
        return 0 if self._skipped is None else int(self._skipped.value)

    def __len__(self) -> int:
        return len(self.images)

    def path(self, index: int) -> str:
        return os.path.join(self.root_dir, self.images[index])

    def _read(self, path: str) -> np.ndarray:
        if not self.is_train:
            return video_io.read_video(path, self.frame_size)
        kind = video_io.video_kind(path)
        if kind in ("container", "gif"):  # counting their frames means decoding them
            return self._sample_while_decoding(path)
        if kind == "strip":
            return self._strip_tiles(path)
        count = video_io.count_frames(path, self.frame_size)
        if count <= 0:
            raise video_io.VideoError(f"{path}: has no frames")
        indices = torch.randint(0, count, (self.num_frames,)).sort().values.tolist()
        return video_io.read_video(path, self.frame_size, frames=indices)

    def _strip_tiles(self, path: str) -> np.ndarray:
        """Random sorted tiles of a frame strip, converted to RGB tile by tile: converting the whole strip
        first (as ``read_video`` does) costs a third of the loading time of a 32-frame strip."""
        image = video_io._open_image(path)
        with image:
            try:
                image.load()
            except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
                raise video_io.VideoError(f"{path}: cannot decode ({exc})") from None
            width, height = image.size
            tile = video_io._strip_tile_width(path, width, height, self.frame_size)
            indices = torch.randint(0, width // tile, (self.num_frames,)).sort().values.tolist()
            frames = {}
            for i in sorted(set(indices)):
                frame = image.crop((i * tile, 0, (i + 1) * tile, height))
                if frame.mode not in _DIRECT_MODES:
                    frame = frame.convert("RGBA" if "A" in frame.getbands() else "RGB")
                frames[i] = video_io.to_rgb_uint8(np.asarray(frame), path)
        return np.stack([frames[i] for i in indices])

    def _sample_while_decoding(self, path: str) -> np.ndarray:
        """``num_frames`` frames drawn uniformly with replacement, sorted, in one decoding pass that holds
        only the kept frames: a container's frame count in its header can be missing or wrong, and
        counting by decoding (always, for a GIF) would decode the video twice. Slot ``s`` keeps frame ``i`` with probability
        ``1 / (i + 1)`` (a reservoir of one per slot), which leaves each slot uniform over the frames."""
        kept: List[Optional[np.ndarray]] = [None] * self.num_frames
        where = [0] * self.num_frames
        for i, frame in enumerate(video_io.iter_frames(path)):
            for slot in (torch.randint(0, i + 1, (self.num_frames,)) == 0).nonzero().flatten().tolist():
                kept[slot], where[slot] = frame, i
        if kept[0] is None:
            raise video_io.VideoError(f"{path}: has no frames")
        order = sorted(range(self.num_frames), key=lambda s: where[s])
        frames = [kept[s] for s in order]
        if len({f.shape for f in frames}) > 1:
            raise video_io.VideoError(f"{path}: frames of different sizes {sorted({f.shape for f in frames})}")
        return np.stack(frames)

    def load(self, index: int) -> dict:
        """Item ``index`` without skipping: a :class:`DataError` naming the file if it cannot be read."""
        path = self.path(index)
        try:
            frames = self._read(path)
        except video_io.VideoError as exc:
            raise DataError(str(exc)) from None
        except (OSError, RuntimeError, ValueError, EOFError) as exc:  # decoder failures not already wrapped
            raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
        if tuple(frames.shape[1:3]) != self.frame_size:
            raise DataError(f"{path}: frames are {frames.shape[2]}x{frames.shape[1]} (WxH), expected "
                            f"{self.frame_size[1]}x{self.frame_size[0]} (image_shape {list(self.image_shape)})")
        clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)  # (T, C, H, W)
        if self.transform is not None:
            clip = self.transform(clip)
        return {"video": clip.permute(1, 0, 2, 3).contiguous(), "name": self.images[index]}

    def __getitem__(self, index: int) -> dict:
        if not self.skip_bad:
            return self.load(index)
        n = len(self.images)
        for attempt in range(n):
            i = (index + attempt) % n
            try:
                return self.load(i)
            except DataError as exc:
                with self._skipped.get_lock():
                    self._skipped.value += 1
                warnings.warn(f"skipping a bad video: {exc}", RuntimeWarning, stacklevel=2)
        raise DataError(f"root_dir {self.root_dir}: none of its {n} videos could be read")
