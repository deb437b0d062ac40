"""Detect, follow and landmark faces through a stream of frames, many faces per forward pass.

The detector runs on a frame only when it must: every `detect_every` frames while faces are
followed, on every `idle_detect_every`-th frame while none are, at once when a face's landmark
confidence drops below `min_score`, and on the first frame of a new shot (a frame unlike the
one before): a cut ends every track, and the new shot's faces start new ones. Between detections each face is cropped around its
own latest landmarks. Frames are handled in chunks that end at the next scheduled detection; all
faces of all frames of a chunk go through the network together (each pass one batch), and the
refine pass re-crops every face around its first-pass points, so the square carried over from the
chunk's first frame only has to be roughly right.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from facetracks.models.crop import square_from_points
from facetracks.models.inference import LandmarkPredictor

from .detect import FaceDetector
from .tracking import FaceTracker
from .video import Frame


@dataclass
class FollowParams:
    detect_every: int = 8          # frames between detections while faces are followed (1: every frame)
    batch_frames: int = 8          # most frames whose faces share one forward pass
    idle_detect_every: int = 1     # frames between detections while no face is followed
    min_score: float = 0.35        # below this a face is lost: re-detect, or drop it
    max_faces: int = 16            # per frame, largest first
    cut_threshold: float = 30.0    # mean grey-level change of a frame that makes it a scene cut (0: off)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _thumb(gray: np.ndarray) -> np.ndarray:
    """About 64 px on the long side by plain subsampling: a view, nearly free at any resolution."""
    step = max(1, max(gray.shape[:2]) // 64)
    return gray[::step, ::step].astype(np.int16)


def is_cut(prev: np.ndarray | None, cur: np.ndarray, threshold: float) -> bool:
    """A scene cut: the frame is unlike the one before (thumbnails from `_thumb`)."""
    return bool(threshold) and prev is not None and prev.shape == cur.shape \
        and float(np.abs(cur - prev).mean()) > threshold


@dataclass
class Face:
    track_id: int
    points: np.ndarray   # (68, 2)
    score: float


@dataclass
class FollowStats:
    frames: int = 0
    detections: int = 0
    cuts: int = 0                # scene cuts seen (each forces a detection)
    faces: int = 0
    crops: int = 0
    detect_s: float = 0.0        # time in the detector
    landmarks_s: float = 0.0     # time cropping, in the network and mapping points back


def follow_faces(frames: Iterable[Frame], detector: FaceDetector, predictor: LandmarkPredictor,
                 params: FollowParams | None = None, stats: FollowStats | None = None
                 ) -> Iterator[tuple[Frame, list[Face]]]:
    """Yield every frame once, in order, with the faces found on it."""
    p = params or FollowParams()
    st = stats if stats is not None else FollowStats()
    tracker = FaceTracker()
    it = iter(frames)
    pending: list[Frame] = []
    since_detect = None          # frames since the last detection (None: never)
    retry_index = -1             # frame already re-detected after a confidence drop
    cuts: list[bool] = []        # pending[i] starts a new shot
    last_thumb = None
    exhausted = False
    while True:
        while not exhausted and len(pending) < max(p.detect_every, p.batch_frames):
            nxt = next(it, None)
            if nxt is None:
                exhausted = True
            else:
                thumb = _thumb(nxt.gray)
                pending.append(nxt)
                cuts.append(is_cut(last_thumb, thumb, p.cut_threshold))
                last_thumb = thumb
        if not pending:
            return
        first = pending[0]
        every = p.detect_every if tracker.tracks else p.idle_detect_every
        if cuts[0]:                  # a new shot: its faces are new tracks, found by the detector
            tracker.end_all()
            since_detect = None
            cuts[0] = False
            st.cuts += 1
        lost = any(t.lost for t in tracker.tracks)
        if since_detect is None or since_detect >= every or lost:
            t = time.perf_counter()
            dets = detector.detect(first.gray)
            st.detect_s += time.perf_counter() - t
            st.detections += 1
            if len(dets):
                dets = dets[np.argsort(-dets[:, 2])][:p.max_faces]
            tracker.detections(predictor.squares_from_boxes(dets[:, :4]) if len(dets) else np.zeros((0, 3)))
            since_detect = 0
        if not tracker.tracks:
            st.frames += 1
            cuts.pop(0)
            yield pending.pop(0), []
            since_detect += 1
            continue
        n = min(len(pending), p.batch_frames, max(1, p.detect_every - since_detect))
        n = next((k for k in range(1, n) if cuts[k]), n)         # a chunk never spans a cut
        chunk, tracks = pending[:n], list(tracker.tracks)
        squares = tracker.squares()
        grays = [f.gray for f in chunk for _ in tracks]
        t = time.perf_counter()
        pts, score = predictor.predict_with_score(grays, np.tile(squares, (n, 1)))
        st.landmarks_s += time.perf_counter() - t
        st.crops += len(grays)
        pts = pts.reshape(n, len(tracks), 68, 2)
        score = score.reshape(n, len(tracks))
        kept = ~(score < p.min_score)   # a NaN score (one pass, no mirror: not measured) never drops a face
        bad = np.flatnonzero((~kept).any(axis=1))
        if len(bad) and chunk[bad[0]].index != retry_index:
            # confidence dropped on frame k: emit up to k-1, re-detect on frame k and try it again
            k = int(bad[0])
            if k > 0:
                tracker.update(square_from_points(pts[k - 1]), np.ones(len(tracks), bool))
            tracker.update(tracker.squares(), kept[k])
            retry_index = chunk[k].index
            done = k
        else:
            k = int(bad[0]) if len(bad) else n - 1   # on a retried frame, drop the faces still lost
            done = k + 1
            tracker.update(square_from_points(pts[k]), kept[k])
            tracker.drop_lost()
        for j in range(done):
            faces = [Face(t.id, pts[j, i], float(score[j, i])) for i, t in enumerate(tracks) if kept[j, i]]
            st.frames += 1
            st.faces += len(faces)
            yield chunk[j], faces
        pending, cuts = pending[done:], cuts[done:]
        since_detect += done
