"""Several streams, one detector call and one forward pass: batching across the videos an actor follows.

A GPU is fed well only by batches of hundreds of crops, and one video gives a few faces per frame.
So an actor follows several videos (or segments) at once, each on its own thread with its own
tracker and schedule (`follow.follow_faces`, unchanged), and `SharedStages` stands in for the
detector and the landmark model of each: a stream's call waits until every stream is waiting (or
`wait_s` has passed since the first did), then one of them runs every waiting call as one batch
(all detection frames of a size through one `detect_batch`, all faces through one
`predict_with_score`) and hands each stream its share. The answers a stream gets are the ones
it would get alone, so its rows and track ids do not depend on its neighbours; only float noise
of a different batch composition can move a point in its last bits.

Threads suffice: decoding (PyAV), the detector and the network release the GIL, and what holds it
(following, Parquet rows) is small next to them.
"""
from __future__ import annotations

import gc
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .detect import FaceDetector
from .follow import Landmarker


@dataclass
class BatchStats:
    """What the shared stages did, summed over the actor's life (counters only grow)."""
    detect_calls: int = 0         # detector calls that scanned whole frames ...
    detect_frames: int = 0        # ... and how many
    detect_rects: int = 0         # rectangles of frames scanned (change_scan.py), counted apart
    detect_s: float = 0.0
    landmark_calls: int = 0
    landmark_crops: int = 0
    landmark_s: float = 0.0
    detect_overflows: int = 0     # torch cascade scans whose survivors outgrew their fixed slots (redone op by op)
    detect_graphs_off: int = 0    # 1 where the torch cascade's CUDA graphs broke (its `graphs_broken` says why)
    waiting_s: float = 0.0        # no batch running, calls waiting for the other streams (up to wait_s)
    idle_s: float = 0.0           # no batch running, no call waiting: every stream busy with its own
                                  # work (decoding, following); on a GPU actor, the GPU idles then
    memory_splits: int = 0        # batches that ran out of memory and were run again in halves

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def out_of_memory(e: BaseException) -> bool:
    """Whether `e` says an allocation failed: torch's CUDA or CPU allocator, numpy's."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError)
                                          and ("out of memory" in text or "can't allocate memory" in text))


def _free_memory() -> None:
    """What a failed batch left: its garbage, and the blocks torch's CUDA allocator caches."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


