"""`facetracks export OUT_DIR --format openface` on a real run, read back as OpenFace readers read
OpenFace's CSVs (`pd.read_csv(..., skipinitialspace=True)`), checked against the Parquet."""
from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from facetracks.jobs.cli import main
from facetracks.jobs.export import LANDMARK_COLUMNS, openface_pose, to_openface, write_csv

from .small_run import annotate_small_run

# OpenFace 2.x FeatureExtraction's first columns, in order (RecorderCSV.cpp), then pose, then points
OPENFACE_HEAD = ["frame", "face_id", "timestamp", "confidence", "success"]


@pytest.fixture(scope="module")
def exported(data_dir, tmp_path_factory):
    src, out = tmp_path_factory.mktemp("in"), tmp_path_factory.mktemp("out")
    annotate_small_run(data_dir, src, out)
    code = main(["export", str(out), "--format", "openface"])
    return out, code


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path, skipinitialspace=True)


def test_one_csv_per_track_file_in_openface_layout(exported):
    out, code = exported
    assert code == 0
    csvs = sorted(os.path.relpath(os.path.join(d, f), out / "openface")
                  for d, _, fs in os.walk(out / "openface") for f in fs)
    assert csvs == ["sub/then_nothing.mp4.csv", "two faces.mp4.csv"]      # the failed video has no tracks
    header = (out / "openface" / "two faces.mp4.csv").read_text().splitlines()[0]
    assert header.startswith("frame, face_id, timestamp, confidence, success, ")   # ", " as OpenFace
    df = _read(out / "openface" / "two faces.mp4.csv")
    pose = ["pose_Rx", "pose_Ry", "pose_Rz"]
    assert list(df.columns) == OPENFACE_HEAD + pose + LANDMARK_COLUMNS
    assert LANDMARK_COLUMNS[:2] == ["x_0", "x_1"] and LANDMARK_COLUMNS[68] == "y_0" and len(LANDMARK_COLUMNS) == 136


@pytest.mark.parametrize("name", ["two faces.mp4", "sub/then_nothing.mp4"])
def test_values_are_the_parquet_rows(exported, name):
    out, _ = exported
    tracks = pq.read_table(out / (name + ".parquet")).to_pandas()
    tracks = tracks.sort_values(["frame_index", "track_id"], na_position="first").reset_index(drop=True)
    df = _read(out / "openface" / (name + ".csv"))
    assert len(df) == len(tracks)
    face = tracks.track_id.notna().to_numpy()
    np.testing.assert_array_equal(df.frame, tracks.frame_index + 1)          # OpenFace counts from 1
    np.testing.assert_array_equal(df.success, face.astype(int))
    np.testing.assert_array_equal(df.face_id[face], tracks.track_id[face].astype(int))
    np.testing.assert_allclose(df.timestamp, tracks.time_s, atol=5e-4)
    np.testing.assert_allclose(df.confidence[face], tracks.score[face], atol=5e-4)
    for c in ("x_0", "x_36", "y_45", "y_67"):
        np.testing.assert_allclose(df[c][face], tracks[c][face], atol=5e-3)
    # a frame without a face: one row, success 0, zeros, as OpenFace writes when tracking fails
    assert (df.loc[~face, ["face_id", "confidence", "x_30", "y_30", "pose_Rx"]] == 0).all().all()
    if name == "two faces.mp4":
        assert face.all() and sorted(df.face_id.unique()) == [0, 1]
        assert (df.groupby("frame").size() == 2).all()
    else:
        assert df.success.tolist() == [1] * 6 + [0] * 4


def test_pose_is_openface_rotation_in_radians():
    """OpenFace: R = Rx·Ry·Rz, Ry positive turning the nose to image left, Rz clockwise in the image."""
    rx, ry, rz = openface_pose(np.array([20.0, 0, 0, np.nan]), np.array([0, 15.0, 0, 0]), np.array([0, 0, 10.0, 0])).T
    np.testing.assert_allclose([rx[0], ry[0], rz[0]], [0, np.radians(-20), 0], atol=1e-9)   # our yaw: nose right
    np.testing.assert_allclose([rx[1], ry[1], rz[1]], [np.radians(-15), 0, 0], atol=1e-9)   # our pitch: up
    np.testing.assert_allclose([rx[2], ry[2], rz[2]], [0, 0, np.radians(10)], atol=1e-9)
    assert np.isnan([rx[3], ry[3], rz[3]]).all()


