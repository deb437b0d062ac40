"""Whole-frame detection that rescans only what changed, and not the faces already followed.

Why: a detection round is there to find faces that came in; on the CPU a whole-frame Haar scan at
640x480 costs as much as landmarking 25-40 faces, yet most of what it reads it has read before: the
background of a still camera, and the faces it follows, which the landmark score checks on every
frame anyway.

`ChangeScan` belongs to one stream (`follow.follow_faces` makes one per video). It keeps the grey
frame as each part of the picture was last scanned, and the boxes found then. For a new frame it
averages the absolute grey-level change in cells of `CELL` pixels, leaving out the zones of the
faces followed and trusted (`skip`): those are the tracker's business, and their own motion is no
sign of a new face. Each group of changed cells is rescanned in a rectangle around it (with
`detector.detect_in`), grown so that no face can straddle its edge: an edge that lies in a zone
moves half a face on into it (a face coming in beside a followed one may lie partly in its zone),
and the rectangle grows over every old box it touches, and joins the rectangles it meets, until
nothing grows. Old boxes outside every rectangle stand. An old box on a followed face is where the
face was when last scanned: it is not handed back while the face is followed, but kept, so a face
that stops being followed where it stood (its score dipped; nothing changed there) is found again.
Unchanged content gives the detector no reason to answer otherwise, so the boxes are a whole-frame
scan's, up to where the scan grid falls (a pixel or two) and faces at the edge of detection. A
followed face no rectangle covered was not looked at: `examined` says so, and the tracker neither
confirms nor doubts it.

The whole frame is scanned again every `full_every` frames, when the rectangles would cover half of
it (a pan, a cut, a change of light), and when the detector cannot scan a rectangle (the batched
torch detector), so no error of the change test lives long. Such a detector still skips a round in
which nothing changed outside the followed faces: on a GPU actor each torch cascade call costs
12-40 ms whatever its size (launches and syncs, not pixels), so a skipped call is the only saving.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .detect import FaceDetector, detect_whole

CELL = 16            # pixels of a change cell, frame pixels
MARGIN_CELLS = 2     # a rescanned rectangle reaches this many cells past its changed ones
ZONE = 2.0           # a followed face's zone, in sides of its square (its box, hair and chin)
FULL_SHARE = 0.5     # rectangles over this share of the frame: scan the whole frame instead
INTO_ZONE = 0.5      # a rectangle's edge inside a zone moves this many face sides on into it

Rect = tuple[int, int, int, int]      # x0, y0, x1, y1, frame pixels


@dataclass
class ScanStats:
    full: int = 0            # whole-frame scans
    partial: int = 0         # scans of rectangles around what changed ...
    skipped: int = 0         # ... or of nothing, as nothing changed outside the followed faces
    scanned_share: float = 0.0   # summed share of the frame the scans read (a whole scan counts 1)


@dataclass
class ChangeScan:
    threshold: float = 8.0     # mean absolute grey-level change of a cell that makes it changed
    full_every: int = 96       # frames between whole-frame scans at most
    oversize: bool = False     # a whole-frame scan that finds nothing also looks for a face too big for the frame
    stats: ScanStats = field(default_factory=ScanStats)
    _ref: np.ndarray | None = field(default=None, repr=False)     # grey, as each part was last scanned
    _boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32), repr=False)
    _full_at: int | None = field(default=None, repr=False)        # frame index of the last whole scan

    def detect(self, detector: FaceDetector, gray: np.ndarray, index: int,
               skip: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The detector's (N, 5) boxes on `gray` (frame `index` of this stream), and which of the
        `skip` squares (M, 3: cx, cy, side, the faces followed and trusted) were examined: all after
        a whole-frame scan, those wholly inside a rescanned rectangle otherwise."""
        skip = np.zeros((0, 3), np.float32) if skip is None else np.asarray(skip, np.float32).reshape(-1, 3)
        zones = _zones(skip, gray.shape)
        rects = self._rects(gray, index, zones, skip[:, 2])
        if rects is None or (rects and not hasattr(detector, "detect_in")):
            self._boxes = np.asarray(detect_whole(detector, gray, self.oversize), np.float32).reshape(-1, 5)
            self._ref, self._full_at = gray.copy(), index
            self.stats.full += 1
            self.stats.scanned_share += 1.0
            return self._boxes.copy(), np.ones(len(skip), bool)
        old = self._boxes
        stale = _overlaps(old, rects)
        found = [np.asarray(detector.detect_in(gray, r), np.float32).reshape(-1, 5) for r in rects]
        # an old box on a followed face is where the face was when it was last scanned: kept, for
        # when the face is no longer followed and has not moved, but not handed back meanwhile
        hidden = ~stale & _overlaps(old, zones)
        self._boxes = _by_score(np.concatenate([old[~stale], *found]))
        out = _by_score(np.concatenate([old[~stale & ~hidden], *found]))
        for x0, y0, x1, y1 in rects:
            self._ref[y0:y1, x0:x1] = gray[y0:y1, x0:x1]
        if rects:
            self.stats.partial += 1
            self.stats.scanned_share += sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects) / gray.size
        else:
            self.stats.skipped += 1
        examined = np.array([any(_inside(z, r) for r in rects) for z in zones], bool)
        return out, examined

    def _rects(self, gray: np.ndarray, index: int, zones: list[Rect], sides: np.ndarray) -> list[Rect] | None:
        """Rectangles to rescan (none: nothing changed); None: scan the whole frame."""
        if self._ref is None or self._ref.shape != gray.shape or self._full_at is None \
                or not 0 <= index - self._full_at < self.full_every:
            return None
        h, w = gray.shape
        diff = cv2.absdiff(gray, self._ref)
        for x0, y0, x1, y1 in zones:                 # a followed face moving is no new face
            diff[y0:y1, x0:x1] = 0
        changed = (_cell_means(diff) > self.threshold).astype(np.uint8)
        if not changed.any():
            return []
        grown = cv2.dilate(changed, np.ones((2 * MARGIN_CELLS + 1,) * 2, np.uint8))
        _, _, cc, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
        rects = [(x * CELL, y * CELL, min(w, (x + bw) * CELL), min(h, (y + bh) * CELL)) for x, y, bw, bh, _ in cc[1:]]
        rects = self._grown(rects, (w, h), zones, sides)
        if sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects) > FULL_SHARE * h * w:
            return None
        return rects

    def _grown(self, rects: list[Rect], size: tuple[int, int], zones: list[Rect], sides: np.ndarray) -> list[Rect]:
        """Rectangles grown until no face can straddle an edge: by a face's side into a followed
        face's zone they reach (a face coming in beside it may lie mostly in the zone, where changes
        are not looked at), then over every old box they touch (not a followed face's: it is where
        the face was) and joined where they overlap, again until nothing grows."""
        w, h = size
        clip = lambda x0, y0, x1, y1: (max(0, x0), max(0, y0), min(w, x1), min(h, y1))  # noqa: E731
        out = []
        for r in rects:
            x0, y0, x1, y1 = r
            for z, s in zip(zones, sides):       # an edge inside a zone moves on into it
                if _touches(r, z):
                    g = int(np.ceil(INTO_ZONE * s))
                    x0 -= g if z[0] < x0 < z[2] else 0
                    x1 += g if z[0] < x1 < z[2] else 0
                    y0 -= g if z[1] < y0 < z[3] else 0
                    y1 += g if z[1] < y1 < z[3] else 0
            out.append(clip(x0, y0, x1, y1))
        m = MARGIN_CELLS * CELL
        free = self._boxes[~_overlaps(self._boxes, zones)]
        rects = _merged(out)
        while True:
            out = []
            for r in rects:
                b = free[_overlaps(free, [r])]
                if len(b):
                    r = clip(min(r[0], int(b[:, 0].min()) - m), min(r[1], int(b[:, 1].min()) - m),
                             max(r[2], int(np.ceil((b[:, 0] + b[:, 2]).max())) + m),
                             max(r[3], int(np.ceil((b[:, 1] + b[:, 3]).max())) + m))
                out.append(r)
            out = _merged(out)
            if out == rects:
                return out
            rects = out


