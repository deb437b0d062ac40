"""Progress in frames for a whole run, across actors: frames done / expected, fps and ETA (tqdm).

Workers count frames while a video runs (a two-hour file moves the bar): each task carries a
`FrameReporter`, a plain callable the pipeline calls as `on_frames(n)`, that sends the task's
running count to a small Ray actor (`FrameBoard`) at most every `SEND_EVERY_S`. The driver
reads the board between results. Expected frames start as the container's estimate (header
frame count, else duration x rate; 1 for a photo) and are corrected as decoding goes: a video
that decodes past its estimate raises it, and a finished video counts what it really had. The
headers are read on threads beside the run, never before it: on an object store each read is a
round trip (tens of milliseconds), and 10,000 of them in a row would hold the start for many
minutes; the total grows as they come in.
"""
from __future__ import annotations

import queue
import sys
import threading
import time

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tqdm import tqdm

from facetracks.pipeline.video import VideoError, header_length

from .inputs import VideoItem

SEND_EVERY_S = 0.5       # a worker's reports: often enough for a live bar, few enough to cost nothing
POLL_EVERY_S = 0.5       # the driver's reads of the board
PROGRESS_CHOICES = ("auto", "always", "never")
ESTIMATE_THREADS = 8     # header reads at once for the bar's total (I/O: each a round trip on an object store)


def shows(progress: str) -> bool:
    """auto: only when stderr is a terminal (a log file gets no bar, only the summary line)."""
    return progress == "always" or (progress == "auto" and sys.stderr.isatty())


class FrameBoard:
    """The running frame count of every task in flight, and when each last reported (runs as a
    Ray actor; its one clock times every task, wherever the tasks run)."""

    def __init__(self):
        self.counts: dict[int, int] = {}
        self.heard: dict[int, float] = {}

    def set(self, task: int, count: int) -> None:
        self.counts[task] = max(count, self.counts.get(task, 0))
        self.heard[task] = time.monotonic()

    def snapshot(self, tasks: list[int]) -> dict[int, int]:
        return {t: self.counts[t] for t in tasks if t in self.counts}

    def silent(self, tasks: list[int], seconds: float) -> list[int]:
        """Those of `tasks` that have started (reported once) and not reported for `seconds`."""
        now = time.monotonic()
        return [t for t in tasks if t in self.heard and now - self.heard[t] > seconds]

    def forget(self, tasks: list[int]) -> None:
        for t in tasks:
            self.counts.pop(t, None)
            self.heard.pop(t, None)


class FrameReporter:
    """Travels with a task to its worker; the pipeline calls it as `on_frames(n)` (n = 0: a
    heartbeat, from a render or the task's start)."""

    def __init__(self, board, task: int):
        self.board, self.task = board, task
        self.count, self.sent_at = 0, 0.0

    def __call__(self, n: int) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.sent_at >= SEND_EVERY_S:
            self.sent_at = now
            self.board.set.remote(self.task, self.count)


def estimate_frames(it: VideoItem) -> int:
    """What the container says, before any decoding (0 when it says nothing; never raises)."""
    if it.photo:
        return 1
    try:
        frames, seconds, fps = header_length(it.path)
        return frames or int(round(seconds * fps))
    except (VideoError, TypeError, ValueError):
        return 0


def _start_board():
    """The run's FrameBoard, on the driver's node: a lost node must not take the bar and the stall
    watch with it."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ray.remote(FrameBoard).options(num_cpus=0, scheduling_strategy=here).remote()


def _read_estimates(items: list[VideoItem], into: queue.SimpleQueue, stop: threading.Event) -> None:
    """Each item's `estimate_frames` into `into`, read by ESTIMATE_THREADS daemon threads until
    `stop` is set (a read hung on a dead mount must not hold the driver's exit; the run's watchdog
    handles the tasks)."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for it in items:
        todo.put(it)

    def read() -> None:
        while not stop.is_set():
            try:
                it = todo.get_nowait()
            except queue.Empty:
                return
            into.put((it.name, estimate_frames(it)))

    for _ in range(min(ESTIMATE_THREADS, len(items))):
        threading.Thread(target=read, name="frame-estimates", daemon=True).start()


