"""The real `facetracks annotate` job, Ray started in-process: good files finish, bad ones are named."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from facetracks.jobs.cli import main
from facetracks.pipeline.parquet import read_meta
from facetracks.pipeline.schema import POINT_COLUMNS, SCHEMA, SCHEMA_VERSION

from .clips import audio_only, moving_clip, pick_faces, truncated_copy, vfr_clip
from .compare import assert_tracks_match

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def job(data_dir, videos_dir, tmp_path_factory):
    src = tmp_path_factory.mktemp("in")
    faces = pick_faces(data_dir, 3)
    moving_clip(str(src / "moving.mp4"), faces[:2])
    os.makedirs(src / "sub")
    vfr_clip(str(src / "sub" / "vfr.mp4"), faces[2])
    (src / "empty.mp4").write_bytes(b"")
    (src / "notes.mp4").write_text("this is not a video\n")
    audio_only(str(src / "audio_only.mp4"))
    # index at the front: decodes part way, then runs out; index at the back: unreadable
    truncated_copy(os.path.join(videos_dir, "pyfeat_WolfgangLanger_Pexels.mp4"), str(src / "truncated.mp4"))
    truncated_copy(os.path.join(videos_dir, "pyfeat_single_face.mp4"), str(src / "headless.mp4"))
    out = tmp_path_factory.mktemp("out")
    code = main(["annotate", str(src), "--out", str(out), "--render", "landmarks"])
    return src, out, code


def test_bad_inputs_are_reported_and_good_files_finish(job):
    src, out, code = job
    assert code == 1
    summary = json.loads((out / "_summary.json").read_text())["videos"]
    assert summary["moving.mp4"]["status"] == "ok" and summary["sub/vfr.mp4"]["status"] == "ok"
    assert summary["moving.mp4"]["device"].startswith("cpu (")      # the kind of actor that read it
    expect = {"empty.mp4": "empty file", "notes.mp4": "not a readable video",
              "audio_only.mp4": "no video stream", "truncated.mp4": "truncated or corrupt",
              "headless.mp4": "not a readable video"}
    for name, cause in expect.items():
        assert summary[name]["status"] == "failed"
        assert cause in summary[name]["error"] and name in summary[name]["error"]
        assert not (out / (name + ".parquet")).exists()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    assert (out / "moving.mp4.landmarks.mp4").exists() and (out / "sub" / "vfr.mp4.landmarks.mp4").exists()
    assert not (out / "empty.mp4.landmarks.mp4").exists()


def test_output_mirrors_tree_with_schema_and_metadata(job):
    src, out, _ = job
    path = out / "sub" / "vfr.mp4.parquet"
    t = pq.read_table(path)
    assert t.schema.remove_metadata().equals(SCHEMA)
    assert all(c in t.column_names for c in POINT_COLUMNS)
    meta = read_meta(str(path))
    assert meta["schema_version"] == SCHEMA_VERSION == 2 and meta["model"].startswith("ft68-resnet-slim-hm@")
    src_meta = meta["source"]
    assert src_meta["width"] == 320 and src_meta["height"] == 240 and src_meta["rotation"] == 0
    assert src_meta["codec"] == "h264" and meta["frame_count"] == 8 == t.num_rows
    assert meta["params"]["follow"]["detect_every"] >= 1
    df = t.to_pandas()
    assert df.video.unique().tolist() == ["sub/vfr.mp4"]
    np.testing.assert_allclose(df.time_s, [0, 0.04, 0.12, 0.133, 0.2, 0.4, 0.433, 1.0], atol=1e-6)


def test_rerun_skips_current_outputs_and_overwrite_redoes_them(job, tmp_path, capsys):
    src, out, _ = job
    before = os.path.getmtime(out / "moving.mp4.parquet")
    assert main(["annotate", str(src / "moving.mp4"), "--out", str(out), "--render", "landmarks"]) == 0
    summary = json.loads((out / "_summary.json").read_text())["videos"]
    assert summary["moving.mp4"]["status"] == "skipped"
    assert os.path.getmtime(out / "moving.mp4.parquet") == before
    copy = tmp_path / "out"            # the job's output stays the default run's, for the tests after this one
    shutil.copytree(out, copy)
    assert main(["annotate", str(src / "moving.mp4"), "--out", str(copy), "--detect-every", "4"]) == 0
    assert os.path.getmtime(copy / "moving.mp4.parquet") > before       # new parameters: not current
    # the tracks current, the render asked for anew (another filter): only the render is redone,
    # and the entry keeps what the run that wrote the tracks said of them
    assert main(["annotate", str(src / "moving.mp4"), "--out", str(copy), "--render", "landmarks"]) == 0
    first = json.loads((copy / "_summary.json").read_text())["videos"]["moving.mp4"]
    assert main(["annotate", str(src / "moving.mp4"), "--out", str(copy), "--render", "sunglasses"]) == 0
    entry = json.loads((copy / "_summary.json").read_text())["videos"]["moving.mp4"]
    assert entry.get("reason") == "tracks are current; render redone" and entry["render"]["status"] == "ok", entry
    assert {k: entry[k] for k in ("frames", "faces", "device", "written_by")} == \
        {k: first[k] for k in ("frames", "faces", "device", "written_by")}
    # back to the first filter, whose render is current: the entry names that render, not the last
    # run's (it named the sunglasses file), and the line says it was current, not rendered
    assert main(["annotate", str(src / "moving.mp4"), "--out", str(copy), "--render", "landmarks"]) == 0
    entry = json.loads((copy / "_summary.json").read_text())["videos"]["moving.mp4"]
    assert entry["reason"] == "output is current"
    assert entry["render"] == {"status": "ok", "output": str(copy / "moving.mp4.landmarks.mp4")}
    assert f"  current: {copy / 'moving.mp4.landmarks.mp4'}" in capsys.readouterr().out
    # with --render or without, or split another way, the tracks are the same tracks: current
    # (with --render videos are read whole, and that annotated every video again, both ways)
    written = os.path.getmtime(copy / "moving.mp4.parquet")
    for more in ([], ["--segment-seconds", "1"], ["--render", "landmarks"]):
        assert main(["annotate", str(src / "moving.mp4"), "--out", str(copy), *more]) == 0
        assert json.loads((copy / "_summary.json").read_text())["videos"]["moving.mp4"]["status"] == "skipped"
    assert os.path.getmtime(copy / "moving.mp4.parquet") == written


def test_real_clips_pass_the_independent_check(videos_dir, tmp_path):
    vids = tmp_path / "v"
    vids.mkdir()
    for name in ("pyfeat_single_face.mp4", "pyfeat_no_face.mp4", "pyfeat_face_noface.mov"):
        shutil.copy(os.path.join(videos_dir, name), vids / name)
    out = tmp_path / "out"
    assert main(["annotate", str(vids), "--out", str(out)]) == 0
    check = os.path.join(os.path.dirname(videos_dir), "tools", "check_tracks.py")
    r = subprocess.run([sys.executable, check, str(vids), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [json.loads(l) for l in r.stdout.splitlines()]
    by = {x["video"]: x for x in rows if "video" in x}
    assert by["pyfeat_no_face.mp4"]["frames"] == 95 and by["pyfeat_no_face.mp4"]["frames_with_face"] <= 3
    assert by["pyfeat_single_face.mp4"]["frames_with_face"] >= 0.9 * by["pyfeat_single_face.mp4"]["frames"]
    assert by["pyfeat_single_face.mp4"]["tracks"] <= 2


def test_names_cannot_escape_the_output_folder(tmp_path):
    from facetracks.jobs.inputs import VideoItem, expand_inputs
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.mp4").write_bytes(b"")
    items = expand_inputs([str(tmp_path / "a" / ".." / "a")])
    assert [i.name for i in items] == ["x.mp4"]
    assert os.path.abspath(VideoItem("/v", "../../etc/x").output(str(tmp_path))).startswith(str(tmp_path))


def test_renders_made_before_the_run_key_change_stay_current(job, tmp_path):
    """A render's key hashes its tracks' run key, which held `segment_seconds: 0` before
    2026-11-28: such a render (its key rewritten here as that run wrote it) is current, not
    encoded again."""
    import av
    from facetracks.pipeline.parquet import read_meta
    from facetracks.pipeline.render import RENDER_TAG, read_render_key, render_key
    src, out, _ = job
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    video = copy / "moving.mp4.landmarks.mp4"
    key = read_meta(str(copy / "moving.mp4.parquet"))["run_key"]
    legacy = render_key({**key, "params": {**key["params"], "segment_seconds": 0}}, "landmarks", None, "eyes", 20,
                        "medium")
    assert read_render_key(str(video)) == render_key(key, "landmarks", None, "eyes", 20, "medium") != legacy
    with av.open(str(video)) as a, av.open(str(tmp_path / "old.mp4"), "w") as b:      # the same file, the old key
        b.metadata["comment"] = RENDER_TAG + legacy
        streams = {s: b.add_stream_from_template(s) for s in a.streams}
        for p in a.demux():
            if p.dts is not None:
                p.stream = streams[p.stream]
                b.mux(p)
    os.replace(tmp_path / "old.mp4", video)
    written = os.path.getmtime(video)
    assert main(["annotate", str(src / "moving.mp4"), "--out", str(copy), "--render", "landmarks"]) == 0
    entry = json.loads((copy / "_summary.json").read_text())["videos"]["moving.mp4"]
    assert entry["status"] == "skipped" and os.path.getmtime(video) == written, entry


def test_a_path_that_exists_is_a_name_not_a_glob_and_a_backslash_is_a_character(tmp_path):
    """yt-dlp names clips `Title [id].mp4`: as a glob that matched `Title i.mp4`, or nothing. A
    backslash (a Windows archive unpacked here) made `back\\slash.mp4` the output of `back/slash.mp4`."""
    from facetracks.jobs.inputs import expand_inputs
    for rel in ("Talk [ab].mp4", "Talk a.mp4", "Downloads [2024]/x.mp4", "back\\slash.mp4", "back/slash.mp4"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [i.name for i in expand_inputs([str(tmp_path / "Talk [ab].mp4")])] == ["Talk [ab].mp4"]
    assert [i.name for i in expand_inputs([str(tmp_path / "Downloads [2024]")])] == ["x.mp4"]
    assert [i.name for i in expand_inputs([str(tmp_path / "Talk [a].mp4")])] == ["Talk a.mp4"]    # a glob still globs
    assert [i.name for i in expand_inputs([str(tmp_path / "Downloads [2024]" / "*.mp4")])] == ["x.mp4"]
    items = expand_inputs([str(tmp_path / "back\\slash.mp4"), str(tmp_path / "back")])
    assert [(i.name, i.output("/o")) for i in items] == [("back\\slash.mp4", "/o/back\\slash.mp4.parquet"),
                                                         ("slash.mp4", "/o/slash.mp4.parquet")]


def test_linked_folders_are_followed_and_each_real_folder_read_once(tmp_path):
    """A folder assembled from links to other folders gave no input at all (os.walk does not
    follow them). Links back to the folder itself or above it must not loop or reach outside it,
    a second link to one folder adds nothing, and a link to a folder of the tree leaves its files
    the names their real place gives them, whichever sorts first."""
    from facetracks.jobs.inputs import expand_inputs
    (tmp_path / "sessions" / "s1").mkdir(parents=True)
    (tmp_path / "sessions" / "s1" / "a.mp4").write_bytes(b"")
    (tmp_path / "outside.mp4").write_bytes(b"")
    (tmp_path / "in" / "real").mkdir(parents=True)
    (tmp_path / "in" / "b.mp4").write_bytes(b"")
    (tmp_path / "in" / "real" / "r.mp4").write_bytes(b"")
    os.symlink(tmp_path / "sessions" / "s1", tmp_path / "in" / "day1")
    os.symlink(tmp_path / "sessions" / "s1", tmp_path / "in" / "day1_again")
    os.symlink("real", tmp_path / "in" / "alias")
    os.symlink("..", tmp_path / "in" / "up")
    os.symlink(".", tmp_path / "in" / "self")
    os.symlink("/", tmp_path / "in" / "zroot")
    names = [i.name for i in expand_inputs([str(tmp_path / "in")])]
    assert names == ["b.mp4", "day1/a.mp4", "real/r.mp4"]


def test_what_render_and_report_wrote_is_never_an_input(tmp_path):
    """--out inside the input folder, or the input folder itself: the renders and the report's
    pictures of a first run are not a second run's photos (they were: 11 report PNGs annotated,
    then pictured by the next report); a photo of the user's own in a folder named report is."""
    from facetracks.jobs.inputs import expand_inputs
    shoot = tmp_path / "shoot"
    for rel in ("a.mp4", "photos/p.png", "tracks/a.mp4.sunglasses.mp4", "tracks/report/v000/frame_0.png",
                "tracks/report.0badf00d.tmp/v000/crop.png", "tracks/photos/p.png.sunglasses.png", "report/mine.png",
                "tracks/report/notes/own.mp4"):
        (shoot / rel).parent.mkdir(parents=True, exist_ok=True)
        (shoot / rel).write_bytes(b"")
    names = sorted(i.name for i in expand_inputs([str(shoot)], exclude_outputs_of=str(shoot / "tracks")))
    assert names == ["a.mp4", "photos/p.png", "report/mine.png", "tracks/report/notes/own.mp4"]
    as_uri = sorted(i.name for i in expand_inputs([str(shoot)], exclude_outputs_of=(shoot / "tracks").as_uri()))
    assert as_uri == names                                         # --out file:///…: the same folder
    names = sorted(i.name for i in expand_inputs([str(shoot)], exclude_outputs_of=str(shoot)))
    assert names == ["a.mp4", "photos/p.png", "tracks/report.0badf00d.tmp/v000/crop.png",    # the report is
                     "tracks/report/notes/own.mp4", "tracks/report/v000/frame_0.png"]        # shoot/report now


