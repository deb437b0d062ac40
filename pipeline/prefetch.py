"""Run an iterator on a background thread, a bounded number of items ahead of its consumer.

Why: FFmpeg decodes with the GIL released and torch runs its kernels with the GIL released, so
decoding the next frames on a thread overlaps the network's work on the current ones. The queue
is bounded, so memory stays flat however long the video is.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


def prefetch(items: Iterable[T], depth: int = 16) -> Iterator[T]:
    """Yield what `items` yields, in order; its exceptions are raised here, where they would have been.

    Stopping early (break, an exception in the consumer) stops the thread and closes `items`.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def produce() -> None:
        it = None
        try:
            it = iter(items)
            for x in it:
                if not put((x, None)):
                    return
            put((_END, None))
        except BaseException as e:     # handed to the consumer, raised there
            put((_END, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=produce, name="prefetch", daemon=True)
    t.start()
    try:
        while True:
            x, err = q.get()
            if x is _END:
                if err is not None:
                    raise err
                return
            yield x
    finally:
        stop.set()
        t.join()
