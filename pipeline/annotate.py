"""One video in, one landmark table out: decode -> detect/follow -> keypoints -> rows.

This is the whole per-video job, free of any orchestration: the Ray actors (jobs/worker.py), the
bench and the tests all call `annotate_video`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterable

import pyarrow as pa

from facetracks.models.inference import LandmarkPredictor

from .detect import FaceDetector
from .follow import FollowParams, FollowStats, follow_faces
from .parquet import TableBuilder
from .prefetch import prefetch
from .video import Frame, VideoInfo, iter_frames, probe

PREFETCH_FRAMES = 8           # decoded ahead on a thread while the network works, at least ...
PREFETCH_BYTES = 64 << 20     # ... and up to the follow loop's lookahead within this much grey frame


def prefetch_depth(params: FollowParams | None, width: int, height: int) -> int:
    """How many frames the decoding thread keeps ready. The follow loop takes a whole lookahead at
    once (24 frames for `fast`): a queue shorter than that left it waiting, chunk after chunk, for
    the rest to be decoded (fast on 640x480: 8 frames ahead waited 0.08 s of 0.75 per 240 frames).
    Bounded in bytes, so a 4K video keeps the 8 frames it always kept."""
    want = (params or FollowParams()).lookahead
    fit = PREFETCH_BYTES // max(1, width * height)
    return int(max(PREFETCH_FRAMES, min(want, fit)))


@dataclass
class VideoResult:
    table: pa.Table
    info: VideoInfo
    stats: FollowStats
    seconds: float
    damaged: list[float | None]   # times of the packets the decoder rejected and decoding skipped (`video._decoded`)


def annotate_video(path: str, name: str, detector: FaceDetector, predictor: LandmarkPredictor,
                   params: FollowParams | None = None, start_s: float | None = None,
                   end_s: float | None = None, on_frames: Callable[[int], None] | None = None,
                   pose: bool = True, decode_threads: int = 0) -> VideoResult:
    """`name` is what the `video` column says (the input's path relative to its root).
    `pose=False` leaves the pose columns null, for a caller whose smoothing rewrites the points and
    fits the pose to those (`smooth_tracks`): it would be fitted twice per face otherwise.

    With `start_s` / `end_s` only that time range is decoded (a segment of a long video); its
    frame_index then counts from the range's first frame, and `segments.Stitcher` recounts it.
    `decode_threads`: the decoder's threads (`video.iter_frames`; 0: FFmpeg's choice).
    """
    t0 = time.perf_counter()
    info = probe(path)
    damaged: list[float | None] = []
    frames = prefetch(iter_frames(path, start_s=start_s, end_s=end_s, threads=decode_threads, damaged=damaged),
                      prefetch_depth(params, info.width, info.height))
    table, stats = annotate_frames(frames, name, (info.width, info.height) if pose else None, detector, predictor,
                                   params, on_frames)
    return VideoResult(table, info, stats, time.perf_counter() - t0, damaged)


def annotate_frames(frames: Iterable[Frame], name: str, frame_size: tuple[int, int] | None, detector: FaceDetector,
                    predictor: LandmarkPredictor, params: FollowParams | None = None,
                    on_frames: Callable[[int], None] | None = None) -> tuple[pa.Table, FollowStats]:
    """Rows of any stream of upright frames (a video's, or a photo's one). `on_frames(n)` hears of
    the frames done as they are done: a caller's progress, whoever orchestrates it."""
    stats = FollowStats()
    rows = TableBuilder(name, frame_size)
    for frame, faces in follow_faces(frames, detector, predictor, params, stats):
        rows.add_frame(frame.index, frame.pts, frame.time_s, [(f.track_id, f.points, f.score) for f in faces])
        if on_frames is not None:
            on_frames(1)
    return rows.table(), stats
