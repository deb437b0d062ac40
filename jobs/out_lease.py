"""One run at a time per output folder: `_running.json` names the run writing there.

Two runs into one `--out` (a job submitted twice, a command started again in a second terminal)
would both decode and landmark every video, overwrite each other's summary, and the one stopped
with Ctrl-C would delete the render the other was writing. So a run takes this lease before it
touches anything, renews it while it runs and deletes it at the end; a second run finds it and
stops at once, naming the run that holds it.

A lease whose run is gone is taken over: at once when that run was on this machine (its process
no longer exists: a run killed with SIGKILL, a laptop that rebooted), else when it has not been
renewed for `STALE_S` (a node that died). On a local or network disk the lease is created with
O_EXCL, so of two runs started at the same instant exactly one gets it; on an object store
(s3://, gs://), which has no exclusive create here, it is written and read back, which catches
all but two runs started within the same `SETTLE_S`.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass

import pyarrow.fs as pafs

from .outputs import write_bytes

LEASE = "_running.json"
RENEW_S = 20.0        # how often a live run rewrites its lease
STALE_S = 120.0       # a lease not renewed this long belongs to a run that is gone
SETTLE_S = 1.0        # object stores: how long after writing the lease it is read back


class OutputBusy(RuntimeError):
    """Another run is writing to this output folder now."""


@dataclass(frozen=True)
class Holder:
    run: str
    host: str          # hostname, boot and pid namespace: where `pid` means this process
    pid: int
    pid_start: str     # the process's start time (/proc), so a reused pid is not taken for it
    started: float     # epoch seconds
    renewed: float


def _proc_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]     # field 22: start time in clock ticks
    except (OSError, IndexError):
        return ""


def _this_host() -> str:
    """Hostname, boot id and pid namespace: two containers on one machine may share a hostname,
    and a pid means something only within its own namespace and boot."""
    parts = [socket.gethostname()]
    for path, read in (("/proc/sys/kernel/random/boot_id", lambda p: open(p).read().strip()),
                       ("/proc/self/ns/pid", os.readlink)):
        try:
            parts.append(read(path))
        except OSError:
            pass
    return " ".join(parts)


def _alive_here(h: Holder) -> bool | None:
    """Whether the holder's process still runs; None when it ran on another machine."""
    if h.host != _this_host():
        return None
    try:
        os.kill(h.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                            # another user's process: it exists
    return not h.pid_start or _proc_start(h.pid) in ("", h.pid_start)


def describe(h: Holder, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return (f"run {h.run} (pid {h.pid} on {h.host.split()[0]}, started "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(h.started))}, "
            f"last renewed {max(0.0, now - h.renewed):.0f} s ago)")


class Lease:
    """This run's hold on an output folder; `release()` (or the `with` block's end) gives it up."""

    def __init__(self, fs: pafs.FileSystem, root: str, run: str):
        self.fs, self.root, self.local = fs, root, isinstance(fs, pafs.LocalFileSystem)
        self.path = f"{root}/{LEASE}"
        now = time.time()
        self.holder = Holder(run, _this_host(), os.getpid(), _proc_start(os.getpid()), now, now)
        self.took_over: Holder | None = None      # the gone run whose lease this one replaced
        self.lost: Holder | None = None           # who replaced ours while we could not renew
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _bytes(self) -> bytes:
        return json.dumps(asdict(self.holder), indent=2).encode()

    def read(self) -> Holder | None:
        try:
            with self.fs.open_input_stream(self.path) as f:
                return Holder(**json.loads(f.read()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):    # half-written by hand, another version's: not a live run's
            return Holder("unreadable", "", 0, "", 0.0, 0.0)

    def take(self) -> Lease:
        """Hold the folder, or raise OutputBusy naming the live run that holds it."""
        for _ in range(3):          # a stale lease removed, then someone else's new one found: look again
            other = self.read()
            if other is not None:
                alive = _alive_here(other)
                if alive or (alive is None and time.time() - other.renewed < STALE_S):
                    raise OutputBusy(f"another facetracks run is writing to {self.root}: "
                                     f"{describe(other)}. Wait for it to finish, or use another --out "
                                     f"(a run that died is taken over {STALE_S:.0f} s after its last "
                                     f"renewal; at once on the machine it ran on)")
                self._remove(other)
                self.took_over = other
            if self._create():
                self._start_renewing()
                return self
        raise OutputBusy(f"another facetracks run is writing to {self.root} ({LEASE} there keeps changing)")

    def _create(self) -> bool:
        """Write the lease; False when another run's appeared first."""
        if self.local:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as f:
                f.write(self._bytes())
            return True
        if self.read() is not None:
            return False
        write_bytes(self.fs, self.path, self._bytes())
        time.sleep(SETTLE_S)
        mine = self.read()
        return mine is not None and mine.run == self.holder.run

    def _remove(self, stale: Holder) -> None:
        """Delete a gone run's lease, unless it changed since it was read (another run took it)."""
        if self.read() == stale:
            try:
                self.fs.delete_file(self.path)
            except FileNotFoundError:
                pass

    def _start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="facetracks-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_S):
            self.renew()

    def renew(self) -> None:
        """Stamp the lease with the time now, unless it is no longer ours (this run was frozen past
        STALE_S, a suspended laptop, and another run took the folder): then stop renewing."""
        current = self.read()
        if current is not None and current.run != self.holder.run:
            self.lost = current
            self._stop.set()
            return
        self.holder = Holder(**{**asdict(self.holder), "renewed": time.time()})
        try:
            write_bytes(self.fs, self.path, self._bytes())
        except OSError:
            pass            # a full disk or a blip: the next renewal tries again, STALE_S is six of them

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current = self.read()
        if current is not None and current.run == self.holder.run:
            try:
                self.fs.delete_file(self.path)
            except OSError:
                pass        # left behind, it is taken over: its process is gone

    def __enter__(self) -> Lease:
        return self.take()

    def __exit__(self, *exc) -> None:
        self.release()
