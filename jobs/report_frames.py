"""The report's pictures of frames: a few frames decoded again from the source video, landmarks
drawn on them as the `landmarks` filter draws them. Frames are found by their time, seeking to each
(a handful of seeks, not a decode of a two-hour file)."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from facetracks.models.draw import draw_landmarks
from facetracks.pipeline.photo import read_photo
from facetracks.pipeline.schema import points_from_columns
from facetracks.pipeline.video import iter_frames

from .report_charts import track_color

THUMB_W = 280
CROP_SIDE = 160
CROP_MARGIN = 1.6            # the crop's side over the landmarks' larger side: forehead and chin in view


def grab_frames(path: str, wanted: dict[int, float], timing: str = "pts") -> dict[int, np.ndarray]:
    """BGR frames of `path` by frame index ({index: time_s} as the track file has them). With PTS
    each frame is reached by seeking to its time; without (raw streams) by decoding from the start;
    a photo is read whole."""
    got: dict[int, np.ndarray] = {}
    if not wanted:
        return got
    if timing == "photo":        # one frame, read as annotate read it (EXIF orientation applied)
        photo = read_photo(path)     # or an animation's frames
        return {i: f for i, f in enumerate(photo.frames or [photo.bgr]) if i in wanted}
    if timing != "pts":
        last = max(wanted)
        for f in iter_frames(path, color=True):
            if f.index in wanted:
                got[f.index] = f.bgr
            if f.index >= last:
                break
        return got
    for index, t in sorted(wanted.items()):
        for f in iter_frames(path, color=True, start_s=t):
            if abs(f.time_s - t) < 1e-6:     # the same arithmetic as when annotated: exactly equal
                got[index] = f.bgr
            break
    return got


def _draw_faces(img: np.ndarray, rows: pd.DataFrame, scale: float, offset=(0.0, 0.0)) -> np.ndarray:
    pts = points_from_columns(rows) * scale - np.asarray(offset, np.float32) * scale
    thick = 1 if img.shape[1] < 400 else 2
    for p, tid in zip(pts, rows.track_id.to_numpy()):
        draw_landmarks(img, p, track_color(int(tid)), radius=thick, thickness=thick)
    return img


def frame_thumb(bgr: np.ndarray, rows: pd.DataFrame, width: int = THUMB_W) -> np.ndarray:
    """The whole frame shrunk to `width`, every face's points drawn after shrinking (lines drawn
    first and shrunk after would vanish)."""
    scale = width / bgr.shape[1]
    small = cv2.resize(bgr, (width, max(1, round(bgr.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    return _draw_faces(small, rows, scale)


def face_crop(bgr: np.ndarray, row: pd.DataFrame, side: int = CROP_SIDE) -> np.ndarray:
    """A square around one face (`row`: one track row), points drawn; out-of-frame parts grey."""
    pts = points_from_columns(row)[0]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()), 8.0) * CROP_MARGIN / 2
    scale = side / (2 * half)
    x0, y0 = centre - half
    m = np.float32([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
    crop = cv2.warpAffine(bgr, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(128, 128, 128))
    return _draw_faces(crop, row, scale, (x0, y0))
