"""Reading frames ahead of the one being handled, each marked when it starts a new shot.

The follow loop needs to see a few frames ahead (to batch them, and so that a batch never spans a
scene cut), and every frame must be compared with the one decoded just before it, whatever the
loop does with it; this keeps both in one place.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .video import Frame


def _thumb(gray: np.ndarray) -> np.ndarray:
    """About 64 px on the long side by plain subsampling: a view, nearly free at any resolution."""
    step = max(1, max(gray.shape[:2]) // 64)
    return gray[::step, ::step].astype(np.int16)


def is_cut(prev: np.ndarray | None, cur: np.ndarray, threshold: float) -> bool:
    """A scene cut: the frame is unlike the one before (thumbnails from `_thumb`)."""
    return bool(threshold) and prev is not None and prev.shape == cur.shape \
        and float(np.abs(cur - prev).mean()) > threshold


class Lookahead:
    """Up to `size` frames read ahead; `cuts[i]` says `frames[i]` starts a new shot."""

    def __init__(self, frames: Iterable[Frame], size: int, cut_threshold: float):
        self._it = iter(frames)
        self._size = size
        self._threshold = cut_threshold
        self._last_thumb: np.ndarray | None = None
        self._exhausted = False
        self.frames: list[Frame] = []
        self.cuts: list[bool] = []

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
            self._last_thumb = thumb
        return bool(self.frames)

    @property
    def at_end(self) -> bool:
        """Whether the first frame is the input's last (a photo's only one): no later round comes."""
        return self._exhausted and len(self.frames) == 1

    def take_cut(self) -> bool:
        """Whether the first frame starts a new shot, said once: a frame handled twice (a retry)
        does not end the tracks it started a second time."""
        cut, self.cuts[0] = self.cuts[0], False
        return cut

    def drop(self, n: int) -> None:
        """The first `n` frames are handled."""
        del self.frames[:n], self.cuts[:n]
