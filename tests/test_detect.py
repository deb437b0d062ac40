import cv2
import numpy as np
import pytest

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
    from facetracks.pipeline.tracking import square_iou
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
    near = detect_near(det, frame, moved, as_squares)
    assert near.shape == (1, 4) and near[0, 3] == 0                 # an upright window: an upright square
    assert square_iou(near, as_squares(box[None])) > 0.7
    assert len(detect_near(det, frame, np.array([80, 380, sq[2]], np.float32), as_squares)) == 0


def as_squares(boxes):
    """Boxes (N, 4) as squares (N, 3) around them, the calibration of a detector with no habits."""
    from facetracks.models.crop import BoxCalibration, square_from_box
    return square_from_box(boxes, BoxCalibration())


def test_a_face_followed_while_tilted_is_looked_for_in_a_window_turned_as_it_was(data_dir):
    """The frontal cascade finds faces within about 20 degrees of upright: a face tilted 45
    degrees is not found in an upright window, and is in one turned by its whole tilt (its
    square's turn and the upright zone the crop leaves), as a square (cx, cy, side, turn) on the
    face in the frame, with the square's turn."""
    import cv2

    from facetracks.models.crop import UPRIGHT_ZONE, square_from_points
    from facetracks.pipeline.detect import detect_near
    from facetracks.pipeline.tracking import square_iou
    s = next(x for x in load_split(data_dir, "identity", "test", limit=20) if max(x.gray.shape) <= 240)
    frame = np.full((480, 640), 90, np.uint8)
    frame[100:100 + s.gray.shape[0], 300:300 + s.gray.shape[1]] = s.gray
    pts = s.points + [300, 100]
    c = pts.mean(axis=0)
    m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), -45, 1.0)     # clockwise as displayed
    tilted = cv2.warpAffine(frame, m, (640, 480), borderValue=90)
    det = HaarDetector()
    sq = square_from_points(pts)                      # the face's square, upright: the same centre and side
    assert len(detect_near(det, tilted, sq, as_squares)) == 0
    crop_turn = np.radians(45) - UPRIGHT_ZONE         # what `square_along_face` cuts such a face at
    found = detect_near(det, tilted, np.append(sq, crop_turn).astype(np.float32), as_squares)
    assert len(found) == 1 and found[0, 3] == np.float32(crop_turn)
    upright = detect_near(det, frame, sq, as_squares)[0]         # where it is found untilted, turned with the frame
    assert np.hypot(*(found[0, :2] - m @ [upright[0], upright[1], 1])) < 0.05 * sq[2]
    assert abs(found[0, 2] / upright[2] - 1) < 0.1


@pytest.mark.parametrize("code", [0, 1, 2])      # cv2.ROTATE_90_CLOCKWISE, ROTATE_180, ROTATE_90_COUNTERCLOCKWISE
def test_a_face_on_its_side_or_upside_down_is_found_and_cut_upright(data_dir, code):
    """A frame turned a quarter either way or a half (a clip filmed sideways that lost its
    rotation tag): the upright cascade finds no face; `detect_turned` finds it as a square whose
    crop, cut turned by its turn, is the upright face the network was trained on: the same pixels
    as the untouched frame's crop (mean difference under 1 grey level of 255)."""
    import cv2

    from facetracks.models.crop import CropSpec, crop_matrices, square_from_points, warp_crop
    from facetracks.pipeline.detect import detect_turned
    from facetracks.pipeline.tracking import square_iou
    s = next(x for x in load_split(data_dir, "identity", "test", limit=20) if max(x.gray.shape) <= 240)
    frame = np.full((360, 640), 90, np.uint8)
    frame[60:60 + s.gray.shape[0], 300:300 + s.gray.shape[1]] = s.gray
    det = HaarDetector()
    turned = cv2.rotate(frame, code)
    assert len(det.detect(turned)) == 0 and len(det.detect(frame)) == 1
    found = detect_turned(det, turned, as_squares)
    assert len(found) == 1
    spec = CropSpec(64, 1.35)
    upright = as_squares(det.detect(frame)[:, :4])[0]
    a = warp_crop(frame, crop_matrices(upright, spec)[0], spec).astype(np.float32)
    b = warp_crop(turned, crop_matrices(found[0], spec)[0], spec).astype(np.float32)
    assert np.abs(a - b).mean() < 1.0
    assert len(detect_turned(det, np.full((360, 640), 90, np.uint8), as_squares)) == 0


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
    assert len(detect_near(det, frame, old, as_squares)) == 0
    assert len(detect_near(det, frame, old, as_squares, reach=near_reach(9))) == 1
