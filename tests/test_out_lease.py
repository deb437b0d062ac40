"""One run at a time per output folder (`jobs/out_lease.py`), on real filesystems and real processes."""
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time

import pyarrow.fs as pafs
import pytest

from facetracks.jobs import out_lease
from facetracks.jobs.cli import main
from facetracks.jobs.out_lease import LEASE, STALE_S, Holder, Lease, LeaseError, OutputBusy

from .clips import moving_clip, pick_faces
from .raycluster import sandbox_env, short_tempdir, stop_sessions

LOCAL = pafs.LocalFileSystem()


def _plant(root, holder: Holder) -> None:
    (root / LEASE).write_text(json.dumps(holder.__dict__))


def _holder(run="other", host=None, pid=None, pid_start="", age_s=0.0) -> Holder:
    now = time.time()
    return Holder(run, out_lease._this_host() if host is None else host, os.getpid() if pid is None else pid,
                  pid_start, now - age_s - 5, now - age_s)


def test_a_second_run_is_refused_while_the_first_holds_the_folder_and_gets_it_after(tmp_path):
    first = Lease(LOCAL, str(tmp_path), "run-a").take()
    assert json.loads((tmp_path / LEASE).read_text())["run"] == "run-a"
    with pytest.raises(OutputBusy, match=rf"writing to {tmp_path}: run run-a \(pid {os.getpid()} .*last renewed 0 s"):
        Lease(LOCAL, str(tmp_path), "run-b").take()
    assert json.loads((tmp_path / LEASE).read_text())["run"] == "run-a"      # the refused run changed nothing
    first.release()
    assert not (tmp_path / LEASE).exists()
    with Lease(LOCAL, str(tmp_path), "run-b") as second:
        assert second.took_over is None
        assert json.loads((tmp_path / LEASE).read_text())["run"] == "run-b"
    assert not (tmp_path / LEASE).exists()


def test_a_run_killed_on_this_machine_is_taken_over_at_once(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _holder("killed", pid=p.pid, pid_start=out_lease._proc_start(p.pid))
        _plant(tmp_path, dead)
        with pytest.raises(OutputBusy, match="run killed"):
            Lease(LOCAL, str(tmp_path), "mine").take()           # alive: its folder
    finally:
        p.kill()
        p.wait()
    lease = Lease(LOCAL, str(tmp_path), "mine").take()
    assert lease.took_over == dead
    assert json.loads((tmp_path / LEASE).read_text())["run"] == "mine"
    lease.release()


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="a process's start time is read from /proc")
def test_a_reused_pid_is_not_the_run_that_held_it(tmp_path):
    """The holder's pid now belongs to another process (started at another time)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _plant(tmp_path, _holder("gone", pid=p.pid, pid_start="1"))
        with Lease(LOCAL, str(tmp_path), "mine") as lease:
            assert lease.took_over.run == "gone"
    finally:
        p.kill()
        p.wait()


def test_a_lease_this_process_left_behind_is_taken_over_and_one_it_holds_is_not(tmp_path):
    """A notebook or a test suite runs annotate twice in one process: the first run's lease (left
    by an interrupt) names this live pid, but this process no longer holds it."""
    _plant(tmp_path, _holder("earlier-in-this-process", pid_start=out_lease._proc_start(os.getpid())))
    with Lease(LOCAL, str(tmp_path), "mine") as lease:
        assert lease.took_over.run == "earlier-in-this-process"
        with pytest.raises(OutputBusy, match="run mine"):
            Lease(LOCAL, str(tmp_path), "again").take()


def test_a_run_on_another_machine_holds_until_it_stops_renewing(tmp_path):
    _plant(tmp_path, _holder("remote", host="node-7 some-boot pid:[1]", pid=1, age_s=STALE_S - 30))
    with pytest.raises(OutputBusy, match=r"run remote \(pid 1 on node-7.*taken over 120 s after its last renewal"):
        Lease(LOCAL, str(tmp_path), "mine").take()
    _plant(tmp_path, _holder("remote", host="node-7 some-boot pid:[1]", pid=1, age_s=STALE_S + 1))
    with Lease(LOCAL, str(tmp_path), "mine") as lease:
        assert lease.took_over.run == "remote"


def test_an_unreadable_lease_holds_while_it_is_young(tmp_path):
    """A lease cut short (a run killed as it wrote it, or one being written now) holds the folder
    for STALE_S from its file's time, then is taken over."""
    (tmp_path / LEASE).write_text('{"run": "x", "pi')
    with pytest.raises(OutputBusy, match=f"an unreadable {LEASE} written 0 s ago"):
        Lease(LOCAL, str(tmp_path), "mine").take()
    old = time.time() - STALE_S - 1
    os.utime(tmp_path / LEASE, (old, old))
    with Lease(LOCAL, str(tmp_path), "mine") as lease:
        assert lease.took_over.run == "unreadable"


