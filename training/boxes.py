"""Detector boxes for labelled images: which detection is the labelled face.

A detection counts as the labelled face when its centre lies within half its width of the centre
of the landmark square; among several, the nearest wins. The truth is used only to decide which
detection to score (as 300-W style evaluations do), never to move a box.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from tqdm import tqdm

from facetracks.models.crop import square_from_points

from .data import Sample

Detector = Callable[[np.ndarray], np.ndarray]   # gray -> (N, 5) x, y, w, h, score


def match_detection(dets: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    if len(dets) == 0:
        return None
    cx, cy, _ = square_from_points(points)
    centres = dets[:, :2] + dets[:, 2:4] / 2
    d = np.hypot(centres[:, 0] - cx, centres[:, 1] - cy)
    i = int(d.argmin())
    return dets[i, :4].astype(np.float32) if d[i] <= 0.5 * dets[i, 2] else None


def detect_boxes(samples: list[Sample], detect: Detector, desc: str = "detect") -> list[np.ndarray | None]:
    return [match_detection(detect(s.gray), s.points) for s in tqdm(samples, desc=desc, leave=False, mininterval=5)]
