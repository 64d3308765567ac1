"""Datasets of videos for training and evaluation, and the project's synthetic moving-shapes videos."""
from fastmotion.data.synthetic import render_video, write_synthetic_videos

__all__ = ["render_video", "write_synthetic_videos"]