def test_a_lease_with_fields_of_a_newer_version_is_still_read(tmp_path):
    _plant(tmp_path, _holder("newer", host="node-7 some-boot pid:[1]", pid=1))
    data = json.loads((tmp_path / LEASE).read_text())
    (tmp_path / LEASE).write_text(json.dumps({**data, "gpu": "H200"}))
    with pytest.raises(OutputBusy, match="run newer"):
        Lease(LOCAL, str(tmp_path), "mine").take()


def test_a_lease_that_cannot_be_read_is_an_error_not_a_free_folder(tmp_path):
    (tmp_path / LEASE).mkdir()             # a real read error, as a store's failure or EACCES would be
    with pytest.raises(LeaseError, match=f"cannot hold the output folder {tmp_path}: {LEASE} there"):
        Lease(LOCAL, str(tmp_path), "mine").take()
    (tmp_path / LEASE).rmdir()
    lease = Lease(LOCAL, str(tmp_path), "mine").take()
    (tmp_path / LEASE).unlink()
    (tmp_path / LEASE).mkdir()
    lease.renew()                          # one failed round: skipped, the run keeps the folder
    assert lease.lost is None
    (tmp_path / LEASE).rmdir()
    lease.renew()
    assert json.loads((tmp_path / LEASE).read_text())["run"] == "mine"
    lease.release()
    assert not (tmp_path / LEASE).exists()


def _contend(root: str, rounds: int, barrier, results) -> None:
    for r in range(rounds):
        barrier.wait()
        try:
            Lease(LOCAL, f"{root}/{r}", f"p{os.getpid()}").take()     # kept: the others of its round find it
            results.put((r, 1))
        except OutputBusy:
            results.put((r, 0))


def test_of_runs_started_at_the_same_instant_exactly_one_gets_the_folder(tmp_path):
    """Three processes take one folder at once, 40 times: never two holders (a lease created
    empty and then written was read as unreadable, so stale, and taken over: 15 of 150 rounds)."""
    rounds, n = 40, 3
    for r in range(rounds):
        (tmp_path / str(r)).mkdir()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(str(tmp_path), rounds, barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in range(rounds * n)]
    for p in procs:
        p.join(timeout=60)
    holders = [sum(g for r, g in got if r == k) for k in range(rounds)]
    assert holders == [1] * rounds


def test_renewal_stamps_the_time_and_a_lease_taken_by_another_run_is_left_to_it(tmp_path, monkeypatch):
    monkeypatch.setattr(out_lease, "RENEW_S", 0.05)
    lease = Lease(LOCAL, str(tmp_path), "mine").take()
    before = json.loads((tmp_path / LEASE).read_text())["renewed"]
    deadline = time.monotonic() + 10
    while json.loads((tmp_path / LEASE).read_text())["renewed"] == before and time.monotonic() < deadline:
        time.sleep(0.02)                             # the renewing thread's work
    assert json.loads((tmp_path / LEASE).read_text())["renewed"] > before
    monkeypatch.setattr(out_lease, "RENEW_S", 3600)
    time.sleep(0.1)
    other = _holder("after-suspend", host="elsewhere", pid=1)
    _plant(tmp_path, other)                          # this run was frozen past STALE_S and lost the folder
    lease.renew()
    assert lease.lost == other
    lease.release()
    assert json.loads((tmp_path / LEASE).read_text())["run"] == "after-suspend"     # not deleted


