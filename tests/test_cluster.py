"""The annotate job on real Ray: a two-node loopback cluster, a job submitted to a head, a killed
actor, a killed driver.

Each run is a separate `facetracks annotate` process, as a user would start it. Outputs are
compared with a reference run of the same parameters on one actor (tests/compare.py: rows, times
and track ids equal, points and scores to rounding).

These tests touch only what they start (tests/raycluster.py): every cluster and driver runs in a
session of its own, on free ports, with its own temp dir and token, and is stopped by killing the
processes of that session; nothing here runs `ray stop` or finds processes by name. A bystander
cluster, started before the others, must still be up when they are done.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from facetracks.jobs.code_id import code_id
from facetracks.jobs.drive import LISTING_STALL_HOOK
from facetracks.jobs.stage_server import KILL_HOOK as KILL_SERVER
from facetracks.jobs.worker import DEVICE_ERROR_HOOK, KILL_HOOK, STALL_HOOK

from .compare import assert_tracks_match
from .raycluster import (RAY, LoopbackCluster, other_release, sandbox_env, session_processes, short_tempdir,
                         stop_sessions)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"      # 200 frames, a keyframe every 0.48 s
ARGS = ["--segment-seconds", "2"]                           # 4 segments
STARTED: list[tuple[list[int], str]] = []   # (sessions, token) of each driver and cluster but the bystander
STOPPED_CLUSTERS: list[str] = []


def annotate(env, inp, out, *extra, wait=True, cwd=ROOT):
    """`facetracks annotate` in a session of its own (it and the in-process Ray it may start).
    Ray puts the driver's sys.path, `cwd` first, on every worker's."""
    cmd = [sys.executable, "-m", "facetracks.jobs.cli", "annotate", str(inp), "--out", str(out), *ARGS, *extra]
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    STARTED.append(([p.pid], env["RAY_AUTH_TOKEN"]))
    if not wait:
        return p
    try:
        out_text, _ = p.communicate(timeout=600)
    finally:
        stop_sessions([p.pid], env["RAY_AUTH_TOKEN"])     # whatever it left behind, and only that
    return p.returncode, out_text


def cluster(node_cpus, dashboard=False, node_gpus=None, env=None):
    c = LoopbackCluster.start(node_cpus, dashboard, node_gpus, env)
    STARTED.append((c.sessions, c.token))
    return c


def stop(c):
    c.stop()
    STOPPED_CLUSTERS.append(c.address)


def tables(out):
    return {os.path.relpath(os.path.join(d, f), out): pd.read_parquet(os.path.join(d, f))
            for d, _, files in os.walk(out) for f in files if f.endswith(".parquet")}


def assert_same(a, b):
    ta, tb = tables(a), tables(b)
    assert sorted(ta) == sorted(tb) and ta
    for k in ta:
        assert_tracks_match(ta[k], tb[k])
        assert ta[k].frame_index.is_monotonic_increasing


@pytest.fixture(scope="module", autouse=True)
def bystander():
    """Someone else's cluster, up before these tests start (checked by the last test)."""
    c = LoopbackCluster.start([1])
    procs = c.processes()
    assert procs
    yield c, procs
    c.stop()