def _cell_means(diff: np.ndarray) -> np.ndarray:
    """Mean of `diff` over each CELL x CELL cell, the last row and column of cells over the pixels
    they hold (zero padding, then each cell's mean scaled by how much of it is frame)."""
    h, w = diff.shape
    ch, cw = -(-h // CELL), -(-w // CELL)
    padded = cv2.copyMakeBorder(diff, 0, ch * CELL - h, 0, cw * CELL - w, cv2.BORDER_CONSTANT, value=0)
    means = cv2.resize(padded.astype(np.float32), (cw, ch), interpolation=cv2.INTER_AREA)
    rows = np.minimum(CELL, h - np.arange(ch) * CELL)[:, None]
    cols = np.minimum(CELL, w - np.arange(cw) * CELL)[None, :]
    return means * (CELL * CELL / (rows * cols))


def _by_score(boxes: np.ndarray) -> np.ndarray:
    return boxes[np.argsort(-boxes[:, 4], kind="stable")]


def _zones(squares: np.ndarray, shape: tuple[int, int]) -> list[Rect]:
    h, w = shape[:2]
    out = []
    for cx, cy, s in squares:
        r = ZONE * s / 2
        out.append((max(0, int(cx - r)), max(0, int(cy - r)), min(w, int(np.ceil(cx + r))), min(h, int(np.ceil(cy + r)))))
    return out


def _overlaps(boxes: np.ndarray, rects: list[Rect]) -> np.ndarray:
    """(N,) which (x, y, w, h, ...) boxes overlap any of `rects`."""
    out = np.zeros(len(boxes), bool)
    for x0, y0, x1, y1 in rects:
        out |= (boxes[:, 0] < x1) & (boxes[:, 1] < y1) & (boxes[:, 0] + boxes[:, 2] > x0) & (boxes[:, 1] + boxes[:, 3] > y0)
    return out


def _touches(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(a: Rect, b: Rect) -> bool:
    return a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]


def _merged(rects: list[Rect]) -> list[Rect]:
    """Overlapping rectangles joined until none overlap: a face is scanned in one of them, once."""
    rects = list(rects)
    joined = True
    while joined:
        joined = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                a, b = rects[i], rects[j]
                if _touches(a, b):
                    rects[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del rects[j]
                    joined = True
                    break
            if joined:
                break
    return rects
