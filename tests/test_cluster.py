"""The annotate job on real Ray: a two-node loopback cluster, a killed actor, a killed driver.

Each run is a separate `facetracks annotate` process, as a user would start it. Outputs are
compared with a reference run of the same parameters: rows, times and track ids must be equal.
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP = "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"      # 200 frames, a keyframe every 0.48 s
ARGS = ["--segment-seconds", "2"]                           # 4 segments


def annotate(inp, out, *extra, env=None, wait=True):
    cmd = [sys.executable, "-m", "jobs.cli", "annotate", str(inp), "--out", str(out), *ARGS, *extra]
    p = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if wait:
        out_text, _ = p.communicate(timeout=600)
        return p.returncode, out_text
    return p


def tables(out):
    return {os.path.relpath(os.path.join(d, f), out): pd.read_parquet(os.path.join(d, f))
            for d, _, files in os.walk(out) for f in files if f.endswith(".parquet")}


def assert_same(a, b):
    ta, tb = tables(a), tables(b)
    assert sorted(ta) == sorted(tb) and ta
    for k in ta:
        pd.testing.assert_frame_equal(ta[k], tb[k])
        assert ta[k].frame_index.is_monotonic_increasing


@pytest.fixture(scope="module", autouse=True)
def no_ray_in_this_process():
    """`ray stop` below ends every Ray process on the machine: an in-process Ray left by an
    earlier test would take pytest down with it, so shut it first."""
    import ray
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def inputs(videos_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster_in")
    shutil.copy(os.path.join(videos_dir, CLIP), d / CLIP)
    shutil.copy(os.path.join(videos_dir, "pyfeat_single_face.mp4"), d / "single.mp4")
    shutil.copy(os.path.join(videos_dir, "pyfeat_single_face.mp4"), d / "single_copy.mp4")
    return d


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    code, text = annotate(inputs, out, "--actors", "1")
    assert code == 0, text
    return out


def test_two_node_loopback_cluster_gives_the_same_output(inputs, reference, tmp_path):
    env = {"RAY_AUTH_MODE": "token"}
    ray = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    head = [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", "26379", "--num-cpus", "1",
            "--include-dashboard", "false", "--disable-usage-stats"]
    worker = [ray, "start", "--address", "127.0.0.1:26379", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
              "--resources", '{"second_node": 1}', "--disable-usage-stats"]
    full_env = {**os.environ, **env}
    try:
        subprocess.run(head, env=full_env, check=True, capture_output=True, timeout=180)
        subprocess.run(worker, env=full_env, check=True, capture_output=True, timeout=180)
        code, text = annotate(inputs, tmp_path, "--address", "127.0.0.1:26379", "--actors", "2",
                              "--cpus-per-actor", "1", env=env)
        assert code == 0, text
        summary = json.loads((tmp_path / "_summary.json").read_text())
        assert summary["actors"]["count"] == 2
        assert summary["videos"][CLIP]["segments"] == 4
    finally:
        subprocess.run([ray, "stop", "--force"], env=full_env, capture_output=True, timeout=120)
    assert_same(reference, tmp_path)


def test_ray_job_submit_runs_the_job_on_the_cluster(inputs, reference, tmp_path):
    """`ray job submit -- facetracks annotate ...`: the driver runs on the head, joins its cluster
    (RAY_ADDRESS, set by the job server) and writes what an in-process run writes."""
    pytest.importorskip("ray.dashboard.modules.job.sdk", reason="ray job submit needs ray[default]")
    bin_dir = os.path.dirname(sys.executable)
    ray = os.path.join(bin_dir, "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("RAY_ADDRESS", None)
    head = [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", "26379", "--num-cpus", "2",
            "--include-dashboard", "true", "--dashboard-port", "28265", "--disable-usage-stats"]
    submit = [ray, "job", "submit", "--address", "http://127.0.0.1:28265", "--",
              os.path.join(bin_dir, "facetracks"), "annotate", str(inputs), "--out", str(tmp_path), *ARGS, "--actors", "1"]
    try:
        subprocess.run(head, env=env, check=True, capture_output=True, timeout=180)
        r = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=120)
    assert r.returncode == 0 and "succeeded" in r.stdout + r.stderr, r.stdout + r.stderr
    summary = json.loads((tmp_path / "_summary.json").read_text())
    assert summary["ray"]["gcs_address"].endswith(":26379")
    assert_same(reference, tmp_path)


def _worker_pids():
    r = subprocess.run(["pgrep", "-f", "ray::AnnotateWorker"], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


def test_killed_actor_is_replaced_and_its_work_redone(inputs, reference, tmp_path):
    p = annotate(inputs, tmp_path, "--actors", "1", wait=False)
    try:
        deadline = time.time() + 120
        while not _worker_pids() and time.time() < deadline:
            time.sleep(0.2)
        pids = _worker_pids()
        assert pids, "no actor process appeared"
        time.sleep(3)                          # model loaded, a segment under way
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        text, _ = p.communicate(timeout=600)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 0, text
    assert_same(reference, tmp_path)


def test_killed_driver_resumes_to_the_same_outputs(inputs, reference, tmp_path):
    p = annotate(inputs, tmp_path, "--actors", "1", wait=False)
    summary = tmp_path / "_summary.json"
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if summary.exists() and any(v["status"] == "ok" for v in json.loads(summary.read_text())["videos"].values()):
                break
            time.sleep(0.2)
        else:
            pytest.fail("no video finished")
    finally:
        os.killpg(p.pid, signal.SIGKILL)       # the driver and the Ray it started, no clean-up
        p.wait()
    done_before = {k for k, v in json.loads(summary.read_text())["videos"].items() if v["status"] == "ok"}
    assert 0 < len(done_before) < 3
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    code, text = annotate(inputs, tmp_path, "--actors", "1")
    assert code == 0, text
    after = json.loads(summary.read_text())["videos"]
    assert {k for k, v in after.items() if v["status"] == "skipped"} == done_before
    assert_same(reference, tmp_path)
