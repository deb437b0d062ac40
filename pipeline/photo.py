"""Photos as one-frame inputs: read upright, landmarked like a video's frame, rendered in their own format.

A photo's rows have the video schema with `frame_index` 0, `pts` 0 and `time_s` 0, so every reader
of track files takes them unchanged. OpenCV's decoder applies the EXIF orientation (IMREAD_COLOR
without IMREAD_IGNORE_ORIENTATION), so points are in the upright image a viewer shows, as a
video's are after its display matrix. The file is read into memory once: decoding from bytes also
takes paths OpenCV's own file reader would not.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np
import pyarrow as pa

from facetracks.models.inference import LandmarkPredictor

from .annotate import annotate_frames
from .detect import FaceDetector
from .filters import FilterFn
from . import sources
from .video import Frame, VideoError

if TYPE_CHECKING:
    from .follow import FollowParams, FollowStats

JPEG_QUALITY = 95          # a rendered JPEG: close to the source, a fraction of a lossless file's size


class PhotoError(VideoError):
    """A file that cannot be read as an image (a VideoError: every input error is one kind for callers)."""


@dataclass
class Photo:
    bgr: np.ndarray        # (H, W, 3) uint8, upright
    info: dict             # what a track file's `source` metadata says of it


@dataclass
class PhotoResult:
    table: pa.Table
    info: dict
    stats: FollowStats
    seconds: float


def read_photo(path: str) -> Photo:
    """Raises PhotoError naming the file and the cause."""
    try:
        data = np.frombuffer(sources.read_bytes(path), np.uint8)
        st = sources.info(path)
    except FileNotFoundError:
        raise PhotoError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise PhotoError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if not len(data):
        raise PhotoError(f"{path}: empty file (0 bytes)")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)      # EXIF orientation applied
    if bgr is None:
        raise PhotoError(f"{path}: not a readable image (corrupt, or not the format its name says)")
    h, w = bgr.shape[:2]
    ext = os.path.splitext(sources.name_of(path))[1].lower()
    info = {"path": sources.absolute(path), "size_bytes": st.size, "mtime": st.mtime, "width": w,
            "height": h, "kind": "photo", "format": ext.lstrip("."), "header_frames": 1, "timing": "photo"}
    return Photo(bgr, info)


def annotate_photo(photo: Photo, name: str, detector: FaceDetector, predictor: LandmarkPredictor,
                   params: FollowParams | None = None, on_frames: Callable[[int], None] | None = None
                   ) -> PhotoResult:
    """`name` is what the `video` column says, as for a video."""
    t0 = time.perf_counter()
    frame = Frame(0, 0, 0.0, cv2.cvtColor(photo.bgr, cv2.COLOR_BGR2GRAY))
    size = (photo.info["width"], photo.info["height"])
    table, stats = annotate_frames([frame], name, size, detector, predictor, params, on_frames)
    return PhotoResult(table, photo.info, stats, time.perf_counter() - t0)


def render_photo(photo: Photo, faces: list[np.ndarray], filt: FilterFn, ext: str) -> bytes:
    """The filtered photo encoded as `ext` (the source's format); upright pixels, so no EXIF tag."""
    out = filt(photo.bgr.copy(), faces)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, out, params)
    if not ok:
        raise PhotoError(f"{photo.info['path']}: cannot encode the rendered photo as {ext}")
    return buf.tobytes()
