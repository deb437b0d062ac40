"""The Parquet schema of a track file: one place, read by the writer, the renderer and the docs.

One row per face per frame, plus one row (track_id and all face columns null) for each frame with
no face, so "no face" differs from "not processed". Coordinates are pixels in the upright frame (the
stored frame rotated by the display matrix, as a player shows it). Points use OpenFace-style names
x_0..x_67, y_0..y_67 in iBUG 300-W order (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth
48-67). x, y, w, h is the bounding box of the 68 points; score is the model's self-consistency
confidence in [0, 1] (models/inference.py).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from facetracks.models.landmarks68 import NUM_POINTS

SCHEMA_VERSION = 1
META_KEY = b"facetracks"
POINT_COLUMNS = [f"x_{k}" for k in range(NUM_POINTS)] + [f"y_{k}" for k in range(NUM_POINTS)]
BOX_COLUMNS = ["x", "y", "w", "h"]

SCHEMA = pa.schema(
    [pa.field("video", pa.string(), nullable=False),
     pa.field("frame_index", pa.int32(), nullable=False),
     pa.field("pts", pa.int64()),
     pa.field("time_s", pa.float64()),
     pa.field("track_id", pa.int32())]
    + [pa.field(c, pa.float32()) for c in BOX_COLUMNS + ["score"] + POINT_COLUMNS]
)


def points_to_columns(points: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 68, 2) points -> {"x_0": (N,), ..., "y_67": (N,)}, the columns of the schema."""
    pts = np.asarray(points, np.float32).reshape(-1, NUM_POINTS, 2)
    return dict(zip(POINT_COLUMNS, np.concatenate([pts[..., 0], pts[..., 1]], axis=1).T))


def points_from_columns(df) -> np.ndarray:
    """A pandas frame of track rows (faces only) -> (N, 68, 2) float32 points."""
    flat = df[POINT_COLUMNS].to_numpy(np.float32).reshape(-1, 2 * NUM_POINTS)
    return np.stack([flat[:, :NUM_POINTS], flat[:, NUM_POINTS:]], axis=-1)
