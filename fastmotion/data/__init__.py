"""Datasets of videos for training and evaluation, and the project's synthetic moving-shapes videos.

- :class:`FramesDataset`: a folder of videos (strips, gif, mp4/mov/webm, frame folders) as the original
  Monkey-Net reads it, with the original training augmentations (:mod:`fastmotion.data.augmentation`).
- :class:`DatasetRepeater`, :class:`PairedDataset`: ``num_repeats`` and source/driving pairs.
- :func:`datasets_from_config`: train and test datasets from a config's ``dataset_params``.
- :func:`make_loader`: a DataLoader that keeps the training step fed.
- :func:`write_synthetic_videos`: seeded moving-shapes videos (``fastmotion synthetic``).
"""
from fastmotion.data.augmentation import VideoAugmentation
from fastmotion.data.config import datasets_from_config
from fastmotion.data.errors import DataError
from fastmotion.data.frames_dataset import FramesDataset, seeded_split
from fastmotion.data.loader import EpochSampler, make_loader
from fastmotion.data.synthetic import render_video, write_synthetic_videos
from fastmotion.data.wrappers import DatasetRepeater, PairedDataset

__all__ = ["DataError", "FramesDataset", "DatasetRepeater", "PairedDataset", "VideoAugmentation", "EpochSampler",
           "datasets_from_config", "make_loader", "seeded_split", "render_video", "write_synthetic_videos"]
