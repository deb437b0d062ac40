import os

import cv2
import numpy as np
import pytest

from facetracks.training.data import list_split, load_split, read_image_gray, read_keypoints_csv


def test_official_csv_has_68_points(data_dir):
    t = read_keypoints_csv(os.path.join(data_dir, "training_frames_keypoints.csv"))
    assert len(t) == 3462
    assert t.points[0].shape == (68, 2)


def test_identity_split_sizes_and_disjoint(data_dir):
    parts = {p: list_split(data_dir, "identity", p) for p in ("train", "val", "test")}
    assert [len(parts[p]) for p in ("train", "val", "test")] == [2943, 435, 854]
    ident = {p: {n.rsplit("_", 1)[0] for _, n, _ in v} for p, v in parts.items()}
    assert not ident["train"] & ident["test"] and not ident["val"] & ident["test"]
    assert {f for f, _, _ in parts["test"]} == {"training", "test"}   # both folders


def test_load_split_reads_real_images(data_dir):
    s = load_split(data_dir, "official", "test", limit=5)
    assert len(s) == 5
    for x in s:
        assert x.gray.dtype == np.uint8 and x.gray.ndim == 2
        h, w = x.gray.shape
        assert (x.points[:, 0] < w + 5).all() and (x.points[:, 1] < h + 5).all()


def test_images_are_read_by_content_not_extension(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (20, 30), np.uint8)
    path = tmp_path / "really_a_png.jpg"
    cv2.imwrite(str(tmp_path / "x.png"), img)
    os.rename(tmp_path / "x.png", path)
    assert np.array_equal(read_image_gray(str(path)), img)     # lossless: decoded as PNG


def test_unreadable_image_names_the_file(tmp_path):
    p = tmp_path / "broken.jpg"
    p.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        read_image_gray(str(p))
