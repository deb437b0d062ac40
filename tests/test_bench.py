"""`facetracks bench` end to end on a tiny real clip: the table's JSON is complete and coherent
(no timing is asserted: only that every path ran over every frame and every stage was timed)."""
import json

import pytest

from facetracks.jobs.cli import main

from .clips import moving_clip, pick_faces


@pytest.fixture(scope="module")
def clip(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "two_faces.mp4"
    return moving_clip(str(path), pick_faces(data_dir, 2), frames_each=6)


def test_table_covers_every_path_and_profile(clip, tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", clip.path, "--json", str(out), "--naive-frames", "6", "--no-memory", "--no-accuracy"]) == 0
    res = json.loads(out.read_text())
    assert set(res["profiles"]) == {"accurate", "fast"}
    assert res["profiles"]["fast"]["model"].startswith("ft68-resnet-xs@")
    (row,) = res["videos"]
    assert row["decode"]["frames"] == 12 and row["naive"]["frames"] == 6
    for name, full in row["profiles"].items():
        assert full["frames"] == 12 and full["faces"] >= 10, name
        stages = full["stage_s"]
        assert all(stages[k] > 0 for k in ("detect", "landmarks", "smooth", "parquet")), stages   # each one timed
        assert stages["decode+other"] >= 0, stages          # the remainder: no stage counted twice
        assert full["jitter"]["raw"] > 0 and full["jitter"]["smoothed"] > 0, full["jitter"]   # measured, not NaN


def test_scaling_runs_the_ray_job(clip, tmp_path):
    out = tmp_path / "s.json"
    assert main(["bench", clip.path, "--actors", "1", "--profiles", "fast", "--json", str(out)]) == 0
    (run,) = json.loads(out.read_text())["scaling"]["fast"]["runs"]
    assert run["actors"] == run["requested"] == 1 and run["frames"] == 12 and run["fps"] > 0