class FrameBar:
    """The driver's side: one bar for the run, in frames, with the files finished beside it, and
    the tasks that went silent (`silent`). Shown or not, the driver calls it the same way; hidden
    and not watching, it starts no actor and reads no header."""

    def __init__(self, items: list[VideoItem], show: bool, no_frames: set[str] = frozenset(), watch: bool = False):
        """`no_frames`: files whose tasks decode nothing the bar counts (a render redone alone).
        `watch`: the tasks report even without a bar, so that a stuck one can be found."""
        self.show = show
        self.estimate: dict[str, int] = {}      # per file, as the headers come in
        self.estimates: queue.SimpleQueue = queue.SimpleQueue()   # (file, estimate) from the reading threads
        self.done: dict[str, int] = {}          # frames of finished tasks, per file
        self.running: dict[int, str | None] = {}   # task id -> its file (None: a batch of photos)
        self.live: dict[int, int] = {}
        # kept as sums, so a run of 10,000 photos costs no pass over every file per result
        self.done_n = 0                          # sum of done
        self.expected_n = 0                      # sum of max(estimate, done) per file
        self.finished, self.files = 0, len(items)
        self.final: set[str] = set()             # files finished: their count stands, a late estimate is dropped
        self.stop_reading = threading.Event()    # set by close(): the run is over, the rest of the headers unread
        if show:
            _read_estimates([it for it in items if it.name not in no_frames], self.estimates, self.stop_reading)
        self.next_task, self.polled = 0, 0.0
        self.board = _start_board() if show or watch else None
        self.bar = tqdm(total=self.expected_n, desc="frames", unit="frame", disable=not show,
                        dynamic_ncols=True)
        self._postfix()

    def reporter(self, names: list[str]) -> tuple[int, FrameReporter | None]:
        """A new task on `names` (one video or segment, or a batch of photos): its id and reporter."""
        task = self.next_task
        self.next_task += 1
        if self.show:
            self.running[task] = names[0] if len(names) == 1 else None
        return task, FrameReporter(self.board, task) if self.board is not None else None

    def task_ended(self, task: int, counts: dict[str, int]) -> None:
        """A task's result is in (or its actor died: `counts` empty): the frames it really did."""
        if self.board is not None:
            self.board.forget.remote([task])
        if not self.show:
            return
        self.running.pop(task, None)
        self.live.pop(task, None)
        for name, n in counts.items():
            self._set_done(name, self.done.get(name, 0) + n)

    def silent(self, tasks: list[int], seconds: float) -> list[int]:
        """Tasks started and not heard from for `seconds` (none when the board cannot answer:
        a task is only ever given up on what the board says)."""
        if self.board is None or not tasks:
            return []
        try:
            return ray.get(self.board.silent.remote(tasks, seconds), timeout=30)
        except ray.exceptions.RayError:
            return []

    def _cap(self, name: str) -> int:
        return max(self.estimate.get(name, 0), self.done.get(name, 0))

    def _set_estimate(self, name: str, frames: int) -> None:
        before = self._cap(name)
        self.estimate[name] = frames
        self.expected_n += self._cap(name) - before

    def _set_done(self, name: str, frames: int, estimate: int | None = None) -> None:
        before = self._cap(name)
        self.done_n += frames - self.done.get(name, 0)
        self.done[name] = frames
        self.expected_n += self._cap(name) - before
        if estimate is not None:
            self._set_estimate(name, estimate)

    def _take_estimates(self) -> None:
        while True:
            try:
                name, frames = self.estimates.get_nowait()
            except queue.Empty:
                return
            if name not in self.final:
                self._set_estimate(name, frames)

    def file_done(self, name: str, frames: int) -> None:
        """A file's final count replaces its estimate and its tasks' counts (segments overlap)."""
        self.finished += 1
        if self.show:
            self.final.add(name)
            self._set_done(name, frames, estimate=frames)
            self._postfix()
            self._redraw()

    def poll(self) -> None:
        if not self.show or time.monotonic() - self.polled < POLL_EVERY_S:
            return
        self.polled = time.monotonic()
        try:
            self.live.update(ray.get(self.board.snapshot.remote(list(self.running)), timeout=5))
        except ray.exceptions.RayError:
            return                   # progress only: never the run's failure
        self._redraw()

    def _redraw(self) -> None:
        """Finished tasks' sums plus the running tasks' live counts (a pass over the running only);
        a video decoding past its estimate raises the total."""
        self._take_estimates()
        live: dict[str | None, int] = {}
        for task, name in self.running.items():
            live[name] = live.get(name, 0) + self.live.get(task, 0)
        n = self.done_n + sum(live.values())
        beyond = sum(max(0, self.done.get(k, 0) + v - self._cap(k)) for k, v in live.items() if k is not None)
        self.bar.total = max(self.expected_n + beyond, n)
        self.bar.update(n - self.bar.n)

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"{self.finished}/{self.files} files", refresh=False)

    def close(self) -> None:
        self.stop_reading.set()
        self.bar.close()
        if self.board is not None:
            ray.kill(self.board)