def test_no_pose_columns_without_pose_and_unmeasured_score_is_empty():
    """Track files from before the pose columns export without pose; a score the run did not
    measure (--refine 0 --no-flip) is an empty cell, not 0."""
    pts = {c: [10.0 + k] for k, c in enumerate(LANDMARK_COLUMNS)}
    tracks = pd.DataFrame({"frame_index": [0], "time_s": [0.0], "track_id": [3], "score": [np.nan], **pts})
    f = io.StringIO()
    write_csv(to_openface(tracks), f)
    head, row = f.getvalue().splitlines()
    assert "pose_Rx" not in head and row.startswith("1, 3, 0.000, , 1, 10.00, 11.00")
    back = pd.read_csv(io.StringIO(f.getvalue()), skipinitialspace=True)
    assert np.isnan(back.confidence[0]) and back.y_67[0] == 10.0 + 135


def test_a_folder_without_tracks_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "no track files" in capsys.readouterr().err


def test_a_damaged_track_file_is_a_failure_named_not_left_out(exported, tmp_path, capsys):
    """A track file cut short (a copy interrupted, a full disk elsewhere) was skipped without a word:
    "2 of 2", exit 0. Now it is one of the files, failed and named; the others are exported."""
    import shutil
    out, _ = exported
    run = tmp_path / "run"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns("openface"))
    data = (run / "two faces.mp4.parquet").read_bytes()
    (run / "two faces.mp4.parquet").write_bytes(data[:len(data) // 2])
    pd.DataFrame({"a": [1]}).to_parquet(run / "someone_elses.parquet")        # readable, not ours: not a track file
    assert main(["export", str(run)]) == 1
    captured = capsys.readouterr()
    assert f"failed: {run / 'two faces.mp4.parquet'}: cannot read it (" in captured.err
    assert "someone_elses" not in captured.err + captured.out
    assert "export: 1 of 2 track files" in captured.out
    assert (run / "openface" / "sub" / "then_nothing.mp4.csv").exists()


def _copy_run(exported, to):
    import shutil
    out, _ = exported
    shutil.copytree(out, to, ignore=shutil.ignore_patterns("openface"))
    return to


def test_a_track_file_without_a_column_fails_named_and_the_others_are_exported(exported, tmp_path, capsys):
    """A track file lacking `score` stopped the export with an AttributeError: the files after it
    were not exported. It is one failed file, named with the column it lacks."""
    run = _copy_run(exported, tmp_path / "run")
    path = run / "two faces.mp4.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns(["score"]), path)         # the metadata is kept: still ours
    assert main(["export", str(run)]) == 1
    captured = capsys.readouterr()
    assert f"failed: {path}: no score column" in captured.err
    assert "export: 1 of 2 track files" in captured.out
    assert (run / "openface" / "sub" / "then_nothing.mp4.csv").exists()


def test_a_dest_that_is_a_file_is_refused_in_one_line(exported, tmp_path, capsys):
    """`--dest FILE` printed "[Errno 17] File exists" once per track file, then "0 of 2"."""
    run = _copy_run(exported, tmp_path / "run")
    (tmp_path / "taken").write_text("")
    assert main(["export", str(run), "--dest", str(tmp_path / "taken")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (f"facetracks export: --dest {tmp_path / 'taken'} is a file, not "
                                                   f"a folder: name a folder for the CSVs (--dest)\n")
    assert main(["export", str(run), "--dest", str(tmp_path / "taken" / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write to" in err and "not a directory" in err


def test_a_file_given_as_the_folder_is_called_a_file(exported, capsys):
    out, _ = exported
    assert main(["export", str(out / "two faces.mp4.parquet")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "no such" not in err


def test_a_file_uri_with_a_space_is_the_local_folder(exported, tmp_path, capsys):
    """`file:///tmp/a b` (annotate --out takes it) was pyarrow's "Cannot parse URI" traceback."""
    run = _copy_run(exported, tmp_path / "a run #1")
    assert main(["export", f"file://{run}"]) == 0
    assert (run / "openface" / "sub" / "then_nothing.mp4.csv").exists()
    assert "export: 2 of 2 track files" in capsys.readouterr().out
