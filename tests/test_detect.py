import cv2
import numpy as np

from facetracks.pipeline.detect import HaarDetector
from facetracks.training.data import load_split


def test_opencv_has_haar_cascades():
    assert int(cv2.__version__.split(".")[0]) < 5
    assert hasattr(cv2, "CascadeClassifier")


def test_haar_finds_real_faces_and_not_blank(data_dir):
    det = HaarDetector()
    samples = load_split(data_dir, "identity", "test", limit=10)
    found = 0
    for s in samples:
        d = det.detect(s.gray)
        assert d.shape[1] == 5 and d.dtype == np.float32
        if len(d):
            x, y, w, h, _ = d[0]
            cx, cy = s.points.mean(axis=0)
            found += (x <= cx <= x + w) and (y <= cy <= y + h)
    assert found >= 8
    assert len(det.detect(np.full((240, 320), 128, np.uint8))) == 0


def test_downscaled_detection_maps_boxes_back(data_dir):
    s = load_split(data_dir, "identity", "test", limit=1)[0]
    big = cv2.resize(s.gray, None, fx=4, fy=4)
    d = HaarDetector(detect_side=max(s.gray.shape)).detect(big)
    assert len(d)
    cx, cy = s.points.mean(axis=0) * 4
    x, y, w, h, _ = d[0]
    assert x <= cx <= x + w and y <= cy <= y + h
