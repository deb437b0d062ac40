"""How a command stops when asked to: SIGTERM (`timeout`, `docker stop`, Slurm, Kubernetes) as
Ctrl-C does, and a second request while it stops does not break the stop.

Without this, SIGTERM killed the driver where it stood: Ray's own handler (installed by
`ray.init`) printed a C++ stack and aborted, the summary did not say the run was interrupted, and
an actor went on to move its render into place after the driver was gone. A second Ctrl-C
during the clean-up raised inside it (a traceback from Ray's shutdown, once a segfault).
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM: stopped as Ctrl-C stops a command (a KeyboardInterrupt, so every clean-up that
    Ctrl-C runs runs), exit status 143 (`terminated()` says which it was)."""


EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}    # 128 + the signal, as a shell reports it
_requests: list[int] = []       # signals received while the handlers are ours
_active = False


def _handler(signum: int, frame) -> None:
    _requests.append(signum)
    if len(_requests) == 1:
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    if len(_requests) == 2:
        print("facetracks: stopping (actors stopped, the files they were writing removed, Ray shut down); "
              "once more to quit at once (a temp file may be left)", file=sys.stderr, flush=True)
        return
    os._exit(EXIT.get(_requests[0], 130))


def terminated() -> bool:
    """Whether the stop was SIGTERM's (Ray's waits turn the exception raised into a plain
    KeyboardInterrupt, so its type does not say)."""
    return bool(_requests) and _requests[0] == signal.SIGTERM


def stopped_by() -> tuple[str, int]:
    """What stopped the command, in words, and its exit status: SIGTERM's, else Ctrl-C's."""
    return ("terminated (SIGTERM)", EXIT[signal.SIGTERM]) if terminated() else ("interrupted", EXIT[signal.SIGINT])


def terminate() -> None:
    """Raise Terminated for a SIGTERM that reached another handler (Ray's, while `ray.init` runs:
    it exits), as if ours had had it."""
    _requests.append(signal.SIGTERM)
    install()
    raise Terminated()


def install() -> None:
    """(Again) make SIGINT and SIGTERM ours, inside `on_signals`: `ray.init` puts its own SIGTERM
    handler in place, so it is called after Ray starts too."""
    if _active and threading.current_thread() is threading.main_thread():
        for s in EXIT:
            signal.signal(s, _handler)


@contextlib.contextmanager
def on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt (Terminated) once, within the block; the
    handlers before it are put back after it (tests and notebooks call `main` many times)."""
    global _active
    if threading.current_thread() is not threading.main_thread():
        yield                    # signals reach the main thread only: nothing to handle here
        return
    before = {s: signal.getsignal(s) for s in EXIT}
    _requests.clear()
    _active = True
    install()
    try:
        yield
    finally:
        _active = False
        if not _requests:        # after a stop the process is ending: Ray shuts down at its exit, and a
            for s, h in before.items():            # second Ctrl-C there raised inside that shutdown
                signal.signal(s, h if h is not None else signal.SIG_DFL)
