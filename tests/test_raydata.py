"""The Ray Data callable on real photos: YTF-68 identity-test images written as PNG and JPEG, read
back by `ray.data.read_images` on a private local Ray, and called directly without Ray."""
from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from facetracks.pipeline.schema import POSE_COLUMNS, points_from_columns
from facetracks.raydata import FACE_COLUMNS, Landmarker
from facetracks.training.metrics import nme

from .clips import pick_faces
from .conftest import face_canvas
from .raycluster import short_tempdir


@pytest.fixture(scope="module")
def photos(data_dir, tmp_path_factory):
    """name -> truth (list of (68, 2) points, one per face): gray and RGB PNGs, a JPEG, two faces
    in one photo, and a blank one."""
    folder = tmp_path_factory.mktemp("photos")
    a, b, c, d, e, f = pick_faces(data_dir, 6)
    truth = {}

    def write(name, img, faces):
        assert cv2.imwrite(str(folder / name), img)
        truth[name] = faces

    write("gray.png", a.gray, [a.points])
    write("gray2.png", b.gray, [b.points])
    write("rgb.png", cv2.cvtColor(c.gray, cv2.COLOR_GRAY2BGR), [c.points])
    write("rgb.jpg", cv2.cvtColor(d.gray, cv2.COLOR_GRAY2BGR), [d.points])
    left, pl = face_canvas(e.gray, e.points, at=(4, 4))
    right, pr = face_canvas(f.gray, f.points, at=(4, 4))
    write("two.png", np.hstack([left, right]), [pl, pr + np.array([320, 0], np.float32)])
    write("blank.png", np.full((240, 320, 3), 110, np.uint8), [])
    return str(folder), truth


def check_rows(df: pd.DataFrame, truth: dict) -> None:
    """Every photo is there, with one row per face (one null row for none), each face near its truth."""
    df = df.assign(name=df["path"].map(os.path.basename))
    assert sorted(df["name"].unique()) == sorted(truth)
    for name, faces in truth.items():
        rows = df[df["name"] == name]
        if not faces:
            assert len(rows) == 1 and rows["face"].isna().all()
            assert rows[FACE_COLUMNS].isna().all(axis=None)
            continue
        assert sorted(rows["face"].astype(int)) == list(range(len(faces))), name
        pts = points_from_columns(rows)
        assert rows[POSE_COLUMNS].notna().all(axis=None), name     # the image is the pose's camera
        for t in faces:         # each true face matched by one found face
            assert min(nme(pts, np.repeat(t[None], len(pts), 0))) < 0.10, name
        w = rows.sort_values("face")["w"].to_numpy()
        assert (np.diff(w) <= 0).all()            # face 0 is the largest


def test_read_images_map_batches_gives_a_row_per_face_and_keeps_every_path(photos):
    import ray
    folder, truth = photos
    if ray.is_initialized():
        ray.shutdown()      # an in-process CLI run of an earlier test left its private Ray up
    tmp = short_tempdir()
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False,
             log_to_driver=False, configure_logging=False, _temp_dir=tmp)
    try:
        ds = ray.data.read_images(folder, include_paths=True).map_batches(
            Landmarker, fn_constructor_kwargs={"profile": "accurate"}, batch_size=4,
            compute=ray.data.ActorPoolStrategy(size=1))
        df = ds.to_pandas()
        # batch_format="pyarrow": Ray's tensor columns (it failed: "the batch has no 'image' column"
        # and the column's data dumped into the message)
        arrow = ray.data.read_images(folder, include_paths=True).map_batches(
            Landmarker, fn_constructor_kwargs={"profile": "accurate"}, batch_size=4, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=1)).to_pandas()
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    check_rows(df, truth)
    assert len(df) == 1 + 1 + 1 + 1 + 2 + 1
    key = ["path", "face"]
    a, b = (d.sort_values(key).reset_index(drop=True) for d in (df, arrow))
    assert a[key].equals(b[key])
    assert np.allclose(a[FACE_COLUMNS].to_numpy(float), b[FACE_COLUMNS].to_numpy(float), atol=1e-3, equal_nan=True)


def test_called_directly_on_a_pandas_batch(photos):
    folder, truth = photos
    names = sorted(truth)
    rgb = [cv2.cvtColor(cv2.imread(os.path.join(folder, n)), cv2.COLOR_BGR2RGB) for n in names]
    rgb[0] = cv2.cvtColor(rgb[0], cv2.COLOR_RGB2GRAY)       # a gray one among them
    batch = pd.DataFrame({"image": pd.Series(rgb, dtype=object), "path": names, "n": np.arange(len(names))})
    out = Landmarker("fast")(batch).to_pandas()
    check_rows(out, truth)
    assert out.groupby("path")["n"].first().to_dict() == dict(zip(names, range(len(names))))   # ids follow their image
    numpy_batch = {"image": np.array(rgb + [None], dtype=object)[:-1], "path": np.array(names)}
    again = Landmarker("fast")(numpy_batch).to_pandas()
    assert np.allclose(again[FACE_COLUMNS].to_numpy(float), out[FACE_COLUMNS].to_numpy(float), atol=1e-3, equal_nan=True)
    # Arrow's own tensor type (Ray Data's ARROW_NATIVE format): one (H, W, 3) array an image, not a flat buffer
    same = [i for i, a in enumerate(rgb) if a.ndim == 3 and a.shape == rgb[-1].shape]
    arrow = pa.table({"image": pa.FixedShapeTensorArray.from_numpy_ndarray(np.stack([rgb[i] for i in same])),
                      "path": [names[i] for i in same]})
    got = Landmarker("fast")(arrow).to_pandas()
    want = out[out.path.isin(arrow.column("path").to_pylist())]
    assert got.path.tolist() == want.path.tolist() and len(got) > 0
    assert np.allclose(got[FACE_COLUMNS].to_numpy(float), want[FACE_COLUMNS].to_numpy(float), atol=1e-3, equal_nan=True)


def test_a_bad_image_or_column_is_refused_with_its_name():
    lm = Landmarker("fast")
    with pytest.raises(ValueError, match=r"path=b\.png.*float32"):
        lm({"image": [np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.float32)], "path": ["a.png", "b.png"]})
    with pytest.raises(KeyError, match="no 'image' column"):
        lm({"img": [np.zeros((8, 8), np.uint8)]})
    empty = lm({"image": [], "path": np.array([], dtype=str)})
    assert empty.num_rows == 0 and "face" in empty.column_names
