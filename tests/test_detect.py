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


def test_near_detection_finds_the_face_around_its_square_in_frame_pixels(data_dir):
    """`detect_near` cuts a 96 px window around a face square (the face may have moved: here by a
    quarter of its size) and maps the boxes back: the whole-frame detection's box, and nothing in a
    window over an empty part of the frame."""
    from facetracks.models.crop import square_from_points
    from facetracks.pipeline.detect import detect_near
    from facetracks.training.boxes import match_detection
    s = next(x for x in load_split(data_dir, "identity", "test", limit=20) if max(x.gray.shape) <= 240)
    frame = np.full((480, 640), 90, np.uint8)
    frame[100:100 + s.gray.shape[0], 300:300 + s.gray.shape[1]] = s.gray
    pts = s.points + [300, 100]
    det = HaarDetector()
    full = det.detect(frame)
    box = match_detection(full, pts)
    assert box is not None
    sq = square_from_points(pts)
    moved = np.array(sq, np.float32) + [sq[2] / 4, -sq[2] / 4, 0]
    near = detect_near(det, frame, moved)
    assert len(near) == 1
    x0, y0, w0, h0 = box
    x1, y1, w1, h1 = near[0, :4]
    inter = max(0, min(x0 + w0, x1 + w1) - max(x0, x1)) * max(0, min(y0 + h0, y1 + h1) - max(y0, y1))
    assert inter / (w0 * h0 + w1 * h1 - inter) > 0.7
    assert len(detect_near(det, frame, np.array([80, 380, sq[2]], np.float32))) == 0


def test_the_window_grows_with_the_frames_a_face_went_untrusted(data_dir):
    """A face held for a while may have moved on: `near_reach` widens the window with the frames
    it has not been trusted (capped), and a face 1.5 sides from its old square is found only then."""
    from facetracks.models.crop import square_from_points
    from facetracks.pipeline.detect import NEAR_MAX_REACH, NEAR_REACH, detect_near, near_reach
    assert near_reach(0) == near_reach(1) == NEAR_REACH
    assert NEAR_REACH < near_reach(5) < near_reach(9) and near_reach(1000) == NEAR_MAX_REACH
    s = next(x for x in load_split(data_dir, "identity", "test", limit=20) if max(x.gray.shape) <= 240)
    frame = np.full((480, 640), 90, np.uint8)
    frame[100:100 + s.gray.shape[0], 300:300 + s.gray.shape[1]] = s.gray
    sq = square_from_points(s.points + [300, 100])
    old = np.array(sq, np.float32) - [1.5 * sq[2], 0, 0]
    det = HaarDetector()
    assert len(detect_near(det, frame, old)) == 0
    assert len(detect_near(det, frame, old, reach=near_reach(9))) == 1
