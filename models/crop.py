"""The face-crop contract shared by training and inference.

A face is described by a `FaceSquare` (centre and side, in image pixels). The network sees the
square, expanded by `CropSpec.expand`, warped to `input_size` pixels of grayscale in [0, 1], and
predicts points in crop-normalised coordinates: -1 and +1 are the edges of the warped crop.
Training makes its crops here and the video pipeline makes its crops here, so they cannot drift.

A square comes either from landmarks (`square_from_points`: bbox centre, longest side) or from a
detector box through a calibration fitted on training data (`square_from_box`), which maps the
detector's habits (Haar boxes sit high and cut the chin) onto the landmark square the network
was trained around.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropSpec:
    """No defaults on purpose: a spec belongs to one model (`registry.ARCHS`) and travels in its
    checkpoint, so a crop made without naming it could silently differ from the one it was trained on."""
    input_size: int
    expand: float                # crop side = expand * square side


@dataclass(frozen=True)
class BoxCalibration:
    """Detector box (x, y, w, h) -> face square: centre = box centre + (dx, dy) * w, side = scale * w."""
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0


def square_from_points(points: np.ndarray) -> np.ndarray:
    """(..., 68, 2) points -> (..., 3) squares (cx, cy, side) from the points' bounding box."""
    lo, hi = points.min(axis=-2), points.max(axis=-2)
    centre = (lo + hi) / 2
    side = (hi - lo).max(axis=-1, keepdims=True)
    return np.concatenate([centre, side], axis=-1).astype(np.float32)


def square_from_box(boxes: np.ndarray, cal: BoxCalibration) -> np.ndarray:
    """(N, 4) detector boxes x, y, w, h -> (N, 3) squares via the detector's calibration."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    x, y, w, h = boxes.T
    cx = x + w / 2 + cal.dx * w
    cy = y + h / 2 + cal.dy * w
    return np.stack([cx, cy, cal.scale * w], axis=1).astype(np.float32)


def crop_matrix(square: np.ndarray, spec: CropSpec) -> np.ndarray:
    """2x3 affine matrix taking image pixels to crop pixels for one square."""
    cx, cy, side = (float(v) for v in square)
    s = spec.input_size / (side * spec.expand)
    half = spec.input_size / 2
    return np.array([[s, 0.0, half - s * cx], [0.0, s, half - s * cy]], np.float64)


def warp_crop(gray: np.ndarray, matrix: np.ndarray, spec: CropSpec) -> np.ndarray:
    """Grayscale uint8 image -> (S, S) uint8 crop; outside the image is replicated edge."""
    n = spec.input_size
    return cv2.warpAffine(gray, matrix, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def to_crop_coords(points: np.ndarray, matrix: np.ndarray, spec: CropSpec) -> np.ndarray:
    """Image points (..., 2) -> crop-normalised coordinates (about [-1, 1])."""
    p = points @ matrix[:, :2].T + matrix[:, 2]
    half = spec.input_size / 2
    return ((p - half) / half).astype(np.float32)


def from_crop_coords(coords: np.ndarray, matrix: np.ndarray, spec: CropSpec) -> np.ndarray:
    """Crop-normalised coordinates (..., 2) -> image points, inverting `crop_matrix`."""
    half = spec.input_size / 2
    p = coords * half + half
    inv = cv2.invertAffineTransform(matrix)
    return (p @ inv[:, :2].T + inv[:, 2]).astype(np.float32)


def to_input(crops: np.ndarray) -> np.ndarray:
    """(B, S, S) uint8 crops -> (B, 1, S, S) float32 in [0, 1], the network's input."""
    return (np.asarray(crops, np.float32) / 255.0)[:, None]
