"""The face-crop contract shared by training and inference.

A face is described by a `FaceSquare` (centre and side, in image pixels). The network sees the
square, expanded by `CropSpec.expand`, warped to `input_size` pixels of grayscale in [0, 1], and
predicts points in crop-normalised coordinates: -1 and +1 are the edges of the warped crop.
Training makes its crops here and the video pipeline makes its crops here, so they cannot drift.

A square comes either from landmarks (`square_from_points`: bbox centre, longest side) or from a
detector box through a calibration fitted on training data (`square_from_box`), which maps the
detector's habits (Haar boxes sit high and cut the chin) onto the landmark square the network
was trained around.

A square may carry a fourth number, a turn (radians): the crop is then cut turned by it, so a
head tilted far past what the network was trained on is read upright (`square_along_face`).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .landmarks68 import FLIP_PERM, LEFT_EYE, RIGHT_EYE


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


def squares_2d(squares: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Squares (cx, cy, side), or (cx, cy, side, turn), one or many, as an (N, 3) or (N, 4) array."""
    sq = np.asarray(squares, dtype)
    return sq.reshape(-1, 4 if sq.ndim and sq.shape[-1] == 4 else 3)


def square_from_points(points: np.ndarray) -> np.ndarray:
    """(..., 68, 2) points -> (..., 3) squares (cx, cy, side) from the points' bounding box."""
    lo, hi = points.min(axis=-2), points.max(axis=-2)
    centre = (lo + hi) / 2
    side = (hi - lo).max(axis=-1, keepdims=True)
    return np.concatenate([centre, side], axis=-1).astype(np.float32)


UPRIGHT_ZONE = np.radians(15.0)   # a face tilted this far is cropped upright, as the network was trained


def nearest_quarter(angle):
    """The multiple of a quarter turn nearest to `angle` (radians; arrays too)."""
    return np.round(np.asarray(angle) / (np.pi / 2)) * (np.pi / 2)


def square_along_face(points: np.ndarray, zone: float = UPRIGHT_ZONE) -> np.ndarray:
    """(N, 68, 2) points -> (N, 4) squares (cx, cy, side, turn): the crop to read the face again.

    Within `zone` of upright (the eye line's angle) it is `square_from_points`' square, turn 0:
    the network was trained on crops cut upright around faces at their own tilt (the labels' roll
    spreads 7.8 degrees) turned again at random (12 degrees), and on those it reads best (cutting
    every face exactly level cost 0.08 pt of val NME). Past the zone the crop is turned by the
    excess, so a face tilted 45 degrees is read as one tilted 15: the square is the points' box in
    that turned frame. Measured on val faces turned by 45 degrees, read from an upright square then
    re-cut: NME 5.56 -> 3.23 % (`accurate`), 9.99 -> 4.42 % (`fast`); upright faces unchanged
    (docs/eval/tilt.py). A face within the zone of a quarter turn or a half (`nearest_quarter`:
    lying on its side, upside down) is cut turned by exactly that and read at its own tilt from
    it, as an upright face is: it was read tilted by the whole zone, 1.4-1.8 % of the inter-ocular
    distance from the upright reading, now 0.3-0.8 (docs/eval/quarter_turns.py). Only there: a face
    at 60 degrees read tilted 15 towards 90 rather than from 0 lost 41 of 98 frames of
    `tilt.py`'s clip (the network's level is not quite the eyes': the mean face's eyes tilt 6)."""
    p = np.asarray(points, np.float64).reshape(-1, points.shape[-2], 2)
    out = np.zeros((len(p), 4), np.float32)
    out[:, :3] = square_from_points(p.astype(np.float32))
    eyes = p[:, list(LEFT_EYE)].mean(axis=1) - p[:, list(RIGHT_EYE)].mean(axis=1)   # image left -> image right
    tilt = np.arctan2(eyes[:, 1], eyes[:, 0])
    turn = np.sign(tilt) * np.maximum(0.0, np.abs(tilt) - zone)
    quarter = nearest_quarter(tilt)
    lying = (quarter != 0) & (np.abs(tilt - quarter) <= zone)
    turn[lying] = quarter[lying]
    for i in np.flatnonzero(np.isfinite(turn) & (turn != 0)):
        c, s = np.cos(turn[i]), np.sin(turn[i])
        q = p[i] @ np.array([[c, -s], [s, c]])                   # the points in the frame turned by -turn
        lo, hi = q.min(axis=0), q.max(axis=0)
        mid = (lo + hi) / 2
        out[i] = (c * mid[0] - s * mid[1], s * mid[0] + c * mid[1], (hi - lo).max(), turn[i])
    return out


