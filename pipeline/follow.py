"""Detect, follow and landmark faces through a stream of frames, many faces per forward pass.

The detector runs on a frame only when it must: every `detect_every` frames while faces are
followed, on every `idle_detect_every`-th frame while none are, at once when a face's landmark
confidence drops below `min_score`, and on the first frame of a new shot (a frame unlike the
one before, `shots.py`): a cut ends the tracks of the faces it changed (every one, where the
whole picture changed), and the new shot's faces start new ones; a change undone within two frames
(a flash) is no cut. Between
detections each face is cropped around its own latest landmarks. Frames are handled in chunks that
end at the next scheduled detection; all faces of all frames of a chunk go through the network
together (each pass one batch), and the refine pass re-crops every face around its first-pass
points, so the square carried over from the chunk's first frame only has to be roughly right.

A face whose confidence dropped is, with `look_near`, looked for by the detector in a window
around where it was (`detect.detect_near`, a few ms) instead of on the whole frame; with
`hold_lost`, a face still rejected after its retry is kept hidden, looked for there on every frame,
and comes back under its id, until the next detection round re-seeds or ends it.

`Schedule` holds every one of those decisions and nothing else (no frames, no model, no clock),
so it can be read, and tested, on its own; `follow_faces` carries them out.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol

import numpy as np

from facetracks.models.crop import square_along_face
from facetracks.models.score import is_kept

from .change_scan import ChangeScan
from .detect import FaceDetector, detect_near, detect_turned, detect_whole, near_reach
from .shots import Lookahead
from .tracking import FaceTracker, upright
from .video import Frame


FACE_CUT_SHARE = 0.4   # of the cut threshold: a face square that changed less at a cut keeps its track (shots.Cut)
HELD_CHUNK = 1      # most frames between looks for a held face (Schedule.chunk_size): every frame


@dataclass
class FollowParams:
    detect_every: int = 8          # frames between detections while faces are followed (1: every frame)
    max_detect_every: int = 0      # ... doubling after each round that changed nothing, up to this (0: no doubling)
    batch_size: int = 8          # most frames whose faces share one forward pass
    idle_detect_every: int = 1     # frames between detections while no face is followed
    min_score: float = 0.45        # below this a face is lost: re-detect, or drop it
    max_faces: int = 16            # per frame, largest first
    cut_threshold: float = 30.0    # mean grey-level change of a frame that makes it a scene cut (0: off)
    hold_lost: bool = False        # keep a face dropped after its retry hidden until the next detection
                                   # round (tried every frame, back under its id) instead of detecting
                                   # on every frame until it is found again
    look_near: bool = False        # look for a lost or held face in a window around it (detect.detect_near)
                                   # instead of detecting on the whole frame
    rescan_changed: float = 0.0    # a whole-frame detection rescans only the cells whose grey levels moved
                                   # by this much on average since they were scanned (change_scan.py); 0: all
    full_scan_every: int = 96      # ... and the whole frame at least this often (frames)
    oversize: bool = True          # a whole-frame detection that finds nothing also looks for a face larger
                                   # than the frame or cut by its edge (detect.detect_oversize)
    turned_every: int = 96         # while no face is trusted, a round that finds no upright face also looks for
                                   # faces lying on their side or upside down (detect.detect_turned), at most
                                   # this often (frames; at once on a new shot); 0: never

    @property
    def lookahead(self) -> int:
        """Frames the loop reads ahead of the one it handles: a batch, or up to the next detection."""
        return max(self.detect_every, self.batch_size)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Landmarker(Protocol):
    """What following needs of a landmark model (models.inference.LandmarkPredictor). The squares
    it is handed are (N, 4): centre, side and the turn to cut the crop at (`crop.square_along_face`;
    0 for a detector's square)."""
    def squares_from_boxes(self, boxes: np.ndarray) -> np.ndarray: ...
    def predict_with_score(self, grays: list[np.ndarray], squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class Face:
    track_id: int
    points: np.ndarray   # (68, 2)
    score: float


@dataclass
class FollowStats:
    frames: int = 0
    detections: int = 0
    near_detections: int = 0     # windows around lost faces (detect.detect_near), counted apart
    turned_scans: int = 0        # rounds that also scanned the frame turned (detect.detect_turned)
    partial_scans: int = 0       # detections that rescanned only what changed (change_scan.py) ...
    skipped_scans: int = 0       # ... or nothing, as nothing had changed
    cuts: int = 0                # scene cuts seen (each forces a detection)
    transients: int = 0          # changes undone within shots.TRANSIENT frames (a flash): no cut
    faces: int = 0
    crops: int = 0
    detect_s: float = 0.0        # time in the detector
    landmarks_s: float = 0.0     # time cropping, in the network and mapping points back


@dataclass(frozen=True)
class Verdict:
    """What a chunk's scores decide: `frame` is the chunk frame whose landmarks the tracker learns,
    `done` how many chunk frames are final, `retry` whether `frame` is re-detected and tried again."""
    frame: int
    done: int
    retry: bool


@dataclass
class Schedule:
    """When to detect and how many frames to batch, from counts alone."""
    params: FollowParams
    since_detect: int | None = None    # frames since the last detection (None: never, or a new shot)
    retry_index: int = -1              # frame index already re-detected after a confidence drop
    limit: int = field(init=False)     # most frames in the next chunk: 1 after a face was dropped, doubling back
    every: int = field(init=False)     # frames between detections while faces are followed, now
    turned_at: int | None = None       # frame index of this shot's last turned scan (None: none yet)
    shot_at: int | None = None         # frame index of this shot's first round
    seen_at: int | None = None         # frame index of this shot's last face (None: none yet)
    last_try_at: int | None = None     # the input's last frame, detected again with turned scans (below)

    def __post_init__(self) -> None:
        self.limit = self.params.batch_size
        self.every = self.params.detect_every

    def new_shot(self) -> None:
        self.since_detect = None
        self.every = self.params.detect_every
        self.turned_at = self.shot_at = self.seen_at = None

    def turned_scan(self, index: int, trusted: bool) -> int:
        """Whether the detection round on frame `index` also scans the frame turned (`_detect`):
        0 no; 1 where it finds no upright face; 2 whatever it finds; 3 whatever it finds, on a
        frame already scanned (`try_turned_last`). Only while no face is
        `trusted`, at most every `turned_every` frames. 2 after the first round of a shot with no
        face yet, or once no face has been seen for `turned_every` frames: an upright false box the
        network keeps rejecting must not hide a face lying down."""
        every = self.params.turned_every
        self.shot_at = index if self.shot_at is None else self.shot_at
        if every > 0 and index == self.last_try_at:
            return 3
        if every <= 0 or trusted or (self.turned_at is not None and 0 <= index - self.turned_at < every):
            return 0
        stale = index > self.shot_at if self.seen_at is None else index - self.seen_at >= every
        return 2 if stale else 1

    def try_turned_last(self, index: int) -> bool:
        """On the input's last frame (a photo's only one), where every face the round found was
        rejected and the round did not scan turned: whether to detect there once more, scanning
        turned whatever it finds (`turned_scan` 3). Why: a later round would (`turned_scan`), but
        none comes; an upside-down photo whose upright scan finds a false box lost its face."""
        if self.params.turned_every <= 0 or self.turned_at == index or self.last_try_at == index:
            return False
        self.last_try_at, self.since_detect = index, None
        return True

    def detect_now(self, following: bool, lost: bool) -> bool:
        every = self.every if following else self.params.idle_detect_every
        return self.since_detect is None or self.since_detect >= every or lost

    def detected(self, quiet: bool = False) -> None:
        """A detection round ran. `quiet`: it changed nothing (every followed face seen again, no
        new one): the next round may wait twice as long, up to `max_detect_every`. Why: on a steady
        shot the rounds only look for faces that have not come in, and at 640x480 each costs as
        much as landmarking 5-8 faces; any change brings the cadence back to `detect_every`."""
        self.since_detect = 0
        top = max(self.params.detect_every, self.params.max_detect_every)
        self.every = min(top, 2 * self.every) if quiet else self.params.detect_every

    def chunk_size(self, cuts: list[bool], held: bool = False) -> int:
        """Frames (of those read ahead, `cuts` flagging new shots) to landmark in one batch: up to
        the next scheduled detection, at most `batch_size`, never across a cut. After a face was
        dropped (a hand over it, a false detection) the next chunks grow from one frame: a face the
        detector keeps finding and the network keeps rejecting then costs one frame's crops a frame,
        not a whole batch's. While a face is `held` and looked for near where it was at the start of
        each chunk, chunks are at most HELD_CHUNK frames, so it is looked for that often."""
        n = min(len(cuts), self.limit, max(1, self.every - self.since_detect),
                HELD_CHUNK if held else len(cuts))
        return next((k for k in range(1, n) if cuts[k]), n)

    def verdict(self, kept: np.ndarray, frame_indices: list[int], fresh: np.ndarray | None = None) -> Verdict:
        """`kept` (frames, faces): the faces whose score reached `min_score`. The first frame that
        lost a face ends the chunk: it is re-detected and tried again once; on the second try its
        lost faces are dropped. `fresh` (faces): squares the detector set on the chunk's first frame;
        when only those fail there, a retry would detect the same squares and fail the same way, so
        it counts as the second try."""
        bad = np.flatnonzero((~kept).any(axis=1))
        if len(bad) and frame_indices[bad[0]] != self.retry_index:
            k = int(bad[0])
            if not (k == 0 and fresh is not None and fresh[~kept[0]].all()):
                self.retry_index = frame_indices[k]
                return Verdict(k, k, True)
        k = int(bad[0]) if len(bad) else len(kept) - 1
        self.limit = 1 if len(bad) else min(self.params.batch_size, 2 * self.limit)
        return Verdict(k, k + 1, False)

    def advance(self, frames: int) -> None:
        self.since_detect += frames


def _detect(frame: Frame, detector: FaceDetector, predictor: Landmarker, tracker: FaceTracker,
            max_faces: int, st: FollowStats, scan: ChangeScan | None, oversize: bool, turned_scan: int = 0
            ) -> tuple[bool, bool]:
    """A detection round on `frame`: whether it changed nothing (FaceTracker.detections), and whether
    it scanned the frame turned. `turned_scan` (`Schedule.turned_scan`) 1: where the round finds no
    upright face, also scan the frame turned a quarter, the other quarter and a half
    (`detect.detect_turned`); 2: whatever it finds; 3: whatever it finds, even where the change
    scan saw nothing move (the frame itself scanned again)."""
    t = time.perf_counter()
    examined = None
    unchanged = False
    if scan:
        skipped = scan.stats.skipped
        trusted = np.array([not tr.lost for tr in tracker.tracks], bool)
        dets, seen = scan.detect(detector, frame.gray, frame.index, tracker.squares()[trusted, :3])
        examined = ~trusted
        examined[trusted] = seen
        st.partial_scans, st.skipped_scans = scan.stats.partial, scan.stats.skipped
        unchanged = scan.stats.skipped > skipped       # nothing moved since it was last scanned, turned too
    else:
        dets = detect_whole(detector, frame.gray, oversize)
    # the frontal cascade sees faces within about 20 degrees of upright: a face followed past the
    # upright zone (cropped turned, `crop.square_along_face`) is neither seen nor unseen by the
    # round, and a lost one is looked for in a window turned as it was (`detect.detect_near`)
    turned = np.array([tr.square[3] != 0 for tr in tracker.tracks], bool)
    if turned.any():
        examined = np.ones(len(turned), bool) if examined is None else examined
        examined &= ~turned
    near = [detect_near(detector, frame.gray, tr.square, predictor.squares_from_boxes, reach=near_reach(tr.untrusted))
            for tr, on in zip(tracker.tracks, turned) if on and tr.lost]
    lying = turned_scan == 3 or (not unchanged and (turned_scan == 2 or (turned_scan == 1 and not len(dets))))
    if lying:                  # no face is trusted: room for max_faces, the upright boxes' first
        found = detect_turned(detector, frame.gray, predictor.squares_from_boxes)
        near.append(found[np.argsort(-found[:, 2])][:max(0, max_faces - len(dets))])
        st.turned_scans += 1
    st.detect_s += time.perf_counter() - t
    st.detections += 1
    if len(dets):     # a scan that left the followed faces out found new ones: room for those alone
        room = max_faces - (int((~examined).sum()) if examined is not None else 0)
        dets = dets[np.argsort(-dets[:, 2])][:max(0, room)]
    squares = [upright(predictor.squares_from_boxes(dets[:, :4]))] if len(dets) else []
    quiet = tracker.detections(np.concatenate(squares + near) if squares or near else np.zeros((0, 4), np.float32),
                               examined)
    return quiet, lying


def _detect_near(frame: Frame, detector: FaceDetector, predictor: Landmarker, tracker: FaceTracker,
                 st: FollowStats) -> None:
    t = time.perf_counter()
    found = [detect_near(detector, frame.gray, tr.square, predictor.squares_from_boxes, reach=near_reach(tr.untrusted))
             for tr in tracker.tracks if tr.lost]
    st.detect_s += time.perf_counter() - t
    st.near_detections += len(found)
    tracker.redetections(np.concatenate(found) if found else np.zeros((0, 4), np.float32))


def follow_faces(frames: Iterable[Frame], detector: FaceDetector, predictor: Landmarker,
                 params: FollowParams | None = None, stats: FollowStats | None = None
                 ) -> Iterator[tuple[Frame, list[Face]]]:
    """Yield every frame once, in order, with the faces found on it."""
    p = params or FollowParams()
    st = stats if stats is not None else FollowStats()
    tracker = FaceTracker()
    ahead = Lookahead(frames, p.lookahead, p.cut_threshold)
    plan = Schedule(p)
    scan = ChangeScan(p.rescan_changed, p.full_scan_every, oversize=p.oversize) if p.rescan_changed > 0 else None
    while ahead.fill():
        cut = ahead.take_cut()
        if cut is not None:              # a new shot: faces where it changed are new tracks, found by the detector
            tracker.end(cut.changed(tracker.squares(), p.cut_threshold * FACE_CUT_SHARE))
            plan.new_shot()
            st.cuts += 1
        st.transients = ahead.transients
        lost = any(t.lost and not t.held for t in tracker.tracks)
        held = any(t.held for t in tracker.tracks)
        detected = plan.detect_now(bool(tracker.tracks), lost and not p.look_near)
        if detected:
            index = ahead.frames[0].index
            turned = plan.turned_scan(index, not all(t.lost for t in tracker.tracks))
            quiet, lying = _detect(ahead.frames[0], detector, predictor, tracker, p.max_faces, st, scan, p.oversize,
                                   turned)
            plan.detected(quiet)
            plan.turned_at = index if lying else plan.turned_at
        elif p.look_near and (lost or held):     # looked for where it was; the cadence goes on
            _detect_near(ahead.frames[0], detector, predictor, tracker, st)
            detected = True
        if not tracker.tracks:
            st.frames += 1
            yield ahead.frames[0], []
            ahead.drop(1)
            plan.advance(1)
            continue
        n = plan.chunk_size(ahead.cuts, held and p.look_near)
        chunk, tracks = ahead.frames[:n], list(tracker.tracks)
        grays = [f.gray for f in chunk for _ in tracks]
        t = time.perf_counter()
        pts, score = predictor.predict_with_score(grays, np.tile(tracker.squares(), (n, 1)))
        st.landmarks_s += time.perf_counter() - t
        st.crops += len(grays)
        pts = pts.reshape(n, len(tracks), 68, 2)
        score = score.reshape(n, len(tracks))
        kept = is_kept(score, p.min_score)
        fresh = np.array([detected and t.id in tracker.seeded for t in tracks], bool)
        held = np.array([t.held for t in tracks], bool)     # hidden faces decide no retry and no chunk size
        v = plan.verdict(kept | held, [f.index for f in chunk], fresh)
        if v.retry:                     # emit the frames before it; re-detect on it and try it again
            if v.frame > 0:            # every face the verdict counts was kept there; a hidden one maybe not
                tracker.update(square_along_face(pts[v.frame - 1]), kept[v.frame - 1] | ~held)
            tracker.mark_lost({t.id for t, ok in zip(tracks, kept[v.frame]) if not ok})
        else:                           # on a retried frame, drop (or hide) the faces still lost
            tracker.update(square_along_face(pts[v.frame]), kept[v.frame])
            if detected and ahead.at_end and not kept[0].any() and plan.try_turned_last(chunk[0].index):
                tracker.drop_lost()     # the rejected boxes; the same frame again, scanned turned too
                continue
            tracker.hold_lost() if p.hold_lost else tracker.drop_lost()
        for j in range(v.done):
            faces = [Face(t.id, pts[j, i], float(score[j, i])) for i, t in enumerate(tracks) if kept[j, i]]
            plan.seen_at = chunk[j].index if faces else plan.seen_at
            st.frames += 1
            st.faces += len(faces)
            yield chunk[j], faces
        ahead.drop(v.done)
        plan.advance(v.done)
