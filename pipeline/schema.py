"""The Parquet schema of a track file: one place, read by the writer, the renderer and the docs.

One row per face per frame, plus one row (track_id and all face columns null) for each frame with
no face, so "no face" differs from "not processed". Coordinates are pixels in the upright frame (the
stored frame rotated by the display matrix, as a player shows it). Points use OpenFace-style names
x_0..x_67, y_0..y_67 in iBUG 300-W order (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth
48-67). x, y, w, h is the bounding box of the 68 points; score is the model's self-consistency
confidence in [0, 1] (models/inference.py, models/score.py); yaw, pitch, roll is the head pose in
degrees fitted to the points as written (models/pose.py states the signs).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from facetracks.models.landmarks68 import NUM_POINTS
from facetracks.models.pose import head_pose

SCHEMA_VERSION = 2      # 2: yaw, pitch, roll
META_KEY = b"facetracks"
POINT_COLUMNS = [f"x_{k}" for k in range(NUM_POINTS)] + [f"y_{k}" for k in range(NUM_POINTS)]
BOX_COLUMNS = ["x", "y", "w", "h"]
POSE_COLUMNS = ["yaw", "pitch", "roll"]

SCHEMA = pa.schema(
    [pa.field("video", pa.string(), nullable=False),
     pa.field("frame_index", pa.int32(), nullable=False),
     pa.field("pts", pa.int64()),
     pa.field("time_s", pa.float64()),
     pa.field("track_id", pa.int32())]
    + [pa.field(c, pa.float32()) for c in BOX_COLUMNS + ["score"] + POSE_COLUMNS + POINT_COLUMNS]
)


def geometry_columns(points: np.ndarray, frame_size: tuple[int, int] | None) -> dict[str, np.ndarray]:
    """(N, 68, 2) points (NaN rows: no face) -> the columns derived from them: the box, the head
    pose and the points themselves. The one place they are computed, for raw and smoothed tracks,
    so every derived column describes the points as written. The pose needs the camera, so the
    frame (width, height); without it the pose is NaN (null in the file), never a guess."""
    pts = np.asarray(points, np.float32).reshape(-1, NUM_POINTS, 2)
    lo, hi = (pts.min(axis=1), pts.max(axis=1)) if len(pts) else (np.zeros((0, 2)), np.zeros((0, 2)))
    pose = head_pose(pts, frame_size) if frame_size else np.full((len(pts), 3), np.nan, np.float32)
    cols = {"x": lo[:, 0], "y": lo[:, 1], "w": hi[:, 0] - lo[:, 0], "h": hi[:, 1] - lo[:, 1],
            "yaw": pose[:, 0], "pitch": pose[:, 1], "roll": pose[:, 2]}
    cols.update(points_to_columns(pts))
    return cols


def points_to_columns(points: np.ndarray) -> dict[str, np.ndarray]:
    """(N, 68, 2) points -> {"x_0": (N,), ..., "y_67": (N,)}, the columns of the schema."""
    pts = np.asarray(points, np.float32).reshape(-1, NUM_POINTS, 2)
    return dict(zip(POINT_COLUMNS, np.concatenate([pts[..., 0], pts[..., 1]], axis=1).T))


def points_from_columns(df) -> np.ndarray:
    """A pandas frame of track rows (faces only) -> (N, 68, 2) float32 points."""
    flat = df[POINT_COLUMNS].to_numpy(np.float32).reshape(-1, 2 * NUM_POINTS)
    return np.stack([flat[:, :NUM_POINTS], flat[:, NUM_POINTS:]], axis=-1)


def face_column(values: np.ndarray, face: np.ndarray) -> pa.Array:
    """A float32 face column: null on a no-face row, and null where the value is NaN (a score that
    was not measured, a pose that did not fit), never NaN."""
    values = np.asarray(values, np.float32)
    return pa.array(values, pa.float32(), mask=~face | np.isnan(values))