def square_from_box(boxes: np.ndarray, cal: BoxCalibration) -> np.ndarray:
    """(N, 4) detector boxes x, y, w, h -> (N, 3) squares via the detector's calibration."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    x, y, w, h = boxes.T
    cx = x + w / 2 + cal.dx * w
    cy = y + h / 2 + cal.dy * w
    return np.stack([cx, cy, cal.scale * w], axis=1).astype(np.float32)


def tilt_of_turn(turn: float, zone: float = UPRIGHT_ZONE) -> float:
    """The face's tilt, as near as the turn `square_along_face` gave its crop says it: a quarter
    turn or a half is a face lying within the zone of it (taken as exactly that), any other turn
    a face past the zone by that much, so tilted the zone further."""
    if turn and turn == float(nearest_quarter(turn)):
        return turn
    return turn + float(np.sign(turn)) * zone


def crop_matrix(square: np.ndarray, spec: CropSpec) -> np.ndarray:
    """2x3 affine matrix taking image pixels to crop pixels for one square."""
    return crop_matrices(square, spec)[0]


def crop_matrices(squares: np.ndarray, spec: CropSpec) -> np.ndarray:
    """2x3 affine matrices taking image pixels to crop pixels for (N, 3) squares, or (N, 4) with a
    turn (radians: the crop is the square turned by it, `square_along_face`) -> (N, 2, 3)."""
    sq = squares_2d(squares, np.float64)
    s = spec.input_size / (sq[:, 2] * spec.expand)
    half = spec.input_size / 2
    turn = sq[:, 3] if sq.shape[1] == 4 else np.zeros(len(sq))
    c, si = s * np.cos(turn), s * np.sin(turn)       # crop = s R(-turn) (p - centre) + half
    m = np.zeros((len(sq), 2, 3), np.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, si, -si, c
    m[:, 0, 2] = half - (c * sq[:, 0] + si * sq[:, 1])        # a turn of 0 adds exact zeros: the upright
    m[:, 1, 2] = half - (-si * sq[:, 0] + c * sq[:, 1])       # crop's numbers, bit for bit
    return m


def invert_affines(m: np.ndarray) -> np.ndarray:
    """(N, 2, 3) -> inverse maps, in `cv2.invertAffineTransform`'s arithmetic (1/D, then products)."""
    a, b, c, d, e, f = (m[:, i, j] for i in (0, 1) for j in (0, 1, 2))
    det = a * e - b * d
    det = np.divide(1.0, det, out=np.zeros_like(det), where=det != 0)
    a2, b2, d2, e2 = e * det, -b * det, -d * det, a * det
    out = np.empty_like(m)
    out[:, 0, 0], out[:, 0, 1], out[:, 0, 2] = a2, b2, -a2 * c - b2 * f
    out[:, 1, 0], out[:, 1, 1], out[:, 1, 2] = d2, e2, -d2 * c - e2 * f
    return out


def points_from_crops(coords: np.ndarray, matrices: np.ndarray, spec: CropSpec) -> np.ndarray:
    """Crop-normalised coordinates (N, K, 2) of N crops -> (N, K, 2) image points, inverting each
    crop's matrix (`invert_affines`)."""
    half = spec.input_size / 2
    p = (coords * half + half).astype(np.float64)
    inv = invert_affines(np.asarray(matrices, np.float64))
    x = p[..., 0] * inv[:, None, 0, 0] + p[..., 1] * inv[:, None, 0, 1] + inv[:, None, 0, 2]
    y = p[..., 0] * inv[:, None, 1, 0] + p[..., 1] * inv[:, None, 1, 1] + inv[:, None, 1, 2]
    return np.stack([x, y], -1).astype(np.float32)


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
    coords = np.asarray(coords)
    return points_from_crops(coords.reshape(1, -1, 2), matrix[None], spec).reshape(coords.shape)


def unmirror_coords(coords, spec: CropSpec):
    """(N, 68, 2) crop-normalised points read from mirrored crops (`x.flip(-1)`), numpy or torch ->
    the same points in the unmirrored crops: the 68-point permutation swaps the sides back, and
    pixel i of a row is pixel S-1-i of its mirror. Inference's mirrored pass and a training
    teacher's both undo the mirror here."""
    out = coords[:, FLIP_PERM]
    out[..., 0] = -out[..., 0] - 2.0 / spec.input_size
    return out


def to_input(crops):
    """(B, S, S) uint8 crops, numpy or torch (on any device) -> (B, 1, S, S) float32 in [0, 1], the
    network's input. Training and inference both call this: one scaling, the same float32 values."""
    if isinstance(crops, np.ndarray):
        return (crops.astype(np.float32) / 255.0)[:, None]
    return (crops.float() / 255.0)[:, None]