def test_a_name_is_fitted_to_one_file_name_only_when_it_must_be():
    from facetracks.jobs.inputs import NAME_MAX, fit_name
    short = "talk.mp4"
    assert fit_name(short, ".parquet") == short
    edge = "x" * (NAME_MAX - 13 - len(".parquet") - 4) + ".mp4"          # fits with `.parquet` and a temp ending
    assert fit_name(edge, ".parquet") == edge
    long = "é" * 100 + "x.mp4"                                          # 205 bytes: fits alone, not with a render's suffix
    assert fit_name(long) == long
    fitted = fit_name(long, ".overlay-" + "o" * 40 + ".mp4")
    assert fitted.endswith(".mp4") and "~" in fitted and fitted.startswith("é" * 75)   # 150 bytes, whole characters
    assert len((fitted + ".overlay-" + "o" * 40 + ".mp4").encode()) <= NAME_MAX - 13
    assert fit_name("é" * 100 + "y.mp4", ".overlay-" + "o" * 40 + ".mp4") != fitted    # the same start, apart
    assert len(fit_name("z" * 300 + "." + "e" * 40, ".parquet").encode()) <= NAME_MAX - 13 - 8   # no 40-byte extension kept


def test_a_stale_ray_cluster_file_does_not_capture_a_local_run(data_dir, tmp_path):
    """A killed `ray start` leaves its address in $RAY_TMPDIR/ray/ray_current_cluster; a local run
    must start its own Ray, not hang on that dead address (seen in CI)."""
    src = tmp_path / "in"
    src.mkdir()
    moving_clip(str(src / "one.mp4"), pick_faces(data_dir, 1), frames_each=3)
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")      # short: Ray's socket paths must fit
    try:
        os.makedirs(os.path.join(ray_tmp, "ray"))
        with open(os.path.join(ray_tmp, "ray", "ray_current_cluster"), "w") as f:
            f.write("127.0.0.1:9\n")
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
        env["RAY_TMPDIR"] = ray_tmp
        r = subprocess.run([sys.executable, "-m", "facetracks.jobs.cli", "annotate", str(src), "--out", str(tmp_path / "out")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Token authentication" not in r.stderr       # Ray's notice of its own default, not ours to print
    assert pq.read_table(tmp_path / "out" / "one.mp4.parquet").num_rows == 3


HELD = """
import json, sys, ray
from facetracks.jobs.cli import main
from facetracks.jobs.ray_runner import _room
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)

@ray.remote(num_cpus=1)
class Other:                 # another job's actor, holding one of the two CPUs for as long as it lives
    def ping(self):
        return 1

other = Other.remote()
ray.get(other.ping.remote())
print("ROOM", _room(1.0, 0.0))
code = main(["annotate", sys.argv[1], "--out", sys.argv[2], "--actors", "2", "--cpus-per-actor", "1"])
print("CODE", code)
"""


def test_an_actor_that_finds_no_place_leaves_its_work_to_the_others(data_dir, tmp_path):
    """Another job holds one of two CPUs: of two actors one starts, one never does. Its tasks
    waited for it for ever (the run hung, the started actor idle); now the started one does them."""
    src = tmp_path / "in"
    src.mkdir()
    faces = pick_faces(data_dir, 3)
    for k in range(3):
        moving_clip(str(src / f"v{k}.mp4"), faces[k:k + 1], frames_each=3)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", HELD, str(src), str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=240)
    assert "CODE 0" in r.stdout, r.stdout + r.stderr
    assert "ROOM an actor needs 1 CPU; 1 of the cluster's 2 CPUs are free" in r.stdout
    summary = json.loads((out / "_summary.json").read_text())
    assert [e["status"] for e in summary["videos"].values()] == ["ok"] * 3
    assert summary["actors"]["count"] == 2 and summary["actors"]["never_started"] == 1


def test_outputs_can_go_to_a_filesystem_uri(data_dir, tmp_path):
    """--out as a URI goes through pyarrow's filesystems (s3://, gs://, file://): tracks, summary and
    rendered video land there complete, and a rerun sees them as current."""
    src = tmp_path / "in"
    src.mkdir()
    moving_clip(str(src / "one.mp4"), pick_faces(data_dir, 1), frames_each=3)
    dest = tmp_path / "remote" / "tracks"
    uri = dest.as_uri()
    assert uri.startswith("file://")
    args = ["annotate", str(src), "--out", uri, "--render", "landmarks", "--profile", "fast"]
    assert main(args) == 0
    assert sorted(os.listdir(dest)) == ["_summary.json", "one.mp4.landmarks.mp4", "one.mp4.parquet"]
    assert pq.read_table(dest / "one.mp4.parquet").num_rows == 3
    assert read_meta(str(dest / "one.mp4.parquet"))["model"].startswith("ft68-resnet-xs-hm@")
    assert main(args) == 0
    assert json.loads((dest / "_summary.json").read_text())["videos"]["one.mp4"]["status"] == "skipped"
    # report and export take the run where annotate wrote it (they refused a file:// URI); a bucket
    # is one line, never asked (a region lookup's traceback)
    assert main(["report", uri]) == 0 and (dest / "report.html").exists()
    assert main(["export", uri]) == 0 and (dest / "openface" / "one.mp4.csv").exists()
    for cmd in ("report", "export"):
        assert main([cmd, "s3://no-such-bucket-here/run"]) == 2


def test_bad_weights_are_refused_before_any_actor_starts(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.mp4").write_bytes(b"\0" * 10)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    for weights, cause in ((tmp_path / "nope.pt", "no such weights file"), (tmp_path / "junk.pt", "not a readable")):
        assert main(["annotate", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--weights", str(weights)]) == 2
        err = capsys.readouterr().err
        assert str(weights) in err and cause in err
    assert not (tmp_path / "out").exists()


def test_smoothing_is_on_by_default_and_none_gives_the_points_as_predicted(job, tmp_path):
    src, out, _ = job
    raw = tmp_path / "raw"
    assert main(["annotate", str(src / "moving.mp4"), "--out", str(raw), "--smooth", "none"]) == 0
    a, b = pd.read_parquet(out / "moving.mp4.parquet"), pd.read_parquet(raw / "moving.mp4.parquet")
    assert (a.frame_index.tolist(), a.track_id.tolist()) == (b.frame_index.tolist(), b.track_id.tolist())
    diff = np.abs(a[POINT_COLUMNS].to_numpy() - b[POINT_COLUMNS].to_numpy())
    faces = a.track_id.notna().to_numpy()
    assert 0.01 < np.nanmean(diff[faces]) < 3            # moved, by shimmer, not by a face
    assert read_meta(str(out / "moving.mp4.parquet"))["params"]["smooth"]["method"] == "local-poly"
    assert read_meta(str(raw / "moving.mp4.parquet"))["params"]["smooth"] == {"method": "none"}


def test_first_run_mistakes_are_one_line_before_anything_starts(data_dir, tmp_path, capsys):
    """A missing input, an --out that cannot be made: exit 2 and one line naming the cause, and
    nothing written (the checks run before Ray starts). (`--address auto` with no cluster:
    test_address_auto_with_no_cluster_is_one_line.)"""
    src = tmp_path / "in"
    src.mkdir()
    moving_clip(str(src / "a.mp4"), pick_faces(data_dir, 1))
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should go")
    for argv, cause in (([str(src / "nope.mp4"), "--out", str(tmp_path / "o")], "no such file or folder"),
                        ([str(src), "--out", str(blocker / "out")], "cannot create the output folder"),
                        ([str(src), "--out", str(tmp_path / "o"), "--stage-server", "--gpus-per-actor", "0.5"],
                         "--gpus-per-actor 0.5 with --stage-server"),
                        # VP9's scale reaches 63 (render --out x.webm); annotate renders H.264
                        ([str(src), "--out", str(tmp_path / "o"), "--render", "blur", "--crf", "60"],
                         "crf 60: libx264 takes 0..51")):
        assert main(["annotate", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert cause in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_a_relative_out_in_rays_copy_of_a_job_working_dir_is_refused(tmp_path, monkeypatch, capsys):
    """`ray job submit --working-dir . -- facetracks annotate videos --out tracks` wrote the tracks
    into Ray's cache of the job's files, deleted with the session; a relative input that is not
    there is named with the folder it was looked for in."""
    job_dir = tmp_path / "session_1" / "runtime_resources" / "working_dir_files" / "_ray_pkg_1"
    (job_dir / "videos").mkdir(parents=True)
    (job_dir / "videos" / "x.mp4").write_bytes(b"\0" * 10)
    monkeypatch.chdir(job_dir)
    assert main(["annotate", "videos", "--out", "tracks"]) == 2
    assert "--out tracks is relative, and this job runs in Ray's copy of its working dir" in capsys.readouterr().err
    assert main(["annotate", "clips", "--out", str(tmp_path / "o")]) == 2
    assert f"no such file or folder: clips (in {job_dir})" in capsys.readouterr().err
    assert not (job_dir / "tracks").exists() and not (tmp_path / "o").exists()


def test_an_address_with_no_cluster_behind_it_is_one_line_at_once(tmp_path, capsys, monkeypatch):
    """Nothing listening at HOST:PORT took Ray 14 minutes of retries to say (now HEAD_WAIT_S, a
    head started beside its driver being given time to listen); a host that does not resolve is
    named; a dashboard URL (RAY_ADDRESS=http://…, exported for `ray job submit`) was a traceback."""
    from facetracks.jobs import ray_runner
    monkeypatch.setattr(ray_runner, "HEAD_WAIT_S", 2.0)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.mp4").write_bytes(b"\0" * 10)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]              # free, and nothing listens on it once closed
    for address, cause in ((f"127.0.0.1:{port}", f"nothing accepted a connection at 127.0.0.1:{port} in 2 s"),
                           ("no-such-host.invalid:6379", "cannot resolve the host no-such-host.invalid"),
                           ("http://127.0.0.1:8265", "is a web address (the dashboard's")):
        assert main(["annotate", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--address", address]) == 2
        err = capsys.readouterr().err.strip()
        assert cause in err and "\n" not in err and "Traceback" not in err, err


def test_python_api_gives_the_rows_the_cli_wrote(job):
    import facetracks
    from .compare import assert_tracks_match
    src, out, _ = job
    cli = pq.read_table(out / "moving.mp4.parquet").to_pandas()
    api = facetracks.annotate_video(src / "moving.mp4")          # the default profile and smoothing, as the CLI's
    assert (api["video"] == "moving.mp4").all()
    assert_tracks_match(cli, api)


def test_address_auto_with_no_cluster_is_one_line(tmp_path):
    """Ray's `auto` finds clusters by scanning processes too, so this runs where it can see none:
    in a pid namespace of its own (root and unshare needed; skipped elsewhere), with Ray's files
    in an empty folder."""
    if os.geteuid() != 0 or not shutil.which("unshare") or \
            subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode:
        pytest.skip("needs root and unshare for a pid namespace without other Ray processes")
    (tmp_path / "a.mp4").write_bytes(b"\0" * 10)
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = ray_tmp
    try:
        r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "facetracks.jobs.cli",
                            "annotate", str(tmp_path / "a.mp4"), "--out", str(tmp_path / "out"), "--address", "auto"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    err = r.stderr.strip()
    assert r.returncode == 2 and "no Ray cluster at --address auto" in err, r.stdout + r.stderr
    assert "\n" not in err and "Traceback" not in err


def test_a_file_name_that_is_not_utf8_is_annotated_rendered_and_reported(job, tmp_path):
    """A name from an old Windows system (Latin-1 bytes) that Linux keeps as bytes: Python holds
    the byte 0xE9 as a surrogate, which Parquet, pyarrow's paths and HTML cannot take. It used to
    fail with "UnicodeEncodeError ... surrogates not allowed". Now its `video` column and output
    names spell the byte %E9; the file is still read by its real name, and the report reaches it."""
    src, _, _ = job
    d = tmp_path / "in"
    d.mkdir()
    name = os.fsdecode(b"caf\xe9.mp4")
    try:
        shutil.copy(src / "moving.mp4", os.path.join(d, name))
    except (OSError, UnicodeEncodeError):
        pytest.skip("this filesystem takes only UTF-8 names")
    out = tmp_path / "out"
    assert main(["annotate", str(d), "--out", str(out), "--render", "landmarks", "--report", "--progress", "never"]) == 0
    v = json.loads((out / "_summary.json").read_text())["videos"]
    assert list(v) == ["caf%E9.mp4"] and v["caf%E9.mp4"]["status"] == "ok"
    t = pd.read_parquet(out / "caf%E9.mp4.parquet")
    assert set(t.video) == {"caf%E9.mp4"} and t.track_id.notna().any()
    assert read_meta(str(out / "caf%E9.mp4.parquet"))["source"]["path"] == os.path.join(d, name)
    assert (out / "caf%E9.mp4.landmarks.mp4").exists()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "caf%E9.mp4" in page and "not reachable" not in page
    assert main(["annotate", str(d), "--out", str(out), "--progress", "never", "--render", "landmarks"]) == 0
    assert json.loads((out / "_summary.json").read_text())["videos"]["caf%E9.mp4"]["status"] == "skipped"


def test_names_too_long_for_an_output_file_are_shortened_not_failed(job, tmp_path):
    """Two clips named after long titles, as downloaders name them (240 bytes, one start): the
    name with `.parquet` and a temp file's ending passes 255 bytes, the most one file name may
    hold. It used to fail ("File name too long"). Each output name keeps 150 bytes, a hash of the
    whole name and its extension, so the two stay apart; the `video` column keeps the whole name,
    a rerun finds the outputs current, and export and report read them."""
    src, _, _ = job
    d = tmp_path / "in" / ("dir_" + "é" * 120)     # a folder name of 244 bytes too
    d.mkdir(parents=True)
    names = ["ab" * 60 + "é" * 58 + tail + ".mp4" for tail in ("_1", "_2")]
    assert all(len(n.encode()) == 242 for n in names)
    for n in names:
        shutil.copy(src / "moving.mp4", d / n)
    out = tmp_path / "out"
    args = ["annotate", str(tmp_path / "in"), "--out", str(out), "--render", "landmarks", "--progress", "never"]
    assert main([*args, "--report"]) == 0
    v = json.loads((out / "_summary.json").read_text())["videos"]
    assert sorted(v) == sorted(f"{d.name}/{n}" for n in names) and all(e["status"] == "ok" for e in v.values())
    files = [os.path.join(r, f) for r, _, fs in os.walk(out) for f in fs if f.endswith((".parquet", ".landmarks.mp4"))]
    assert len(files) == 4 and all(len(os.path.basename(f).encode()) <= 255 - 13 for f in files)
    for name, entry in v.items():
        assert os.path.basename(entry["output"]).endswith(".mp4.parquet")
        assert set(pd.read_parquet(entry["output"]).video) == {name}
        assert os.path.exists(entry["render"]["output"])
    assert "not reachable" not in (out / "report.html").read_text(encoding="utf-8")
    assert main(args) == 0
    assert {e["status"] for e in json.loads((out / "_summary.json").read_text())["videos"].values()} == {"skipped"}
    assert main(["export", str(out)]) == 0


def test_a_render_that_finds_the_output_disk_full_stops_the_run(tmp_path):
    """Renders are written by the actors: one that finds no space (here a 256 KB tmpfs, a render
    of noise needs megabytes, the tracks of a faceless clip 10 KB) stops the run as a track file
    would, instead of every later video decoding and encoding its whole length to fail the same
    way. The tracks that fitted are kept; with space, the same command redoes the render only."""
    from facetracks.jobs.clips import write_video
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_video(str(src / f"v{i}.mp4"), [rng.integers(0, 256, (240, 320, 3), np.uint8) for _ in range(12)])
    keep = tmp_path / "keep"
    r = on_a_small_disk(src, keep, "256k", "--render landmarks")
    text = r.stdout + r.stderr
    assert "first=1" in r.stdout and "second=0" in r.stdout, text
    assert "facetracks annotate: the output is full: rendering v0.mp4 failed" in r.stderr, text
    assert "No space left on device" in r.stderr and "v1.mp4" not in r.stderr.split("the output is full")[0], text
    first = sorted(os.listdir(keep / "first"))
    assert first == ["_summary.json", "v0.mp4.parquet"], first            # whole files only, no temp left
    entry = json.loads((keep / "first" / "_summary.json").read_text())["videos"]["v0.mp4"]
    assert entry["status"] == "ok" and entry["render"]["status"] == "failed" and "full" not in entry["render"]
    summary = json.loads((keep / "second" / "_summary.json").read_text())["videos"]
    assert summary["v0.mp4"]["status"] == "skipped" and summary["v0.mp4"]["render"]["status"] == "ok"
    assert [summary[f"v{i}.mp4"]["status"] for i in (1, 2)] == ["ok", "ok"]
    assert all((keep / "second" / f"v{i}.mp4.landmarks.mp4").exists() for i in range(3))


def test_inputs_given_as_uris_are_read_where_they_are(job, videos_dir, tmp_path, capsys):
    """A URI input (here file://, read through pyarrow's filesystem as s3:// and gs:// are) is listed
    there and decoded from pyarrow's seekable file, by segments too: the same rows as the same
    folder given as a path, also for a name with a space and a '#'; the render reads it there as
    well; the metadata names the URI."""
    src, _, _ = job
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(os.path.join(videos_dir, "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"), d / "sub" / "talk #1.mp4")
    shutil.copy(src / "sub" / "vfr.mp4", d / "vfr.mp4")
    (d / "notes.txt").write_text("not an input\n")
    uri = "file://" + str(d)
    args = ["--progress", "never", "--segment-seconds", "2"]
    assert main(["annotate", str(d), "--out", str(tmp_path / "path"), *args]) == 0
    assert main(["annotate", uri, "--out", str(tmp_path / "uri"), *args]) == 0
    s = json.loads((tmp_path / "uri" / "_summary.json").read_text())["videos"]
    assert sorted(s) == ["sub/talk #1.mp4", "vfr.mp4"] and s["sub/talk #1.mp4"]["segments"] == 4
    for name in s:
        a = pd.read_parquet(tmp_path / "path" / (name + ".parquet"))
        b = pd.read_parquet(tmp_path / "uri" / (name + ".parquet"))
        assert_tracks_match(a, b)
    # escaped as a URI must be: a '#' or a space in a name would cut or break it
    assert read_meta(str(tmp_path / "uri" / "sub" / "talk #1.mp4.parquet"))["source"]["path"] == uri + "/sub/talk%20%231.mp4"
    assert main(["annotate", uri + "/vfr.mp4", "--out", str(tmp_path / "render"), "--render", "landmarks",
                 "--progress", "never"]) == 0
    assert (tmp_path / "render" / "vfr.mp4.landmarks.mp4").exists()
    capsys.readouterr()
    assert main(["annotate", uri + "/missing.mp4", "--out", str(tmp_path / "none")]) == 2
    assert "no such file or folder: " + uri + "/missing.mp4" in capsys.readouterr().err


FULL_DISK = """
mount -t tmpfs -o size={small} tmpfs "$1" || exit 97
cd "$2"
"$3" -m facetracks.jobs.cli annotate "$4" --out "$1/t" --actors 1 {extra}; echo "first=$?"
cp -a "$1/t" "$5/first"
mount -o remount,size=64m "$1"
"$3" -m facetracks.jobs.cli annotate "$4" --out "$1/t" --actors 1 {extra}; echo "second=$?"
cp -a "$1/t" "$5/second"
"""


def test_a_render_error_wrapped_by_the_renderer_still_says_the_disk_is_full():
    """render.py turns PyAV's errors in its frame loop into VideoError (from the original): on a
    disk that reports ENOSPC at the write itself, as /dev/full does, the cause carries it."""
    import errno
    from facetracks.jobs.worker import _render_failed
    from facetracks.pipeline.video import VideoError
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise VideoError("v.mp4: render failed at frame 41") from e
    except VideoError as wrapped:
        assert _render_failed(str(wrapped), wrapped)["full"] is True
    assert "full" not in _render_failed("v.mp4: render failed", VideoError("v.mp4: bad packet"))


def on_a_small_disk(src, keep, small: str, extra: str = "") -> subprocess.CompletedProcess:
    """FULL_DISK's two runs of `annotate src` (`extra` options) into a tmpfs of `small`, mounted in
    a mount namespace of the test's own (`unshare -rm`), then remounted at 64 MB; the output
    after each run copied to `keep`/first and /second. Skips where no tmpfs can be mounted."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a small filesystem")
    mnt = keep.parent / "mnt"
    mnt.mkdir()
    keep.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")      # short: Ray's socket paths must fit
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["RAY_TMPDIR"] = ray_tmp
        r = subprocess.run(["unshare", "-rm", "sh", "-c", FULL_DISK.format(small=small, extra=extra), "sh", str(mnt),
                            ROOT, sys.executable, str(src), str(keep)],
                           env=env, capture_output=True, text=True, timeout=600, start_new_session=True)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if r.returncode == 97 or "first=" not in r.stdout:
        pytest.skip(f"cannot mount a tmpfs in a new mount namespace here: {r.stderr[-300:]}")
    return r


def test_a_full_output_disk_stops_the_run_and_a_rerun_with_space_does_the_rest(data_dir, tmp_path):
    """The output filesystem fills up midway (here a tmpfs of 64 KB, mounted in a mount namespace
    of this test's own, `unshare -rm`: one 46 KB track file and the summary fit, the second track
    file does not): the run stops at that write, with one line saying so and exit 1, instead of
    failing it and every video after it one by one (a failed write frees its space, so the small
    summary still fitted and nothing stopped the run); the files written are whole; with space
    freed the same command does the rest."""
    src = tmp_path / "in"
    src.mkdir()
    faces = pick_faces(data_dir, 8)
    for i, face in enumerate(faces):
        moving_clip(str(src / f"v{i}.mp4"), [face], frames_each=4)
    keep = tmp_path / "keep"
    r = on_a_small_disk(src, keep, "64k")
    text = r.stdout + r.stderr
    assert "first=1" in r.stdout and "second=0" in r.stdout, text
    assert "facetracks annotate: the output is full: writing v" in r.stderr and "stopped" in r.stderr, text
    first = sorted(os.listdir(keep / "first"))
    if "_summary.json" in first:                                 # no video failed for want of space
        before = json.loads((keep / "first" / "_summary.json").read_text())["videos"]
        assert {e["status"] for e in before.values()} <= {"ok"}, before
    assert not [f for f in first if f.endswith(".tmp")], first
    done = [f for f in first if f.endswith(".parquet")]
    assert len(done) < len(faces), first                         # it stopped before the end
    for f in done:                                               # what it wrote is whole
        assert pq.read_table(keep / "first" / f).num_rows == 4
    summary = json.loads((keep / "second" / "_summary.json").read_text())["videos"]
    assert sorted(summary) == [f"v{i}.mp4" for i in range(len(faces))]
    assert {summary[f[:-len(".parquet")]]["status"] for f in done} == {"skipped"}
    assert {e["status"] for e in summary.values()} <= {"ok", "skipped"}


def test_a_render_is_never_left_without_its_tracks(job, tmp_path, capsys):
    """The actor renders and moves its render into place before the driver writes the tracks: when
    that write fails (here a folder holds the track file's name; a file made immutable, a
    permission), the render it would belong to is removed, and the error says so."""
    src, _, _ = job
    out = tmp_path / "out"
    (out / "moving.mp4.parquet").mkdir(parents=True)
    assert main(["annotate", str(src / "moving.mp4"), "--out", str(out), "--render", "landmarks",
                 "--profile", "fast"]) == 1
    entry = json.loads((out / "_summary.json").read_text())["videos"]["moving.mp4"]
    assert entry["status"] == "failed" and "cannot write" in entry["error"], entry
    assert "its render, made before, removed" in entry["error"]
    assert sorted(os.listdir(out)) == ["_summary.json", "moving.mp4.parquet"]      # the folder, and no render


def test_a_missing_file_given_to_other_commands_is_one_line(tmp_path, capsys):
    """`evaluate --data` or `bench VIDEO` naming what is not there ended in a traceback."""
    assert main(["evaluate", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"facetracks evaluate: no such file: {tmp_path / 'nowhere'}") and "Traceback" not in err
    assert main(["bench", str(tmp_path / "nothing.mp4"), "--no-memory", "--no-accuracy"]) == 2
    assert f"facetracks bench: {tmp_path / 'nothing.mp4'}: no such file" in capsys.readouterr().err


def test_a_file_that_changed_since_it_was_read_is_told_apart(tmp_path):
    """A recording still being written when it was read: the summary marks it `changed_while_read`
    and stderr says the same command redoes it (its run key holds the size it had). Seen with the
    20 s sample grown by 1 kB mid-run; here the check itself, on a real file."""
    from facetracks.pipeline import sources
    rec = tmp_path / "rec.mp4"
    rec.write_bytes(b"x" * 100)
    st = sources.info(str(rec))
    assert not sources.changed_since(str(rec), st.size, st.mtime)
    with open(rec, "ab") as f:
        f.write(b"more")
    assert sources.changed_since(str(rec), st.size, st.mtime)
    assert not sources.changed_since(str(tmp_path / "gone.mp4"), st.size, st.mtime)     # cannot tell: no claim


def test_an_output_folder_on_a_read_only_filesystem_is_one_line_naming_why(data_dir, tmp_path):
    """It said "permission denied" (os.access), and as root it passed the check and failed later;
    now a file is made and removed there first, and the line says what the system said. The
    folder is on a tmpfs remounted read-only in a mount namespace of the test's own."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a read-only filesystem")
    src, mnt = tmp_path / "in", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    moving_clip(str(src / "one.mp4"), pick_faces(data_dir, 1), frames_each=3)
    script = ('mount -t tmpfs tmpfs "$1" && mkdir "$1/out" && mount -o remount,ro "$1" || exit 97; '
              '"$2" -m facetracks.jobs.cli annotate "$3" --out "$1/out"')
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", str(mnt), sys.executable, str(src)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    if r.returncode == 97:
        pytest.skip(f"cannot mount a tmpfs in a new mount namespace here: {r.stderr[-300:]}")
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"cannot write to the output folder {mnt}/out (read-only file system)" in r.stderr


def test_a_track_file_of_another_file_with_the_same_name_is_not_replaced(data_dir, tmp_path, capsys):
    """`annotate A B`: B's x.mp4 is x.mp4~1; `annotate B` alone then names it x.mp4, and wrote B's
    tracks over A's without a word. Now refused (the file named, exit 1) unless --overwrite; a
    folder moved as it was is still current wherever it is."""
    faces = pick_faces(data_dir, 2)
    for d, face in (("A", faces[0]), ("B", faces[1])):
        (tmp_path / d).mkdir()
        moving_clip(str(tmp_path / d / "x.mp4"), [face], frames_each=3)
    out = tmp_path / "out"
    fast = ["--out", str(out), "--profile", "fast"]
    assert main(["annotate", str(tmp_path / "A"), str(tmp_path / "B"), *fast]) == 0
    v = json.loads((out / "_summary.json").read_text())["videos"]
    assert (v["x.mp4"]["input"], v["x.mp4~1"]["input"]) == (str(tmp_path / "A" / "x.mp4"), str(tmp_path / "B" / "x.mp4"))
    source = lambda name: read_meta(str(out / name))["source"]["path"]        # noqa: E731
    assert (source("x.mp4.parquet"), source("x.mp4~1.parquet")) == (str(tmp_path / "A" / "x.mp4"),
                                                                     str(tmp_path / "B" / "x.mp4"))
    assert main(["annotate", str(tmp_path / "B"), *fast]) == 1
    entry = json.loads((out / "_summary.json").read_text())["videos"]["x.mp4"]
    assert entry["status"] == "failed" and f"holds the tracks of {tmp_path / 'A' / 'x.mp4'}" in entry["error"]
    assert entry["input"] == str(tmp_path / "B" / "x.mp4")
    assert source("x.mp4.parquet") == str(tmp_path / "A" / "x.mp4")             # A's, kept
    os.rename(tmp_path / "A", tmp_path / "A_moved")                               # moved as it was: current
    assert main(["annotate", str(tmp_path / "A_moved"), *fast]) == 0
    assert json.loads((out / "_summary.json").read_text())["videos"]["x.mp4"]["status"] == "skipped"
    assert main(["annotate", str(tmp_path / "B"), *fast, "--overwrite"]) == 0
    assert source("x.mp4.parquet") == str(tmp_path / "B" / "x.mp4")
