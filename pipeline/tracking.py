"""Following faces from frame to frame: which face in this frame is which face in the last.

Pure numpy, no video and no model: the annotate loop asks `FaceTracker` where each face probably
is (the square around its latest landmarks), hands it detections to match, and reports each
face's new square and whether its landmarks were trustworthy. Matching is greedy on the IoU of
face squares, best pair first.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facetracks.models.crop import squares_2d


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) and (M, 4) boxes (x, y, w, h) -> (N, M) intersection over union."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    a0, a1 = a[:, None, :2], a[:, None, :2] + a[:, None, 2:]
    b0, b1 = b[None, :, :2], b[None, :, :2] + b[None, :, 2:]
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None).prod(-1)
    union = a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - inter
    return inter / np.maximum(union, 1e-9)


def square_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 3) and (M, 3) squares (cx, cy, side; a fourth column, the crop's turn, is left out) ->
    (N, M) intersection over union."""
    def boxes(s):
        s = squares_2d(s, np.float64)[:, :3]
        return np.concatenate([s[:, :2] - s[:, 2:] / 2, s[:, 2:], s[:, 2:]], axis=1)
    return box_iou(boxes(a), boxes(b))


def upright(squares: np.ndarray) -> np.ndarray:
    """Detector squares (N, 3) as track squares (N, 4): cut upright (turn 0)."""
    sq = squares_2d(squares)
    return sq if sq.shape[1] == 4 else np.concatenate([sq, np.zeros((len(sq), 1), np.float32)], axis=1)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(row, col) pairs, highest IoU first, each row and column used once, all >= threshold."""
    pairs, used_r, used_c = [], set(), set()
    for flat in np.argsort(-iou, axis=None):
        r, c = (int(v) for v in np.unravel_index(flat, iou.shape))
        if iou[r, c] < threshold:
            break
        if r not in used_r and c not in used_c:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return pairs


@dataclass
class Track:
    id: int
    square: np.ndarray       # where to look next (cx, cy, side, turn: `crop.square_along_face`)
    lost: bool = False       # last landmarks were not trusted: needs a detection to go on
    held: bool = False       # lost, but kept hidden at its last trusted square until a detection round
    unconfirmed: int = 0     # detection rounds in a row that did not see this face
    untrusted: int = 0       # updates in a row whose landmarks were not trusted (about frames, while held)


@dataclass
class FaceTracker:
    iou_match: float = 0.3
    near_iou_match: float = 0.1   # for `redetections`
    max_unconfirmed: int = 3      # detection rounds a followed face may go unseen by the detector
    duplicate_iou: float = 0.5
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 0
    seeded: set[int] = field(default_factory=set)   # tracks whose square the last detection set

    def squares(self) -> np.ndarray:
        return np.stack([t.square for t in self.tracks]) if self.tracks else np.zeros((0, 4), np.float32)

    def detections(self, squares: np.ndarray, examined: np.ndarray | None = None) -> bool:
        """Match detector squares to tracks.

        A matched track keeps its own (landmark) square, unless it was lost, when the detection
        re-seeds it. Unmatched detections start tracks; lost or long-unseen tracks end. Returns
        whether the round changed nothing: faces followed before it, every one of them seen, none
        re-seeded, none started. `examined` (one per track, default all): a track the round did not
        look at (`change_scan.py` leaves followed faces to the landmark score; a face tilted past
        what the cascade finds) is neither seen nor unseen by it, and a lost one of those is kept
        for up to `max_unconfirmed` such rounds instead of ending.
        """
        squares = upright(squares)
        prev = self.squares()
        pairs = greedy_match(square_iou(prev, squares), self.iou_match) if len(prev) and len(squares) else []
        match = dict(pairs)
        kept, self.seeded = [], set()
        for i, t in enumerate(self.tracks):
            if i in match:
                if t.lost:
                    self._reseed(t, squares[match[i]])
                t.unconfirmed = 0
            elif t.lost:
                if examined is None or examined[i]:
                    continue                # the round looked where it was and did not see it: it ends
                t.unconfirmed += 1          # one it could not see (tilted past the cascade) waits a few rounds
            elif examined is None or examined[i]:
                t.unconfirmed += 1
            if t.unconfirmed <= self.max_unconfirmed:
                kept.append(t)
        before = len(self.tracks)
        self.tracks = kept
        self._start_tracks(squares, set(match.values()))
        return before > 0 and len(self.tracks) == before and not self.seeded \
            and all(t.unconfirmed == 0 for t in self.tracks)

    def redetections(self, squares: np.ndarray) -> None:
        """Detector squares found in windows around lost or held faces (`detect.detect_near`): each
        re-seeds the lost face it overlaps best, with a looser match than a full round's
        (`near_iou_match`: the face may have moved on while it was not trusted); a square that
        overlaps no lost face is a face that took its place and starts a track, as in a full
        round. Faces that are not lost are left alone, and lost ones no square matched stay lost
        for their second try; new faces elsewhere are the next full round's business. A square on
        a face followed already (a window reaches over the face that took the lost one's place, or
        the lost face came back as a track of its own) is that face, not a new one: without this it
        started a duplicate on every frame until the next full round."""
        squares = upright(squares)
        lost = [t for t in self.tracks if t.lost]
        followed = [t for t in self.tracks if not t.lost]
        self.seeded = set()
        pairs = greedy_match(square_iou(np.stack([t.square for t in lost]), squares), self.near_iou_match) \
            if lost and len(squares) else []
        for i, j in pairs:
            self._reseed(lost[i], squares[j])
        taken = {j for _, j in pairs}
        if followed and len(squares):
            on_followed = square_iou(np.stack([t.square for t in followed]), squares).max(axis=0) >= self.iou_match
            taken |= set(np.flatnonzero(on_followed).tolist())
        self._start_tracks(squares, taken)

    def update(self, squares: np.ndarray, ok: np.ndarray) -> None:
        """New landmark squares for every track (same order); ok=False marks a track lost."""
        for t, sq, good in zip(self.tracks, upright(squares), ok):
            if good:
                t.square, t.lost, t.held, t.untrusted = sq, False, False, 0
            else:
                t.lost, t.untrusted = True, t.untrusted + 1
        self._drop_duplicates()

    def mark_lost(self, ids: set[int]) -> None:
        """By id, not position: an update before may have merged a duplicate away."""
        for t in self.tracks:
            t.lost = t.lost or t.id in ids

    def end(self, which: np.ndarray) -> None:
        """A scene cut: the tracks `which` flags (those whose squares it changed) end; the faces
        the new shot has there are new tracks, found by the detector."""
        self.tracks = [t for t, gone in zip(self.tracks, which) if not gone]

    def drop_lost(self) -> None:
        self.tracks = [t for t in self.tracks if not t.lost]

    def hold_lost(self) -> None:
        """Keep lost faces hidden at their last trusted square instead of dropping them: they are
        tried there on every frame and come back, under their id, when trusted again; the next
        detection round re-seeds them where the detector sees them, or ends them."""
        for t in self.tracks:
            t.held = t.held or t.lost

    def _reseed(self, t: Track, square: np.ndarray) -> None:
        """A lost face the detector saw again: it goes on from the detector's square, and a window
        around it, should it be lost again, starts at its narrowest (detect.near_reach)."""
        t.square, t.lost, t.held, t.untrusted = square, False, False, 0
        self.seeded.add(t.id)

    def _start_tracks(self, squares: np.ndarray, matched: set[int]) -> None:
        """Every square no track took starts one (after the tracks kept), then duplicates go."""
        for j in range(len(squares)):
            if j not in matched:
                self.tracks.append(Track(self.next_id, squares[j]))
                self.seeded.add(self.next_id)
                self.next_id += 1
        self._drop_duplicates()

    def _drop_duplicates(self) -> None:
        """Two tracks that converged on one face: the trusted one survives, or of two alike the
        older id. Why trust first: two squares the detector set on one face at once (the face
        found lying one way, a false box the other way, `detect.detect_turned`) are both new; the
        network then trusts one, and keeping the other, older by one id, lost the face."""
        if len(self.tracks) < 2:
            return
        iou = square_iou(self.squares(), self.squares())
        drop = set()
        for i in range(len(self.tracks)):
            for j in range(i + 1, len(self.tracks)):
                if iou[i, j] > self.duplicate_iou:
                    a, b = self.tracks[i], self.tracks[j]
                    drop.add((j if b.lost else i) if a.lost != b.lost else (j if b.id > a.id else i))
        self.tracks = [t for k, t in enumerate(self.tracks) if k not in drop]