def test_on_a_store_without_exclusive_create_the_lease_is_written_and_read_back(tmp_path, monkeypatch):
    """A SubTreeFileSystem is not a LocalFileSystem: the object-store path (write, settle, read back)."""
    monkeypatch.setattr(out_lease, "SETTLE_S", 0.0)
    store = pafs.SubTreeFileSystem(str(tmp_path), LOCAL)
    first = Lease(store, "out", "run-a")
    store.create_dir("out")
    first.take()
    assert not first.local and json.loads((tmp_path / "out" / LEASE).read_text())["run"] == "run-a"
    with pytest.raises(OutputBusy, match="run run-a"):
        Lease(store, "out", "run-b").take()
    first.release()
    assert not (tmp_path / "out" / LEASE).exists()


def test_a_second_annotate_into_the_same_folder_stops_at_once_and_the_first_finishes(data_dir, tmp_path, capsys):
    """Two real runs: the first (a subprocess, rendering) holds the folder; the second is one line,
    exit 2, and writes nothing; the first's outputs are whole and its lease is gone at the end."""
    src = tmp_path / "in"
    src.mkdir()
    moving_clip(str(src / "one.mp4"), pick_faces(data_dir, 1), frames_each=3)
    out = tmp_path / "out"
    root = short_tempdir()
    env = sandbox_env(root)
    cmd = [sys.executable, "-m", "facetracks.jobs.cli", "annotate", str(src), "--out", str(out), "--actors", "1",
           "--profile", "fast", "--render", "landmarks", "--progress", "never"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / LEASE).exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (out / LEASE).exists(), "the first run never took the folder"
        code = main(["annotate", str(src), "--out", str(out), "--profile", "fast"])
        err = capsys.readouterr().err
        text, _ = p.communicate(timeout=600)
    finally:
        stop_sessions([p.pid], env["RAY_AUTH_TOKEN"])
        shutil.rmtree(root, ignore_errors=True)
    assert code == 2
    assert f"another facetracks run is writing to {out}: run " in err and f"(pid {p.pid} on " in err
    assert p.returncode == 0, text
    assert sorted(os.listdir(out)) == ["_summary.json", "one.mp4.landmarks.mp4", "one.mp4.parquet"]


def test_taking_over_a_dead_runs_folder_removes_its_temp_files(data_dir, tmp_path, capsys):
    """A run SIGKILLed mid-render leaves its lease and its render's temp file; the next run says it
    takes over, and removes the temp files untouched for a minute (a day, without a takeover: one
    might be a live run's). One touched 10 s ago may be `facetracks render` writing: it stays."""
    src = tmp_path / "in"
    src.mkdir()
    moving_clip(str(src / "one.mp4"), pick_faces(data_dir, 1), frames_each=3)
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    _plant(out, _holder("killed", pid=p.pid, pid_start="1"))
    old, young = out / "big.mp4.sunglasses.mp4.0badf00d.tmp", out / "x.mp4.5eedbeef.tmp"
    for f, age in ((old, 120), (young, 10)):
        f.write_bytes(b"half a render")
        os.utime(f, (time.time() - age, time.time() - age))
    assert main(["annotate", str(src), "--out", str(out), "--profile", "fast"]) == 0
    assert "an earlier run killed (pid" in capsys.readouterr().err
    assert not old.exists() and young.exists()
    assert json.loads((out / "_summary.json").read_text())["stale_temp_files_removed"] == 1
