"""Ray clusters and drivers that a test starts, finds and stops itself, and nothing else.

`ray stop` ends every Ray process on the machine (it matches process names), and fixed ports or
the default temp dir collide with a user's own cluster. So every process a test starts here gets
a session of its own (`start_new_session=True`); Ray's daemons stay in the session of the
`ray start` or driver that launched them (the raylet only calls setpgrp, never setsid), and the one
Ray process that does open a new session, a `ray job submit` driver, is a child of a process in
ours. Each cluster and sandbox also has its own token (RAY_AUTH_TOKEN, so nothing is written to or
read from ~/.ray/auth_token), which every Ray process inherits: a process counts as ours only when
it is in one of our sessions (or descends from one) and carries that token, so a reused pid or
session id can never be taken for ours. Stopping kills exactly those, by pid. Each cluster has its
own free ports and its own temp dir too (RAY_TMPDIR and --temp-dir: nothing lands in /tmp/ray).

Linux only: processes are read from /proc.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import import_module
from dataclasses import dataclass, field

from facetracks.jobs.code_id import PARTS

RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def free_port() -> int:
    """A port free on every interface now (Ray's servers bind 0.0.0.0/::). The kernel picks it from
    the ephemeral range, outside Ray's default worker ports."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def short_tempdir() -> str:
    """Ray puts Unix sockets under its temp dir and their paths must fit in 107 bytes, so the
    pytest tmp_path (long) will not do."""
    return tempfile.mkdtemp(prefix="ft-ray-", dir="/tmp")


def sandbox_env(root: str) -> dict[str, str]:
    """The environment for processes a test starts: Ray's files under `root`, a token of their own,
    and no RAY_ADDRESS that could point a driver at someone else's cluster."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_TMPDIR=root, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    return env


@dataclass(frozen=True)
class Proc:
    """A process, identified by pid and start time so that a reused pid is never taken for it."""
    pid: int
    start: int
    cmdline: str

    def alive(self) -> bool:
        st = _stat(self.pid)
        return st is not None and st[3] == self.start and st[2] != "Z"


def _stat(pid: int) -> tuple[int, int, str, int] | None:
    """(ppid, session id, state, start time) from /proc, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(rest[1]), int(rest[3]), rest[0], int(rest[19])


def _has_env(pid: int, entry: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry in f.read().split(b"\0")
    except OSError:              # gone, or another user's
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def session_processes(sessions: list[int], token: str) -> list[Proc]:
    """Live processes in these sessions, and every descendant of them wherever its session, that
    carry RAY_AUTH_TOKEN=token in their environment or descend from one that does. Ray's agents
    (ray::DashboardAgent, ray::RuntimeEnvAgent) set their process title over the memory that
    /proc/PID/environ reads, so they show no token; they are the raylet's children, and would
    outlive every cluster a test stopped if only the token counted."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))) is not None and st[2] != "Z":
            stats[int(name)] = st
    candidates = _descendants({pid for pid, st in stats.items() if st[1] in sessions}, stats)
    entry = f"RAY_AUTH_TOKEN={token}".encode()
    ours = _descendants({pid for pid in candidates if _has_env(pid, entry)}, stats)
    return [Proc(pid, stats[pid][3], _cmdline(pid)) for pid in sorted(ours)]


def _descendants(roots: set[int], stats: dict[int, tuple[int, int, str, int]]) -> set[int]:
    """`roots` and every process below them."""
    found = set(roots)
    while more := {pid for pid, st in stats.items() if st[0] in found} - found:
        found |= more
    return found


def stop_sessions(sessions: list[int], token: str, timeout: float = 60) -> None:
    """SIGKILL everything `session_processes` finds, again until nothing is left (a dying raylet
    may still fork), and wait for each to be gone."""
    deadline = time.monotonic() + timeout
    while procs := session_processes(sessions, token):
        for p in procs:
            if p.alive():                   # same pid and start time: still the process we found
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        while any(p.alive() for p in procs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"still running after SIGKILL: {[p for p in procs if p.alive()]}")
            time.sleep(0.05)


@dataclass
class LoopbackCluster:
    """A Ray cluster of one or more nodes on 127.0.0.1, started with `ray start` like a user's."""
    root: str
    env: dict[str, str]
    port: int
    dashboard_port: int | None = None
    client_port: int = field(default_factory=free_port)     # Ray Client's server on the head (ray://)
    sessions: list[int] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, node_cpus: list[int], dashboard: bool = False, node_gpus: list[int] | None = None,
              env: dict[str, str] | None = None) -> LoopbackCluster:
        """A head with node_cpus[0] CPUs, then one worker node per further entry. `node_gpus`:
        the GPUs each node declares (Ray's resource; on a machine without one, what Ray places
        on them runs on the CPU). `env`: more environment for the nodes (and the drivers a test
        starts with `c.env`)."""
        root = short_tempdir()
        c = cls(root, {**sandbox_env(root), **(env or {})}, free_port(), free_port() if dashboard else None)
        try:
            for i, cpus in enumerate(node_cpus):
                c._start_node(i == 0, cpus, node_gpus[i] if node_gpus else 0)
        except BaseException:
            c.stop()
            raise
        return c

    def add_node(self, cpus: int, env: dict[str, str]) -> None:
        """One more worker node, its processes (and the actors on it) with `env` on top of the
        cluster's: a node set up unlike the others."""
        self._start_node(False, cpus, env=env)

    def _start_node(self, head: bool, cpus: int, gpus: int = 0, env: dict[str, str] | None = None) -> None:
        cmd = [RAY, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus), "--num-gpus", str(gpus),
               "--temp-dir", os.path.join(self.root, "ray"), "--disable-usage-stats",
               # fixed by default (52365), so two nodes, or a user's node, would collide
               "--dashboard-agent-listen-port", str(free_port())]
        if head:
            cmd += ["--head", "--port", str(self.port), "--ray-client-server-port", str(self.client_port)]
            cmd += (["--include-dashboard", "true", "--dashboard-port", str(self.dashboard_port)]
                    if self.dashboard_port else ["--include-dashboard", "false"])
        else:
            cmd += ["--address", self.address]
        p = subprocess.Popen(cmd, env={**self.env, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
        self.sessions.append(p.pid)
        out, _ = p.communicate(timeout=180)
        if p.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{out[-3000:]}")

    @property
    def token(self) -> str:
        return self.env["RAY_AUTH_TOKEN"]

    def processes(self) -> list[Proc]:
        return session_processes(self.sessions, self.token)

    def stop(self) -> None:
        stop_sessions(self.sessions, self.token)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def other_release(root, changed: bool = True) -> str:
    """The installed package copied under `root`, one file changed, as a node left on another
    release has it (`changed=False`: the same code, installed elsewhere): `root` goes first on
    that node's PYTHONPATH."""
    for name in PARTS:
        shutil.copytree(import_module(name).__path__[0], os.path.join(root, *name.split(".")),
                        ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    if changed:
        with open(os.path.join(root, "facetracks", "pipeline", "follow.py"), "a") as f:
            f.write("\n# the next release\n")
    return str(root)
