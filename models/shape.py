"""The shipped shape prior (training/shape_model.py builds it from identity-train labels):
a 2-D point-distribution model for the landmark score, and the generic 3-D face for head pose.

A face's 68 points, with position, size and in-plane rotation taken out (Procrustes), lie close
to a low-dimensional space of real face shapes; points spread on a cheek, a shirt or a face
upside down do not. `shape_distance` says how far: the Mahalanobis length of the aligned shape's
coordinates on the main modes plus its residual outside them, each per degree of freedom, so a
typical training face scores about 1.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SHAPE_FILE = os.path.join(os.path.dirname(__file__), "weights", "face_shape.npz")


def normalise(shapes: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> centred, unit RMS distance from the centre."""
    c = shapes - shapes.mean(axis=-2, keepdims=True)
    return c / (np.sqrt((c ** 2).sum(axis=(-1, -2), keepdims=True) / c.shape[-2]) + 1e-12)


def align_to(shapes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Rotate each centred unit shape (..., 68, 2) onto `ref` (least squares, no reflection) and
    scale it to fit: what is left is shape, not pose."""
    a = (shapes[..., 0] * ref[:, 0] + shapes[..., 1] * ref[:, 1]).sum(-1)
    b = (shapes[..., 0] * ref[:, 1] - shapes[..., 1] * ref[:, 0]).sum(-1)
    norm = (shapes ** 2).sum(axis=(-1, -2)) + 1e-12
    a, b = (a / norm)[..., None], (b / norm)[..., None]
    return np.stack([a * shapes[..., 0] - b * shapes[..., 1], b * shapes[..., 0] + a * shapes[..., 1]], axis=-1)


@dataclass(frozen=True)
class ShapeModel:
    mean: np.ndarray           # (68, 2) unit Procrustes mean
    modes: np.ndarray          # (K, 136) unit rows
    mode_var: np.ndarray       # (K,)
    residual_var: float        # per coordinate, outside the modes
    template_3d: np.ndarray    # (68, 3) millimetres, camera axes at zero pose

    def shape_distance(self, points: np.ndarray) -> np.ndarray:
        """(..., 68, 2) image points -> (...) distance from the training shapes (about 1 typical)."""
        x = align_to(normalise(np.asarray(points, np.float64)), self.mean.astype(np.float64))
        d = x.reshape(*x.shape[:-2], x.shape[-2] * 2) - self.mean.reshape(-1)
        b = d @ self.modes.T.astype(np.float64)
        inside = (b ** 2 / self.mode_var).mean(axis=-1)
        outside = ((d ** 2).sum(axis=-1) - (b ** 2).sum(axis=-1)) / (d.shape[-1] - len(self.modes)) / self.residual_var
        return np.sqrt((inside + outside) / 2).astype(np.float32)


@lru_cache(maxsize=4)
def load_shape_model(path: str = SHAPE_FILE) -> ShapeModel:
    """Plain arrays (allow_pickle off): nothing in the file can run code."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no shape model (python -m facetracks.training.shape_model DATA_DIR)")
    with np.load(path, allow_pickle=False) as z:
        return ShapeModel(z["mean"], z["modes"], z["mode_var"], float(z["residual_var"]), z["template_3d"])