@pytest.fixture(scope="module")
def sandbox():
    """The environment of in-process runs: Ray's files in a temp dir, a token of their own."""
    root = short_tempdir()
    yield sandbox_env(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def inputs(videos_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster_in")
    shutil.copy(os.path.join(videos_dir, CLIP), d / CLIP)
    shutil.copy(os.path.join(videos_dir, "pyfeat_single_face.mp4"), d / "single.mp4")
    shutil.copy(os.path.join(videos_dir, "pyfeat_single_face.mp4"), d / "single_copy.mp4")
    return d


@pytest.fixture(scope="module")
def reference(sandbox, inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    code, text = annotate(sandbox, inputs, out, "--actors", "1")
    assert code == 0, text
    return out


@pytest.fixture(scope="class")
def two_nodes():
    """Stopped when its class is done, so the bystander's check comes after."""
    c = cluster([1, 1])
    yield c
    stop(c)


class TestTwoOneCpuNodes:
    """Two loopback nodes of 1 CPU each: what a 2-CPU default actor could never be placed on."""

    def test_default_actors_fit_the_nodes_and_give_the_same_output(self, two_nodes, inputs, reference, tmp_path):
        code, text = annotate(two_nodes.env, inputs, tmp_path, "--address", two_nodes.address)
        assert code == 0, text
        summary = json.loads((tmp_path / "_summary.json").read_text())
        assert summary["ray"]["nodes"] == 2
        assert (summary["actors"]["count"], summary["actors"]["cpus_per_actor"]) == (2, 1.0)
        assert summary["videos"][CLIP]["segments"] == 4
        assert_same(reference, tmp_path)

    def test_an_actor_no_node_can_hold_fails_fast_naming_both(self, two_nodes, inputs, tmp_path):
        p = annotate(two_nodes.env, inputs, tmp_path, "--address", two_nodes.address, "--cpus-per-actor", "2",
                     wait=False)
        try:
            text, _ = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("annotate waits for an actor that no node can hold")
        finally:
            stop_sessions([p.pid], two_nodes.token)
        assert p.returncode == 2, text
        lines = [ln for ln in text.splitlines() if ln.startswith("facetracks annotate:")]
        assert len(lines) == 1, text
        assert "{CPU: 2} (--cpus-per-actor 2)" in lines[0] and "2 x {CPU: 1}" in lines[0], lines[0]
        assert not (tmp_path / "_summary.json").exists()


    def test_a_driver_without_the_clusters_token_is_told_so(self, two_nodes, inputs, tmp_path):
        """It was told "no Ray cluster at --address", with a cluster there."""
        env = {**two_nodes.env, "RAY_AUTH_TOKEN": "0" * 64}
        code, text = annotate(env, inputs, tmp_path, "--address", two_nodes.address)
        lines = [ln for ln in text.splitlines() if ln.startswith("facetracks annotate:")]
        assert code == 2 and len(lines) == 1, text
        assert f"a Ray cluster answers at --address {two_nodes.address}" in lines[0] and "RAY_AUTH_TOKEN" in lines[0]


def test_a_node_with_other_facetracks_code_costs_the_job_that_node_only(inputs, reference, tmp_path):
    """An actor refuses to start on a node whose facetracks differs from the driver's, saying so
    once; its tasks go to the other node's actor (they never ran, so they count as no video's
    death), and the outputs are a clean run's. Before, that node annotated its share with its
    own code, and nothing told the two apart."""
    c = cluster([1])
    try:
        c.add_node(1, {"PYTHONPATH": other_release(tmp_path / "other")})
        # run from elsewhere: from the checkout, every worker would import the checkout's package
        code, text = annotate(c.env, inputs, tmp_path / "out", "--address", c.address, cwd=tmp_path)
    finally:
        stop(c)
    assert code == 0, text
    told = [ln for ln in text.splitlines() if "CodeMismatch" in ln]
    assert len(told) == 1 and f"the driver {code_id()}: install the same facetracks" in told[0], text
    summary = json.loads((tmp_path / "out" / "_summary.json").read_text())
    assert summary["actors"]["count"] == 2 and summary["actors"]["replaced"] >= 1, summary["actors"]
    assert ["annotate: " + m for m in summary["actors"]["start_failures"]] == told
    assert_same(reference, tmp_path / "out")


def test_a_driver_joining_through_ray_client_gets_the_same_outputs(inputs, reference, tmp_path):
    """`--address ray://HEAD:PORT`, as from a laptop outside the cluster: the actors run on the
    cluster, the driver's outputs are written here. The head runs as the README says it should for
    Ray Client: without it, its server for the driver crashed at start in 5 tries of 29
    (jobs/ray_runner.py, CLIENT_ATTEMPTS), and each crash cost this test 40 s."""
    c = cluster([2], env={"GRPC_ENABLE_FORK_SUPPORT": "0"})
    try:
        code, text = annotate(c.env, inputs, tmp_path, "--address", f"ray://127.0.0.1:{c.client_port}")
    finally:
        stop(c)
    assert code == 0, text
    assert json.loads((tmp_path / "_summary.json").read_text())["ray"]["nodes"] == 1
    assert_same(reference, tmp_path)


def test_ray_job_submit_runs_the_job_on_the_cluster(inputs, reference, tmp_path):
    """`ray job submit -- facetracks annotate ...`: the driver runs on the head, joins its cluster
    (RAY_ADDRESS, set by the job server) and writes what an in-process run writes."""
    pytest.importorskip("ray.dashboard.modules.job.sdk", reason="ray job submit needs ray[default]")
    bin_dir = os.path.dirname(sys.executable)
    c = cluster([2], dashboard=True)
    submit = [RAY, "job", "submit", "--address", f"http://127.0.0.1:{c.dashboard_port}", "--",
              os.path.join(bin_dir, "facetracks"), "annotate", str(inputs), "--out", str(tmp_path), *ARGS,
              "--actors", "1"]
    try:
        r = subprocess.run(submit, env=c.env, capture_output=True, text=True, timeout=600)
    finally:
        stop(c)
    assert r.returncode == 0 and "succeeded" in r.stdout + r.stderr, r.stdout + r.stderr
    summary = json.loads((tmp_path / "_summary.json").read_text())
    assert summary["ray"]["gcs_address"].endswith(f":{c.port}")
    assert_same(reference, tmp_path)


def test_an_actor_following_several_streams_writes_the_same_outputs(sandbox, inputs, reference, tmp_path):
    """--streams 3: one actor follows three of the six segments and videos at once, their faces in
    shared forward passes (pipeline/batching.py); every output is the one-stream reference's."""
    code, text = annotate(sandbox, inputs, tmp_path, "--actors", "1", "--streams", "3")
    assert code == 0, text
    actors = json.loads((tmp_path / "_summary.json").read_text())["actors"]
    assert actors["streams"] == 3 and actors["ready_s"] > 0
    assert actors["decode_threads"] == max(1, int(actors["cpus_per_actor"]) // 3)     # the actor's cores shared out
    b = actors["batching"]
    assert b["landmark_crops"] > 0 and b["detect_frames"] >= b["detect_calls"] > 0
    assert b["waiting_s"] + b["idle_s"] > 0
    assert_same(reference, tmp_path)


def _busy_actor(driver_pid, token):
    """An AnnotateWorker of this driver's Ray inside a call (Ray titles it `ray::Class.method`
    while the method runs, `ray::Class` while idle)."""
    return next((p for p in session_processes([driver_pid], token)
                 if p.cmdline.startswith("ray::AnnotateWorker.__call__")), None)


def test_killed_actor_is_replaced_and_its_work_redone(sandbox, inputs, reference, tmp_path):
    p, token = annotate(sandbox, inputs, tmp_path, "--actors", "1", wait=False), sandbox["RAY_AUTH_TOKEN"]
    try:
        deadline = time.monotonic() + 300
        while (actor := _busy_actor(p.pid, token)) is None and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert actor, "no actor of this driver started a segment"
        os.kill(actor.pid, signal.SIGKILL)
        text, _ = p.communicate(timeout=600)
    finally:
        stop_sessions([p.pid], token)
    assert p.returncode == 0, text          # one actor: its replacement redid the killed one's segment
    assert_same(reference, tmp_path)


def test_killed_driver_resumes_to_the_same_outputs(sandbox, inputs, reference, tmp_path):
    p = annotate(sandbox, inputs, tmp_path, "--actors", "1", wait=False)
    summary = tmp_path / "_summary.json"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if summary.exists() and any(v["status"] == "ok" for v in json.loads(summary.read_text())["videos"].values()):
                break
            time.sleep(0.1)
        else:
            pytest.fail("no video finished")
    finally:
        os.killpg(p.pid, signal.SIGKILL)     # the driver and the Ray it started, no clean-up
        stop_sessions([p.pid], sandbox["RAY_AUTH_TOKEN"])   # Ray workers in process groups of their own
        p.wait()
    done_before = {k for k, v in json.loads(summary.read_text())["videos"].items() if v["status"] == "ok"}
    assert 0 < len(done_before) < 3
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    code, text = annotate(sandbox, inputs, tmp_path, "--actors", "1")
    assert code == 0, text
    after = json.loads(summary.read_text())["videos"]
    assert {k for k, v in after.items() if v["status"] == "skipped"} == done_before
    assert_same(reference, tmp_path)


def test_a_keyframe_listing_that_hangs_sends_its_video_whole(sandbox, inputs, reference, tmp_path):
    """Listing the 4-segment clip's keyframes never returns (the test hook, as on a hung mount):
    with --stall-seconds 3 the listing is cancelled and the clip annotated whole, in one task;
    the other videos are a clean run's."""
    code, text = annotate({**sandbox, LISTING_STALL_HOOK: "sadtalker"}, inputs, tmp_path, "--actors", "1",
                          "--stall-seconds", "3")
    assert code == 0, text
    assert "listing its keyframes read nothing for 3 s; it goes whole" in text, text
    v = json.loads((tmp_path / "_summary.json").read_text())["videos"]
    assert v[CLIP]["status"] == "ok" and v[CLIP]["frames"] == 200 and v[CLIP]["segments"] == 1, v[CLIP]
    ref, got = tables(reference), tables(tmp_path)
    for name in ("single.mp4.parquet", "single_copy.mp4.parquet"):
        assert_tracks_match(ref[name], got[name])


def test_ctrl_c_ends_the_driver_with_one_line_and_a_rerun_finishes(sandbox, inputs, reference, tmp_path):
    """SIGINT (Ctrl-C) to the driver once a video is done: exit 130, one line saying what to do and
    no traceback, the summary marked interrupted, no partial file; the same command finishes."""
    p = annotate(sandbox, inputs, tmp_path, "--actors", "1", wait=False)
    summary = tmp_path / "_summary.json"
    text = signal_once(p, signal.SIGINT, sandbox, lambda: summary.exists() and any(
        v["status"] == "ok" for v in json.loads(summary.read_text())["videos"].values()))
    assert p.returncode == 130, text
    assert "facetracks annotate: interrupted" in text and "Traceback" not in text, text
    s = json.loads(summary.read_text())
    assert s["interrupted"] is True and 0 < len(s["videos"]) < 3
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    code, text = annotate(sandbox, inputs, tmp_path, "--actors", "1")
    assert code == 0, text
    assert "interrupted" not in json.loads(summary.read_text())
    assert_same(reference, tmp_path)


def signal_once(p, sig, sandbox, ready, after_s: float = 0.0) -> str:
    """Send `sig` to the driver `p` once `ready()` (and `after_s` more); its output, once it ended
    and what it started was stopped."""
    try:
        deadline = time.monotonic() + 300
        while not ready() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(after_s)
        os.kill(p.pid, sig)
        text, _ = p.communicate(timeout=120)
    finally:
        stop_sessions([p.pid], sandbox["RAY_AUTH_TOKEN"])
    return text


def while_rendering(p, out) -> None:
    """Returns once a render's temp file is in `out` (the driver `p` still running)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and p.poll() is None:
        if [f for f in os.listdir(out) if f.endswith(".tmp") and ".landmarks." in f]:
            return
        time.sleep(0.02)
    pytest.fail("no render temp file was seen")


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_during_a_render_leaves_no_temp_file(sandbox, inputs, tmp_path, sig, code, said):
    """SIGINT while a render is being written: the driver stops the actors and removes the render's
    temp file; exit 130. SIGTERM (timeout, docker stop, Slurm, Kubernetes) the same, exit 143: it
    used to abort in Ray's handler with a stack dump, the summary not saying so, and the actor
    went on to move its render into place after the driver was gone."""
    p = annotate(sandbox, inputs, tmp_path, "--actors", "1", "--render", "landmarks", wait=False)
    try:
        while_rendering(p, tmp_path)
        os.kill(p.pid, sig)
        text, _ = p.communicate(timeout=120)
        time.sleep(3)                   # an actor left running would move its render into place by now
    finally:
        stop_sessions([p.pid], sandbox["RAY_AUTH_TOKEN"])
    assert p.returncode == code, text
    assert f"facetracks annotate: {said}; every file written is complete" in text and "Traceback" not in text, text
    assert json.loads((tmp_path / "_summary.json").read_text())["interrupted"] is True
    left = os.listdir(tmp_path)
    assert not [f for f in left if f.endswith(".tmp")] and "_running.json" not in left, left
    renders = {f[:-len(".landmarks.mp4")] for f in left if f.endswith(".landmarks.mp4")}
    assert renders <= {f[:-len(".parquet")] for f in left if f.endswith(".parquet")}, left    # never without tracks


def test_sigterm_as_ray_starts_is_a_stop_too(sandbox, inputs, tmp_path):
    """SIGTERM just after the run takes its folder, which lands while `ray.init` runs (Ray's own
    handler is in place there and exits: rc 15, no word) or just before or after it: whichever, the
    run stops as SIGTERM stops it, one line and 143, and leaves no lease."""
    p = annotate(sandbox, inputs, tmp_path, "--actors", "1", wait=False)
    text = signal_once(p, signal.SIGTERM, sandbox, (tmp_path / "_running.json").exists, after_s=0.3)
    assert p.returncode == 143, text
    assert "facetracks annotate: terminated (SIGTERM)" in text and "Traceback" not in text, text
    assert not (tmp_path / "_running.json").exists()


def test_a_worker_killed_during_a_render_leaves_no_temp_file(sandbox, inputs, tmp_path):
    """An actor's process dies while it writes a render (a segfault, the OOM killer): the driver
    deletes what that render was writing when it hears of the death, and the retry writes the
    render whole. The temp file used to stay until a run a day later swept it."""
    p, token = annotate(sandbox, inputs, tmp_path, "--actors", "1", "--render", "landmarks", wait=False), \
        sandbox["RAY_AUTH_TOKEN"]
    try:
        while_rendering(p, tmp_path)
        actor = _busy_actor(p.pid, token)
        assert actor, "no actor of this driver is rendering"
        os.kill(actor.pid, signal.SIGKILL)
        text, _ = p.communicate(timeout=600)
    finally:
        stop_sessions([p.pid], token)
    assert p.returncode == 0, text
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")], os.listdir(tmp_path)
    videos = json.loads((tmp_path / "_summary.json").read_text())["videos"]
    assert {v["render"]["status"] for v in videos.values()} == {"ok"}, videos
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".landmarks.mp4")]) == len(videos) == 3


def test_a_worker_whose_device_fails_is_replaced_and_its_tasks_redone(sandbox, inputs, reference, tmp_path):
    """One actor, whose device breaks for good on the first video named single (as CUDA does after
    an illegal memory access: every later call of that process fails). It used to fail every
    task it was handed until the run ended; it is replaced, and its tasks are redone on the new
    actor: the outputs are a clean run's, stderr says so once."""
    flag = tmp_path / "broke"
    code, text = annotate({**sandbox, DEVICE_ERROR_HOOK: f"single:{flag}"}, inputs, tmp_path / "out", "--actors", "1")
    assert code == 0, text
    assert flag.exists()
    actors = json.loads((tmp_path / "out" / "_summary.json").read_text())["actors"]
    assert actors["device_errors"] == 1 and actors["replaced"] == 1, actors
    assert text.count("an actor's device failed (CUDA error: an illegal memory access was encountered)") == 1, text
    assert_same(reference, tmp_path / "out")
    # a video that breaks the device every time is quarantined after two; the others finish
    code, text = annotate({**sandbox, DEVICE_ERROR_HOOK: "single_copy"}, inputs, tmp_path / "q", "--actors", "1")
    assert code == 1, text
    videos = json.loads((tmp_path / "q" / "_summary.json").read_text())["videos"]
    assert videos["single_copy.mp4"]["status"] == "failed", videos
    assert "quarantined: its worker failed 2 times while it held this video, the last time its device: " \
        "CUDA error: an illegal memory access was encountered" in videos["single_copy.mp4"]["error"]
    assert {v["status"] for k, v in videos.items() if k != "single_copy.mp4"} == {"ok"}


def test_a_video_that_kills_its_worker_costs_only_itself(sandbox, inputs, reference, tmp_path):
    """One actor, and a video whose worker dies every time it holds it (the worker's test hook
    SIGKILLs itself, as a decoder segfault would): the actor is replaced, the video quarantined
    after its second kill, and every other video comes out as in a clean run."""
    d = tmp_path / "in"
    shutil.copytree(inputs, d)
    shutil.copy(d / "single.mp4", d / "poison.mp4")
    out = tmp_path / "out"
    code, text = annotate({**sandbox, KILL_HOOK: "poison"}, d, out, "--actors", "1")
    assert code == 1, text
    v = json.loads((out / "_summary.json").read_text())["videos"]
    assert v["poison.mp4"]["status"] == "failed" and "quarantined" in v["poison.mp4"]["error"]
    assert all(e["status"] == "ok" for k, e in v.items() if k != "poison.mp4")
    assert_same(reference, out)


def test_a_video_whose_worker_hangs_is_stopped_and_quarantined(sandbox, inputs, reference, tmp_path):
    """One actor, and a video whose worker never returns once it has started it (the worker's test
    hook waits for ever, as a read from a hung network mount does): with --stall-seconds 3 the
    driver stops that worker, tries the video again alone on a new one, then quarantines it;
    the task queued behind it goes back as it was, and every other video comes out as in a
    clean run. Without the watchdog the job would wait for ever."""
    d = tmp_path / "in"
    shutil.copytree(inputs, d)
    shutil.copy(d / "single.mp4", d / "stuck.mp4")
    out = tmp_path / "out"
    code, text = annotate({**sandbox, STALL_HOOK: "stuck"}, d, out, "--actors", "1", "--stall-seconds", "3")
    assert code == 1, text
    v = json.loads((out / "_summary.json").read_text())["videos"]
    assert v["stuck.mp4"]["status"] == "failed", v["stuck.mp4"]
    assert "quarantined: it did nothing for 3 s, 2 times" in v["stuck.mp4"]["error"], v["stuck.mp4"]["error"]
    assert all(e["status"] == "ok" for k, e in v.items() if k != "stuck.mp4")
    assert text.count("nothing decoded or written for 3 s") == 2, text
    assert_same(reference, out)


def test_a_stage_server_that_dies_is_restarted_and_the_outputs_stand(sandbox, inputs, reference, tmp_path):
    """--stage-server, and the server's first life ends at its third call (SIGKILL, as the OOM
    killer ends it): Ray restarts it and sends the calls it held again; every video comes out
    as in a clean run."""
    code, text = annotate({**sandbox, KILL_SERVER: "once"}, inputs, tmp_path, "--stage-server", "--actors", "1")
    assert code == 0, text
    assert "constructor arguments in the object store" not in text     # Ray's error-level warning (ray#53727)
    srv = json.loads((tmp_path / "_summary.json").read_text())["actors"]["stage_servers"]
    assert srv["restarted"] == 1 and srv["gone"] == 0 and srv["calls"]["forward"] > 0
    assert_same(reference, tmp_path)


def test_a_server_that_dies_under_every_call_costs_each_video_not_the_job(sandbox, inputs, tmp_path):
    """A server that dies at its first call on every life (the test hook; as an input that kills
    it would): the call that killed it twice fails its own video and is sent to no other server;
    once the restarts are used up, each later video fails saying every server is gone, instead
    of the job waiting on it. Nothing half-written is left."""
    code, text = annotate({**sandbox, KILL_SERVER: "always"}, inputs, tmp_path, "--stage-server", "--actors", "1")
    assert code == 1, text
    summary = json.loads((tmp_path / "_summary.json").read_text())
    errors = [v["error"] for v in summary["videos"].values() if v["status"] == "failed"]
    assert len(errors) == len(summary["videos"]) == 3, summary["videos"]
    assert any("StageCallKilled" in e and "an input that kills it?" in e for e in errors), errors
    assert all("StageCallKilled" in e or "every stage server of the run is gone (1; the last one: ActorDiedError" in e
               for e in errors), errors
    assert summary["actors"]["stage_servers"]["gone"] == 1
    assert not [f for f in os.listdir(tmp_path) if f.endswith((".parquet", ".tmp"))]


def test_cpu_actors_use_the_stage_server_on_their_own_node(inputs, reference, tmp_path):
    """A head of 1 CPU and a node of 5, one GPU each (Ray's resource: here the servers run on
    the CPU): a stage server per GPU (half a CPU each, what the head can spare), so all four CPU
    actors land on the second node. Handed out in turn they would send half their calls to the
    head's server; each sends every call to its own node's server instead."""
    c = cluster([1, 5], node_gpus=[1, 1])
    try:
        code, text = annotate(c.env, inputs, tmp_path, "--address", c.address, "--stage-server")
    finally:
        stop(c)
    assert code == 0, text
    actors = json.loads((tmp_path / "_summary.json").read_text())["actors"]
    assert actors["count"] == 4 and actors["cpus_per_actor"] == 1.0
    assert (actors["stage_servers"]["count"], actors["stage_servers"]["nodes"]) == (2, 2)
    b = actors["batching"]
    assert b["stage_calls_same_node"] > 0 and b["stage_calls_other_node"] == 0
    assert_same(reference, tmp_path)


def test_nodes_without_a_gpu_beside_a_gpu_node_take_a_share_of_the_work(inputs, reference, tmp_path):
    """A head of 1 CPU and one GPU (Ray's resource: its actor runs on the CPU here) and a worker
    node of 2 CPUs and no GPU: one GPU actor on the head, and a one-CPU actor per CPU of the
    second node, which carry part of the tasks (handed out one at a time to the least loaded:
    the GPU actor's 17 places no longer fill before the others get one); the outputs are a
    clean run's. With --gpu-only the second node is left idle, as before."""
    c = cluster([1, 2], node_gpus=[1, 0])
    try:
        code, text = annotate(c.env, inputs, tmp_path / "mixed", "--address", c.address)
        assert code == 0, text
        code, text = annotate(c.env, inputs, tmp_path / "gpu_only", "--address", c.address, "--gpu-only")
        assert code == 0, text
    finally:
        stop(c)
    actors = json.loads((tmp_path / "mixed" / "_summary.json").read_text())["actors"]
    assert (actors["count"], actors["gpus_per_actor"], actors["streams"]) == (1, 1.0, 16), actors
    beside = actors["beside_gpus"]
    assert (beside["count"], beside["nodes"], beside["cpus_per_actor"]) == (2, 1, 1.0), actors
    assert 2 <= beside["tasks"] < 6, actors          # 6 tasks: the clip's 4 segments and two short clips
    assert beside["device"].startswith("cpu (")
    videos = json.loads((tmp_path / "mixed" / "_summary.json").read_text())["videos"]
    assert all(v["device"].startswith("cpu (") for v in videos.values()), videos   # str: one kind (here)
    assert_same(reference, tmp_path / "mixed")
    actors = json.loads((tmp_path / "gpu_only" / "_summary.json").read_text())["actors"]
    assert actors["count"] == 1 and "beside_gpus" not in actors, actors
    assert_same(reference, tmp_path / "gpu_only")


@pytest.mark.parametrize("servers", [False, True], ids=["actors", "stage_servers"])
def test_a_node_lost_midway_costs_the_job_only_its_share(inputs, reference, tmp_path, servers):
    """Two nodes, an actor on each (and with --stage-server a server on each, one GPU a node);
    every process of the second node is killed while its actor holds a task, as when a spot
    instance is taken back. Its tasks are redone on the first node, not as suspects (the driver
    says the node was lost), and the outputs are a clean run's. The replacement actor finds no place; the driver no longer waits for it (it waited
    300 s), nor 30 s for the lost server's counters at the end."""
    c = cluster([2, 2], node_gpus=[1, 1]) if servers else cluster([1, 1])
    p = None
    try:
        p = annotate(c.env, inputs, tmp_path, "--address", c.address, *(["--stage-server"] if servers else []),
                     wait=False)
        deadline = time.monotonic() + 300
        while not any(q.cmdline.startswith("ray::AnnotateWorker.__call__")
                      for q in session_processes([c.sessions[1]], c.token)):
            assert p.poll() is None and time.monotonic() < deadline, "no task started on the second node"
            time.sleep(0.05)
        stop_sessions([c.sessions[1]], c.token)
        text, _ = p.communicate(timeout=200)
    finally:
        if p is not None:
            stop_sessions([p.pid], c.token)
        stop(c)
    assert p.returncode == 0, text
    assert "did not start within" not in text, text
    actors = json.loads((tmp_path / "_summary.json").read_text())["actors"]
    assert actors["count"] == 2 and actors["replaced"] == 1, actors
    assert actors.get("lost_contact", 0) >= 1 and "annotate: lost " in text, text   # not as suspects
    if servers:
        assert (actors["stage_servers"]["count"], actors["stage_servers"]["gone"]) == (2, 1), actors
    assert_same(reference, tmp_path)


def test_a_cluster_started_before_the_tests_is_still_up(bystander):
    """Last in this file: the clusters and drivers above were started and stopped while the
    bystander ran. Run alone, it starts and stops one itself first."""
    c, procs = bystander
    if not STOPPED_CLUSTERS:
        stop(cluster([1]))
    left = [p for sessions, token in STARTED for p in session_processes(sessions, token)]
    assert not left, f"still running, started by these tests: {left}"
    assert [p for p in procs if not p.alive()] == []
    r = subprocess.run([RAY, "status", "--address", c.address], env=c.env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "Active:" in r.stdout, r.stdout + r.stderr
