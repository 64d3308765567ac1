"""Which driving frame should anchor relative motion: the one whose pose is closest to the source's.

Relative motion moves the source keypoints by ``kp_driving - kp_anchor``; an anchor in the same
pose as the source keeps the source's proportions. Poses are compared after removing position
and size: each keypoint set is centred on its mean and divided by the square root of its convex
hull's area (the spread, when the keypoints are collinear), then the summed squared distance
between corresponding keypoints decides.
"""
from __future__ import annotations

import numpy as np

from fastmotion.models.normalize import convex_hull_area


def normalized_pose(points) -> np.ndarray:
    """``(K, 2)`` keypoint means -> centred, unit-scale keypoints."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts - pts.mean(axis=0)
    scale = np.sqrt(convex_hull_area(pts))
    if not scale > 1e-12:
        scale = np.sqrt((pts ** 2).sum(axis=1).mean())
    return pts / scale if scale > 1e-12 else pts


def best_frame_index(source_kp, driving_kps) -> int:
    """Index of the driving frame (``(T, K, 2)`` keypoint means) whose normalized pose is closest
    to the source's (``(K, 2)``); the first such frame on ties."""
    driving_kps = np.asarray(driving_kps, dtype=np.float64)
    if driving_kps.ndim != 3 or len(driving_kps) == 0:
        raise ValueError(f"best_frame_index: expected driving keypoints (T, K, 2) with T > 0, "
                         f"got shape {driving_kps.shape}")
    target = normalized_pose(source_kp)
    distances = [((normalized_pose(kp) - target) ** 2).sum() for kp in driving_kps]
    return int(np.argmin(distances))
