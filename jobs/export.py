"""Track files as OpenFace 2.x `FeatureExtraction` / `FaceLandmarkVidMulti` CSVs, so scripts written
for OpenFace read our tracks unchanged.

OpenFace's layout (lib/local/Utilities/src/RecorderCSV.cpp): a header whose names are separated by
", ", then `frame, face_id, timestamp, confidence, success`, the pose columns, then `x_0 … x_67,
y_0 … y_67`. Values are fixed-point. What we have is mapped as:
- frame = frame_index + 1 (OpenFace counts from 1); timestamp = time_s (seconds, from the PTS);
- face_id = track_id; confidence = score (empty when the run measured none); success = 1;
- a frame with no face: one row, face_id 0, confidence 0, success 0, every other value 0 (what
  OpenFace writes when tracking fails);
- pose_Rx, pose_Ry, pose_Rz (radians, OpenFace's R = Rx·Ry·Rz) from yaw, pitch, roll when the
  track file has them (models/pose.py's convention, re-expressed, not merely renamed); OpenFace's
  translation pose_Tx..Tz needs a calibrated camera and is left out.
"""
from __future__ import annotations

from typing import TextIO

import numpy as np
import pandas as pd

from facetracks.models.landmarks68 import NUM_POINTS

ID_COLUMNS = ["frame", "face_id", "timestamp", "confidence", "success"]
POSE_COLUMNS = ["pose_Rx", "pose_Ry", "pose_Rz"]
LANDMARK_COLUMNS = [f"x_{k}" for k in range(NUM_POINTS)] + [f"y_{k}" for k in range(NUM_POINTS)]
SEPARATOR = ", "
# decimals per column: OpenFace's for frame and timestamp; more for what we measure finer than it
# prints (points to 0.1 px and confidence to 0.01 in OpenFace)
DECIMALS = {"timestamp": 3, "confidence": 3, "pose": 4, "points": 2}


def has_pose(df: pd.DataFrame) -> bool:
    return all(c in df.columns for c in ("yaw", "pitch", "roll"))


def openface_pose(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Our yaw, pitch, roll (degrees) -> OpenFace's (Rx, Ry, Rz) radians: the same head rotation
    (model axes x right, y down, z away from the camera in both) decomposed as OpenFace's
    RotationMatrix2Euler does, R = Rx(a) Ry(b) Rz(g). NaN in, NaN out."""
    from facetracks.models.pose import rotation_from_angles
    out = np.full((len(yaw), 3), np.nan)
    for i in np.flatnonzero(np.isfinite(yaw) & np.isfinite(pitch) & np.isfinite(roll)):
        r = rotation_from_angles(float(yaw[i]), float(pitch[i]), float(roll[i]))
        out[i] = (np.arctan2(-r[1, 2], r[2, 2]), np.arcsin(np.clip(r[0, 2], -1, 1)), np.arctan2(-r[0, 1], r[0, 0]))
    return out


NEEDED = ["frame_index", "time_s", "track_id", "score", *LANDMARK_COLUMNS]     # what to_openface reads


def to_openface(tracks: pd.DataFrame) -> pd.DataFrame:
    """Track rows (the Parquet schema's columns) -> OpenFace's columns, one row per face per frame
    and one per faceless frame, ordered by frame then face_id. ValueError naming the columns the
    table lacks (a file written by another tool, or edited)."""
    missing = [c for c in NEEDED if c not in tracks.columns]
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        raise ValueError(f"no {shown} column{'s' if len(missing) > 1 else ''} (a track file has every column of "
                         f"the schema: pipeline/schema.py)")
    df = tracks.sort_values(["frame_index", "track_id"], na_position="first", kind="stable")
    face = df.track_id.notna().to_numpy()
    cols = {
        "frame": df.frame_index.to_numpy(np.int64) + 1,
        "face_id": np.where(face, df.track_id.fillna(0).to_numpy(), 0).astype(np.int64),
        "timestamp": df.time_s.to_numpy(np.float64),
        "confidence": np.where(face, df.score.to_numpy(np.float64), 0.0),
        "success": face.astype(np.int64),
    }
    if has_pose(df):
        pose = openface_pose(*(df[c].to_numpy(np.float64) for c in ("yaw", "pitch", "roll")))
        cols.update({c: np.where(face, pose[:, k], 0.0) for k, c in enumerate(POSE_COLUMNS)})
    cols.update({c: np.where(face, df[c].to_numpy(np.float64), 0.0) for c in LANDMARK_COLUMNS})
    out = pd.DataFrame(cols)
    return out


def write_csv(of: pd.DataFrame, f: TextIO, chunk_rows: int = 20000) -> None:
    """OpenFace's text: ", " between names and between values, fixed-point numbers; a value not
    measured (NaN) is an empty cell. Written a chunk of rows at a time (a two-hour video's text is
    hundreds of MB)."""
    fmts = []
    for c in of.columns:
        kind = "pose" if c in POSE_COLUMNS else "points" if c in LANDMARK_COLUMNS else c
        fmts.append("%d" if c in ("frame", "face_id", "success") else f"%.{DECIMALS[kind]}f")
    row = SEPARATOR.join(fmts)
    f.write(SEPARATOR.join(of.columns) + "\n")
    for start in range(0, len(of), chunk_rows):
        values = of.iloc[start:start + chunk_rows].to_numpy(np.float64)
        text = "".join(row % tuple(v) + "\n" for v in values.tolist())
        # "%f" writes NaN as "nan": no number contains those letters
        f.write(text.replace("nan", "") if np.isnan(values).any() else text)
