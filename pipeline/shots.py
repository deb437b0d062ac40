"""Reading frames ahead of the one being handled, each marked when it starts a new shot.

The follow loop needs to see a few frames ahead (to batch them, and so that a batch never spans a
scene cut), and every frame must be compared with the one decoded just before it, whatever the
loop does with it; this keeps both in one place.

A change that is undone within `TRANSIENT` frames (a photographer's flash, a strobe, one frame
the decoder garbled) is no cut: the frame after it is like the one before it again. And a cut
need not be everywhere: `Cut.changed` tells which faces' squares changed, so a tile of a video
call or a split screen that switches ends only the tracks in it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .video import Frame

TRANSIENT = 2         # frames a change may last and still be undone: no cut
SQUARE_SAMPLES = 16   # a face square is compared on this many points a side (`Cut.changed`) ...
SQUARE_CORE = 0.8     # ... over its central part: a square reaches past the face, into a next tile


def _thumb(gray: np.ndarray) -> np.ndarray:
    """About 64 px on the long side by plain subsampling: a view, nearly free at any resolution."""
    step = max(1, max(gray.shape[:2]) // 64)
    return gray[::step, ::step].astype(np.int16)


def is_cut(prev: np.ndarray | None, cur: np.ndarray, threshold: float) -> bool:
    """A scene cut: the frame is unlike the one before (thumbnails from `_thumb`)."""
    return bool(threshold) and prev is not None and prev.shape == cur.shape \
        and float(np.abs(cur - prev).mean()) > threshold


def _samples(gray: np.ndarray, square: np.ndarray) -> np.ndarray:
    """The square (cx, cy, side, ...)'s core read on a SQUARE_SAMPLES grid, clipped to the frame."""
    cx, cy, side = (float(v) for v in square[:3])
    side *= SQUARE_CORE
    h, w = gray.shape[:2]
    xs = np.clip(np.linspace(cx - side / 2, cx + side / 2, SQUARE_SAMPLES), 0, w - 1).astype(np.intp)
    ys = np.clip(np.linspace(cy - side / 2, cy + side / 2, SQUARE_SAMPLES), 0, h - 1).astype(np.intp)
    return gray[np.ix_(ys, xs)].astype(np.int16)


@dataclass(frozen=True)
class Cut:
    """A frame unlike the one before it: `before` and `after` are their grey frames."""
    before: np.ndarray
    after: np.ndarray

    def changed(self, squares: np.ndarray, threshold: float) -> np.ndarray:
        """Which face squares (N, 3+) the cut changed: the median of their grey levels' moves is
        over `threshold`. One that did not shows the same face in the same place: its track goes
        on. The median, not the mean: a square that reaches into a tile that switched, or a face
        that turns, moves at its edges. Measured on six shared clips (`docs/eval/cut_squares.py`),
        that median is 1 grey level between frames of one shot (8 at the 99th percentile, 15.4 at
        the 99.9th: fast head turns), and 15.0 or more (0.1st percentile of 6,659 pairs; 19 at the
        1st) between two different people's faces, each in its own square (the means: 19.3 at the
        99th percentile of one shot against 23.7, less apart): 0.4 of the cut threshold (12) keeps
        a track only where the face did not change."""
        if self.before.shape != self.after.shape:
            return np.ones(len(squares), bool)
        return np.array([not np.isfinite(s[:3]).all()
                         or float(np.median(np.abs(_samples(self.after, s) - _samples(self.before, s)))) > threshold
                         for s in squares], bool)


class Lookahead:
    """Up to `size` frames read ahead; `cuts[i]` says `frames[i]` starts a new shot."""

    def __init__(self, frames: Iterable[Frame], size: int, cut_threshold: float):
        self._it = iter(frames)
        self._size = max(size, 1 + TRANSIENT)     # a cut is settled by the frames after it
        self._threshold = cut_threshold
        self._last_thumb: np.ndarray | None = None
        self._before: tuple[Frame, np.ndarray] | None = None    # the frame handed out last, and its thumb
        self._exhausted = False
        self.frames: list[Frame] = []
        self.cuts: list[bool] = []
        self._thumbs: list[np.ndarray] = []
        self._settled: list[bool] = []
        self.transients = 0      # changes undone within TRANSIENT frames: flagged, then not cuts

    def fill(self) -> bool:
        """Read up to `size` frames ahead; False once every frame has been handed out."""
        while not self._exhausted and len(self.frames) < self._size:
            nxt = next(self._it, None)
            if nxt is None:
                self._exhausted = True
                break
            thumb = _thumb(nxt.gray)
            self.frames.append(nxt)
            self.cuts.append(is_cut(self._last_thumb, thumb, self._threshold))
            self._thumbs.append(thumb)
            self._settled.append(False)
            self._last_thumb = thumb
        self._settle()
        return bool(self.frames)

    def _settle(self) -> None:
        """Decide each flagged frame once the TRANSIENT frames after it are read (or the input
        ended): when one of them is like the frame before the flagged one, the change was undone
        and no frame from the flagged one to it starts a shot. Until then a flag counts as a cut
        (a batch stops there), which costs at most a smaller batch."""
        for j, cut in enumerate(self.cuts):
            if not cut or self._settled[j]:
                continue
            later = self._thumbs[j + 1:j + 1 + TRANSIENT]
            if len(later) < TRANSIENT and not self._exhausted:
                return
            base = self._thumbs[j - 1] if j else (self._before[1] if self._before else None)
            back = next((k for k, t in enumerate(later, j + 1)
                         if base is not None and base.shape == t.shape and not is_cut(base, t, self._threshold)), None)
            self._settled[j] = True
            if back is not None:
                self.transients += 1
                for k in range(j, back + 1):
                    self.cuts[k], self._settled[k] = False, True

    @property
    def at_end(self) -> bool:
        """Whether the first frame is the input's last (a photo's only one): no later round comes."""
        return self._exhausted and len(self.frames) == 1

    def take_cut(self) -> Cut | None:
        """The cut the first frame starts, if it starts one, said once: a frame handled twice (a
        retry) does not end the tracks it started a second time."""
        cut, self.cuts[0] = self.cuts[0], False
        if not cut or self._before is None:
            return None
        return Cut(self._before[0].gray, self.frames[0].gray)

    def drop(self, n: int) -> None:
        """The first `n` frames are handled (0: the first is tried again)."""
        if n:
            self._before = (self.frames[n - 1], self._thumbs[n - 1])
        del self.frames[:n], self.cuts[:n], self._thumbs[:n], self._settled[:n]