@dataclass
class _Call:
    kind: str                     # "detect": args = (gray,), (gray, rect) or ([grays],); "landmarks": args =
                                  # (grays, squares); "forward": args = (crops, mirror) (a stage server's, below)
    args: tuple
    result: object = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class SharedStages:
    detector: FaceDetector
    predictor: Landmarker
    wait_s: float = 0.004           # longest a waiting call waits for the streams still busy
    stats: BatchStats = field(default_factory=BatchStats)
    _cv: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _streams: int = 0
    _pending: list[_Call] = field(default_factory=list, repr=False)
    _since: float = 0.0
    _running: bool = False
    _mark: float | None = None      # when the shared stages last went running / waiting / idle

    def _account(self) -> None:
        """Adds the time since the last mark to what the stages were doing then (under the lock):
        running (counted by the batches themselves), waiting or idle."""
        now = time.perf_counter()
        if self._mark is not None and not self._running:
            if self._pending:
                self.stats.waiting_s += now - self._mark
            else:
                self.stats.idle_s += now - self._mark
        self._mark = now

    @contextmanager
    def stream(self) -> Iterator[tuple["StreamDetector", "StreamLandmarker"]]:
        """A detector and a landmarker for one stream, for as long as the stream runs."""
        with self._cv:
            self._streams += 1
        try:
            det = RegionStreamDetector(self) if hasattr(self.detector, "detect_in") else StreamDetector(self)
            yield det, StreamLandmarker(self)
        finally:
            with self._cv:
                self._streams -= 1
                self._cv.notify_all()      # the others may now be all there is to wait for

    def call(self, kind: str, *args) -> object:
        c = _Call(kind, args)
        with self._cv:
            if not self._pending:
                self._since = time.perf_counter()
            self._account()
            self._pending.append(c)
            self._cv.notify_all()
            while not c.done:
                left = self._since + self.wait_s - time.perf_counter()
                if not self._running and self._pending and (len(self._pending) >= self._streams or left <= 0):
                    self._account()
                    batch, self._pending, self._running = self._pending, [], True
                    self._cv.release()
                    try:
                        self._run(batch)
                    finally:
                        self._cv.acquire()
                        self._running = False
                        self._mark = time.perf_counter()
                        if self._pending:
                            self._since = time.perf_counter()
                        self._cv.notify_all()
                else:
                    self._cv.wait(None if self._running or not self._pending else max(left, 1e-4))
        if c.error is not None:
            raise c.error
        return c.result

    def _run(self, batch: list[_Call]) -> None:
        """Every waiting call, as one batch per kind; an error is every caller's of that batch."""
        for kind, run in (("detect", self._detect), ("landmarks", self._landmarks), ("forward", self._forward)):
            calls = [c for c in batch if c.kind == kind]
            if calls:
                self._run_halving(run, calls)

    def _run_halving(self, run, calls: list[_Call]) -> None:
        """`run(calls)`; where it runs out of memory (a GPU shared by several actors, frames of 8K
        from 16 streams at once), the memory is freed and each half of the calls run on its own,
        down to one call: each caller still gets what it would alone, and only a call that does not
        fit by itself fails (its video). Before, one batch too large failed every video in it."""
        try:
            run(calls)
            error = None
        except BaseException as e:       # noqa: BLE001 - handed to each caller, raised on its thread
            error = e
        if error is not None and len(calls) > 1 and out_of_memory(error):
            error = None                 # dropped before freeing: its traceback holds the batch's tensors
            _free_memory()
            self.stats.memory_splits += 1
            half = len(calls) // 2
            self._run_halving(run, calls[:half])
            self._run_halving(run, calls[half:])
            return
        for c in calls:
            c.error = error
            c.done = True

    def _detect(self, calls: list[_Call]) -> None:
        t = time.perf_counter()
        whole = []                         # calls on whole frames, each with its frames as a list
        for c in calls:
            if len(c.args) > 1:            # a rectangle of a frame (change_scan.py): scanned on its own
                c.result = self.detector.detect_in(*c.args)
            else:
                whole.append((c, c.args[0] if isinstance(c.args[0], list) else [c.args[0]]))
        by_shape: dict[tuple, list[tuple[list, int, np.ndarray]]] = {}    # (a call's answers, place, frame)
        for c, grays in whole:
            c.result = [None] * len(grays)
            for k, g in enumerate(grays):
                by_shape.setdefault(g.shape, []).append((c.result, k, g))
        batched = getattr(self.detector, "detect_batch", None)
        for group in by_shape.values():
            grays = [g for _, _, g in group]
            found = batched(grays) if batched else [self.detector.detect(g) for g in grays]
            for (answers, k, _), boxes in zip(group, found):
                answers[k] = boxes
        for c, _ in whole:                 # a call with one frame gets its boxes, a list a list
            c.result = c.result if isinstance(c.args[0], list) else c.result[0]
        self.stats.detect_calls += bool(whole)             # batches that scanned whole frames
        self.stats.detect_frames += sum(len(grays) for _, grays in whole)
        self.stats.detect_rects += len(calls) - len(whole)
        self.stats.detect_overflows = getattr(self.detector, "static_overflows", 0)
        self.stats.detect_graphs_off = int(getattr(self.detector, "graphs_broken", None) is not None)
        self.stats.detect_s += time.perf_counter() - t

    def _landmarks(self, calls: list[_Call]) -> None:
        t = time.perf_counter()
        grays = [g for c in calls for g in c.args[0]]
        squares = np.concatenate([np.asarray(c.args[1], np.float32).reshape(len(c.args[0]), -1) for c in calls])
        pts, score = self.predictor.predict_with_score(grays, squares)
        at = 0
        for c in calls:
            n = len(c.args[0])
            c.result = (pts[at:at + n], score[at:at + n])
            at += n
        self.stats.landmark_calls += 1
        self.stats.landmark_crops += len(grays)
        self.stats.landmark_s += time.perf_counter() - t

    def _forward(self, calls: list[_Call]) -> None:
        """Crops cut elsewhere through the network (`forward_crops`): one pass for all the calls
        with the same `mirror`, each handed its rows (with mirror, its crops' and then theirs
        mirrored, as `forward_crops` returns them for its own crops alone)."""
        t, passes = time.perf_counter(), []
        for mirror in (False, True):
            group = [c for c in calls if bool(c.args[1]) == mirror]
            if not group:
                continue
            crops = np.concatenate([c.args[0] for c in group])
            out, contrast = self.predictor.forward_crops(crops, mirror)
            n, at = len(crops), 0
            for c in group:
                k = len(c.args[0])
                rows = np.concatenate([out[at:at + k], out[n + at:n + at + k]]) if mirror else out[at:at + k]
                c.result = (rows, contrast[at:at + k])
                at += k
            passes.append(n)
        self.stats.landmark_calls += len(passes)     # counted once both passes ran (a retry in halves: once)
        self.stats.landmark_crops += sum(passes)
        self.stats.landmark_s += time.perf_counter() - t


@dataclass
class StreamDetector:
    """A `FaceDetector` for one stream of `SharedStages`."""
    shared: SharedStages

    def detect(self, gray: np.ndarray) -> np.ndarray:
        return self.shared.call("detect", gray)


@dataclass
class RegionStreamDetector(StreamDetector):
    """One stream's detector when the shared one can scan a rectangle of a frame (`detect_in`, the
    CPU cascade): a stream's `change_scan.ChangeScan` then rescans only what changed."""

    def detect_in(self, gray: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
        return self.shared.call("detect", gray, region)


@dataclass
class StreamLandmarker:
    """A `follow.Landmarker` for one stream of `SharedStages`."""
    shared: SharedStages

    def squares_from_boxes(self, boxes: np.ndarray) -> np.ndarray:
        return self.shared.predictor.squares_from_boxes(boxes)

    def predict_with_score(self, grays: list[np.ndarray], squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.shared.call("landmarks", grays, squares)
