"""`facetracks bench` end to end on a tiny real clip: the table's JSON is complete and coherent
(no timing is asserted: only that every path ran over every frame and every stage was timed)."""
import json
import os
import shutil
import sys
import time

import numpy as np
import pytest

from facetracks.jobs.bench import parse_counts
from facetracks.jobs.bench_job import GpuSampler
from facetracks.jobs.bench_paths import dlib_missing
from facetracks.jobs.clips import loop_video, write_video
from facetracks.jobs.cli import main
from facetracks.pipeline.video import iter_frames

from .clips import moving_clip, pick_faces


@pytest.fixture(scope="module")
def clip(data_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "two_faces.mp4"
    return moving_clip(str(path), pick_faces(data_dir, 2), frames_each=6)


def check_dlib_row(res: dict, frames: int) -> None:
    """The dlib row: measured over `frames` frames, and each profile's fps over it, when dlib is
    installed (the `peers` extra); otherwise skipped with the reason, and no profile has `over_dlib`."""
    reason = dlib_missing()
    assert (res["machine"]["dlib"] is None) == (reason is not None)
    for row in res["videos"]:
        dl = row["dlib"]
        if reason is None:
            assert dl["frames"] == frames and dl["fps"] > 0 and dl["seconds"] > 0 and dl["upsample"] == 0, dl
            assert dl["faces"] > 0, dl                      # HOG finds the labelled faces on some frames
            for name, full in row["profiles"].items():
                assert full["over_dlib"] == pytest.approx(full["fps"] / dl["fps"]), name
        else:
            assert dl == {"skipped": reason} and "peers" in reason
            assert all("over_dlib" not in full for full in row["profiles"].values())


def test_table_covers_every_path_and_profile(clip, tmp_path, capsys):
    """Runs with the dlib row where dlib is installed, without it (skipped) where it is not (CI)."""
    out = tmp_path / "b.json"
    assert main(["bench", clip.path, "--json", str(out), "--naive-frames", "6", "--dlib-frames", "8",
                 "--no-memory", "--no-accuracy", "--repeat", "2"]) == 0
    res = json.loads(out.read_text())
    check_dlib_row(res, 8)
    (dlib_line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.split()[:1] == ["dlib"]]
    assert ("skipped:" in dlib_line) == (dlib_missing() is not None), dlib_line
    assert set(res["profiles"]) == {"accurate", "fast"}
    assert res["profiles"]["fast"]["model"].startswith("ft68-resnet-xs-hm@")
    (row,) = res["videos"]
    assert row["decode"]["frames"] == 12 and row["naive"]["frames"] == 6
    for path in [row["decode"], row["naive"], *row["profiles"].values()]:     # the fastest of 2 interleaved rounds
        assert len(path["fps_rounds"]) == 2 and path["fps"] == max(path["fps_rounds"]), path
    for name, full in row["profiles"].items():
        assert full["frames"] == 12 and full["faces"] >= 10, name
        stages = full["stage_s"]
        assert all(stages[k] > 0 for k in ("detect", "landmarks", "smooth", "parquet")), stages   # each one timed
        assert stages["decode+other"] >= 0, stages          # the remainder: no stage counted twice
        assert full["jitter"]["raw"] > 0 and full["jitter"]["smoothed"] > 0, full["jitter"]   # measured, not NaN


def test_dlib_row_skipped_when_dlib_is_absent(clip, tmp_path, monkeypatch, capsys):
    """`import dlib` failing (as without the `peers` extra, whether or not it is installed here):
    the row is null with the reason, printed as skipped, and the rest of the table is unchanged."""
    monkeypatch.setitem(sys.modules, "dlib", None)          # import dlib -> ImportError
    assert "dlib not importable" in dlib_missing()
    out = tmp_path / "b.json"
    assert main(["bench", clip.path, "--profiles", "fast", "--json", str(out), "--naive-frames", "2",
                 "--no-memory", "--no-accuracy", "--repeat", "1"]) == 0
    res = json.loads(out.read_text())
    check_dlib_row(res, 0)
    (row,) = res["videos"]
    assert row["naive"]["frames"] == 2 and row["profiles"]["fast"]["frames"] == 12
    assert set(row["profiles"]["fast"]) >= {"over_decode", "over_naive", "stage_share"}
    assert "dlib      skipped: dlib not importable" in capsys.readouterr().out


def test_scaling_runs_the_ray_job(clip, tmp_path):
    out = tmp_path / "s.json"
    assert main(["bench", clip.path, "--actors", "1", "--profiles", "fast", "--json", str(out)]) == 0
    (run,) = json.loads(out.read_text())["scaling"]["fast"]["runs"]
    assert run["actors"] == run["requested"] == 1 and run["frames"] == 12 and run["fps"] > 0


def test_scaling_on_a_corpus_of_real_clips(videos_dir, data_dir, tmp_path):
    """--corpus: K clips from different real clips, each S s at its source's rate; the run covers
    them all; the NME check runs beside; no nvidia-smi here, so the GPU figures are null."""
    out = tmp_path / "c.json"
    assert main(["bench", "--actors", "1", "--profiles", "fast", "--corpus", "2", "--corpus-seconds", "1",
                 "--clips-from", videos_dir, "--data", data_dir, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    files = res["corpus"]["files"]
    assert len(files) == 2 and len({f["source"] for f in files}) == 2, files
    assert all(f["frames"] == round(f["fps"]) for f in files), files      # 1 s at the source's rate
    assert "pyfeat_no_face.mp4" in res["corpus"]["sources_without_face"]
    (run,) = res["scaling"]["fast"]["runs"]
    assert run["frames"] == res["corpus"]["frames"] == sum(f["frames"] for f in files)
    assert run["fps"] > 0 and run["fps_per_gpu"] == run["fps"] and run["gpus_used"] == 1
    if shutil.which("nvidia-smi") is None:
        assert run["gpu_samples"] == 0
        assert run["gpu_util_mean"] is None and run["gpu_util_p90"] is None and run["gpu_mem_peak_mb"] is None
    # the actors' own CPU (model loaded to last frame) and the machine's, over the run
    assert 0.1 < run["actor_cpu_ms_per_frame"] < 10_000, run
    assert run["batching"]["process_cpu_s"] > 0
    if os.path.exists("/proc/stat"):
        assert 0 < run["cpu_util_mean"] <= 100, run
    acc = res["accuracy"]["fast"]
    assert acc["followed"]["frames"] == 120 and acc["followed"]["nme_mean"] < 0.1, acc


def test_gpu_sampler_reads_nvidia_smi(tmp_path, monkeypatch):
    """Utilisation and memory as nvidia-smi prints them (a stand-in here), averaged and peaked."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho '40, 1000'\necho '60, 3000'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with GpuSampler(every=0.05) as g:
        time.sleep(0.3)
    s = g.summary()
    assert s["gpu_samples"] >= 2 and s["gpu_util_mean"] == s["gpu_util_p90"] == 50.0 and s["gpu_mem_peak_mb"] == 4000.0


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the machine's CPU use is read from Linux's /proc/stat")
def test_gpu_sampler_reads_the_machines_cpu_use():
    """A block that keeps one core busy uses some of the machine's CPU; one that sleeps, little."""
    with GpuSampler(every=0.05) as busy:
        t = time.perf_counter()
        while time.perf_counter() - t < 0.5:
            pass
    with GpuSampler(every=0.05) as idle:
        time.sleep(0.5)
    cores = os.cpu_count() or 1
    assert busy.summary()["cpu_util_mean"] >= 0.5 * 100 / cores, busy.summary()
    assert idle.summary()["cpu_util_mean"] < busy.summary()["cpu_util_mean"]


def test_counts_with_gpu_shares():
    assert parse_counts("1,4") == [(1, None), (4, None)]
    assert parse_counts("1:1, 4:0.25") == [(1, 1.0), (4, 0.25)]
    with pytest.raises(ValueError):
        parse_counts("0")


def test_loop_video_copies_packets_to_length(tmp_path):
    src, dst = str(tmp_path / "once.mp4"), str(tmp_path / "looped.mp4")
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(10)]
    write_video(src, frames, fps=30, bframes=False, preset="ultrafast", gop=4)
    assert loop_video(src, dst, 25) == 25
    got = list(iter_frames(dst))
    assert len(got) == 25 and all(b.time_s > a.time_s for a, b in zip(got, got[1:]))
    assert [int(f.gray.mean() + 10) // 20 for f in got] == [i % 10 for i in range(25)]   # the source, again and again
