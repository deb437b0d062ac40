"""One run at a time per output folder: `_running.json` names the run writing there.

Two runs into one `--out` (a job submitted twice, a command started again in a second terminal)
would both decode and landmark every video, overwrite each other's summary, and the one stopped
with Ctrl-C would delete the render the other was writing. So a run takes this lease before it
touches anything, renews it while it runs and deletes it at the end; a second run finds it and
stops at once, naming the run that holds it.

A lease whose run is gone is taken over: at once when that run was on this machine (its process
no longer exists: a run killed with SIGKILL, a laptop that rebooted), else when it has not been
renewed for `STALE_S` (a node that died). On a local or network disk the lease is written whole
under a temp name and hard-linked into place, which fails where one exists, so of two runs
started at the same instant exactly one gets it (O_EXCL where links are not supported); on an
object store (s3://, gs://), which has no exclusive create here, it is written and read back,
which catches all but two runs started within the same `SETTLE_S`.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace

import pyarrow.fs as pafs

from facetracks.pipeline.atomic import temp_name

from .outputs import is_full, write_bytes

LEASE = "_running.json"
RENEW_S = 20.0        # how often a live run rewrites its lease
STALE_S = 120.0       # a lease not renewed this long belongs to a run that is gone
SETTLE_S = 1.0        # object stores: how long after writing the lease it is read back

_HELD: set[tuple] = set()     # the leases this process holds now (a pid alone does not say: notebooks, tests)


class OutputBusy(RuntimeError):
    """Another run is writing to this output folder now."""


class LeaseError(RuntimeError):
    """The output folder's lease cannot be read or written (permissions, a store that fails)."""


@dataclass(frozen=True)
class Holder:
    run: str
    host: str          # hostname, boot and pid namespace: where `pid` means this process
    pid: int
    pid_start: str     # the process's start time (/proc), so a reused pid is not taken for it
    started: float     # epoch seconds
    renewed: float

    @property
    def ident(self) -> tuple:
        """Who holds it: two containers may both run as pid 1 and start runs in the same second."""
        return self.run, self.host, self.pid, self.started


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command's name (field 3 on: state, ..., start time at [19])."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _proc_start(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[19] if len(fields) > 19 else ""


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
    """Whether the holder's process still runs; None when that cannot be told from here (another
    machine, or no /proc to tell a reused pid from the holder's)."""
    if h.host != _this_host():
        return None
    if h.pid == os.getpid():
        return h.ident in _HELD           # this process, which may have run (and left) an earlier one
    try:
        os.kill(h.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                              # another user's process: it exists
    fields = _stat_fields(h.pid)
    if not fields or not h.pid_start:
        return None                       # it exists, but is it the holder? the renewals say
    return fields[0] != "Z" and fields[19] == h.pid_start       # a zombie was killed, only not reaped


def describe(h: Holder, now: float | None = None) -> str:
    now = time.time() if now is None else now
    if not h.host:
        return f"an unreadable {LEASE} written {max(0.0, now - h.renewed):.0f} s ago"
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
        """The lease there now; None when there is none. A file that does not parse (edited by
        hand, cut short) is an unnamed holder renewed when the file was written. OSError when it
        cannot be read (a store's blip, no permission): that says nothing about who holds it."""
        try:
            with self.fs.open_input_stream(self.path) as f:
                data = json.loads(f.read())
            return Holder(**{k: data[k] for k in Holder.__dataclass_fields__})
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError):
            info = self.fs.get_file_info(self.path)
            if info.type == pafs.FileType.NotFound:
                return None
            return Holder("unreadable", "", 0, "", 0.0, info.mtime.timestamp() if info.mtime else 0.0)

    def take(self) -> Lease:
        """Hold the folder, or raise OutputBusy naming the live run that holds it (LeaseError when
        the lease cannot be read or written, OSError ENOSPC when the disk is full)."""
        try:
            for _ in range(3):          # a stale lease removed, then someone else's new one found: look again
                other = self.read()
                if other is not None:
                    alive = _alive_here(other)
                    if alive or (alive is None and time.time() - other.renewed < STALE_S):
                        raise OutputBusy(f"another facetracks run is writing to {self.root}: "
                                         f"{describe(other)}. Wait for it to finish, or use another --out "
                                         f"(a run that died is taken over {STALE_S:.0f} s after its last "
                                         f"renewal, at once on the machine it ran on; its lease is {LEASE} there)")
                    self._remove(other)
                    self.took_over = other
                if self._create():
                    _HELD.add(self.holder.ident)
                    self._start_renewing()
                    return self
        except BaseException as e:       # Ctrl-C midway included: never leave a lease of ours behind
            self._drop_own()
            if isinstance(e, OSError) and not isinstance(e, (FileNotFoundError, FileExistsError)):
                if not is_full(e):
                    raise LeaseError(f"cannot hold the output folder {self.root}: {LEASE} there cannot be "
                                     f"read or written ({e})") from e
            raise
        raise OutputBusy(f"another facetracks run is writing to {self.root} ({LEASE} there keeps changing)")

    def _create(self) -> bool:
        """Write the lease; False when another run's appeared first."""
        if self.local:                    # whole before it is visible: a reader never sees it empty
            tmp = temp_name(self.path)
            try:
                with open(tmp, "wb") as f:
                    f.write(self._bytes())
                try:
                    os.link(tmp, self.path)   # fails where the lease exists: one of two runs gets it
                except FileExistsError:
                    return False
                except OSError:               # no hard links here (SMB, some FUSE mounts): O_EXCL; a reader
                    try:                      # that finds it still empty reads a fresh unnamed lease: busy
                        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    except FileExistsError:
                        return False
                    with os.fdopen(fd, "wb") as f:
                        f.write(self._bytes())
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
            return True
        if self.read() is not None:
            return False
        write_bytes(self.fs, self.path, self._bytes())
        time.sleep(SETTLE_S)
        mine = self.read()
        return mine is not None and mine.ident == self.holder.ident

    def _remove(self, stale: Holder) -> None:
        """Delete a gone run's lease, unless it changed since it was read (another run took it)."""
        if self.read() == stale:
            try:
                self.fs.delete_file(self.path)
            except FileNotFoundError:
                pass

    def _drop_own(self) -> None:
        _HELD.discard(self.holder.ident)
        try:
            current = self.read()
            if current is not None and current.ident == self.holder.ident:
                self.fs.delete_file(self.path)
        except OSError:
            pass        # left behind, it is taken over: this process is gone by then, or holds nothing

    def _start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="facetracks-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(RENEW_S):
            self.renew()

    def renew(self) -> None:
        """Stamp the lease with the time now, unless another run holds it now (this run was frozen
        past STALE_S, a suspended laptop, and another took the folder): then stop renewing. A read
        or write that fails (a store's blip, a full disk) skips this round: STALE_S is six of them."""
        try:
            current = self.read()
            if current is not None and current.host and current.ident != self.holder.ident:
                self.lost = current
                self._stop.set()
                return
            self.holder = replace(self.holder, renewed=time.time())
            write_bytes(self.fs, self.path, self._bytes())
        except OSError:
            pass

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._drop_own()

    def __enter__(self) -> Lease:
        return self.take()

    def __exit__(self, *exc) -> None:
        self.release()
