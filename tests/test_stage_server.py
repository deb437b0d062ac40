"""The GPU stages in a process of their own (`annotate --stage-server`, jobs/stage_server.py), run
here with the server on the CPU: CPU actors that decode, follow and cut crops, one server that
runs the network (and the cascade, when asked). The rows must be the plain job's: the server
only moves where the same arithmetic runs."""
import json
import os

import numpy as np
import pandas as pd

from facetracks.jobs.cli import main
from facetracks.pipeline.schema import POINT_COLUMNS

from .clips import moving_clip, pick_faces


def _run(src, out, *extra: str) -> dict:
    assert main(["annotate", str(src), "--out", str(out), "--progress", "never", *extra]) == 1   # notes.mp4 fails
    with open(out / "_summary.json") as f:
        return json.load(f)


def _same_rows(a_dir, b_dir, name: str) -> int:
    a = pd.read_parquet(a_dir / (name + ".parquet"))
    b = pd.read_parquet(b_dir / (name + ".parquet"))
    assert len(a) == len(b) and len(a) > 0
    assert (a["frame_index"].values == b["frame_index"].values).all()
    assert (a["track_id"].values == b["track_id"].values).all()
    # the same arithmetic on the same crops; batches may be composed otherwise: float noise at most
    assert np.nanmax(np.abs(a[list(POINT_COLUMNS)].values - b[list(POINT_COLUMNS)].values)) < 1e-3
    return len(a)


def _inputs(data_dir, src) -> None:
    os.makedirs(src, exist_ok=True)
    moving_clip(str(src / "moving.mp4"), pick_faces(data_dir, 2))
    (src / "notes.mp4").write_text("not a video\n")


def test_stage_server_writes_the_plain_jobs_rows(data_dir, tmp_path):
    src = tmp_path / "in"
    _inputs(data_dir, src)
    plain = _run(src, tmp_path / "a", "--profile", "fast")
    served = _run(src, tmp_path / "b", "--profile", "fast", "--stage-server", "--actors", "2", "--cpus-per-actor", "0.5")
    rows = _same_rows(tmp_path / "a", tmp_path / "b", "moving.mp4")
    srv = served["actors"]["stage_servers"]
    assert served["actors"]["count"] == 2 and served["actors"]["gpus_per_actor"] == 0 and srv["count"] == 1
    # OpenCV here has the cascade: the CPU actors detect, the server only runs the network
    assert srv["detect"] is False and srv["calls"]["detect"] == 0
    assert srv["calls"]["forward"] > 0 and srv["calls"]["landmark_crops"] >= rows
    assert 0 < srv["calls"]["landmark_calls"] <= 2 * srv["calls"]["forward"]     # passes: at most one per mirror flag a call
    assert "stage server" in served["actors"]["device"]
    # one node: every call answered by a server on the actor's own node, none restarted or given up
    b = served["actors"]["batching"]
    assert b["stage_calls_same_node"] >= srv["calls"]["forward"] and b["stage_calls_other_node"] == 0
    assert srv["nodes"] == 1 and srv["restarted"] == 0 and srv["gone"] == 0 and b["stage_servers_left"] == 0
    bad = served["videos"]["notes.mp4"]
    assert bad["status"] == "failed" and "notes.mp4" in bad["error"] and plain["videos"]["notes.mp4"]["status"] == "failed"


def test_stage_server_detects_when_the_torch_cascade_is_asked_for(data_dir, tmp_path):
    src = tmp_path / "in"
    _inputs(data_dir, src)
    _run(src, tmp_path / "a", "--profile", "accurate", "--detector", "torch")
    served = _run(src, tmp_path / "b", "--profile", "accurate", "--detector", "torch", "--stage-server")
    _same_rows(tmp_path / "a", tmp_path / "b", "moving.mp4")
    calls = served["actors"]["stage_servers"]["calls"]
    assert served["actors"]["stage_servers"]["detect"] is True
    assert calls["detect"] > 0 and calls["detect_frames"] >= calls["detect"] and calls["forward"] > 0
