"""Detection that rescans only what changed (pipeline/change_scan.py), with OpenCV's cascade on
labelled faces pasted into still frames: the boxes a whole-frame scan gives, at a fraction of it."""
import numpy as np
import pytest

from facetracks.pipeline.change_scan import ChangeScan
from facetracks.pipeline.detect import HaarDetector
from facetracks.pipeline.tracking import box_iou
from facetracks.training.data import load_split


@pytest.fixture(scope="module")
def faces(data_dir):
    """Two detectable identity-test faces, small enough for two to fit a 640x480 frame side by side."""
    det = HaarDetector()
    out = [s.gray for s in load_split(data_dir, "identity", "test", limit=40)
           if max(s.gray.shape) <= 230 and len(det.detect(s.gray))]
    assert len(out) >= 2
    return out[:2]


def frame_with(faces_at: list[tuple[np.ndarray, tuple[int, int]]], size=(640, 480)) -> np.ndarray:
    frame = np.tile(np.linspace(40, 200, size[0], dtype=np.float32), (size[1], 1)).astype(np.uint8)
    for img, (x, y) in faces_at:
        frame[y:y + img.shape[0], x:x + img.shape[1]] = img
    return frame


def same_boxes(a: np.ndarray, b: np.ndarray, iou: float = 0.8) -> bool:
    """Every box of `a` has one of `b` at `iou` or more, and the counts agree."""
    return len(a) == len(b) and (len(a) == 0 or bool((box_iou(a[:, :4], b[:, :4]).max(axis=1) >= iou).all()))


def test_detect_in_finds_a_whole_frame_scans_face_at_the_frame_scale(faces):
    """A 1280x960 frame is scanned at 640 px: a rectangle of it is scanned at that same scale, and
    its boxes come back in the frame's pixels."""
    import cv2
    big = cv2.resize(frame_with([(faces[0], (60, 100))]), (1280, 960))
    det = HaarDetector()
    full = det.detect(big)
    assert len(full)
    x, y, w, h = full[0, :4].astype(int)
    part = det.detect_in(big, (x - 40, y - 40, x + w + 40, y + h + 40))
    assert same_boxes(full[:1], part[:1], 0.9)
    assert len(det.detect_in(big, (800, 0, 1280, 960))) == 0
    assert det.detect_in(big, (0, 0, 10, 10)).shape == (0, 5)            # smaller than the cascade's window


def test_an_unchanged_frame_is_not_scanned_again_and_a_new_face_is_found_in_what_changed(faces):
    det, scan = HaarDetector(scale_factor=1.15, min_neighbors=3), ChangeScan()
    one = frame_with([(faces[0], (20, 60))])
    first, _ = scan.detect(det, one, 0)
    assert len(first) and scan.stats.full == 1
    again, _ = scan.detect(det, one.copy(), 8)
    assert np.array_equal(again, first) and scan.stats.skipped == 1      # nothing read
    two = frame_with([(faces[0], (20, 60)), (faces[1], (380, 200))])
    both, _ = scan.detect(det, two, 16)
    assert scan.stats.partial == 1 and scan.stats.full == 1
    assert same_boxes(both, det.detect(two))                            # what a whole-frame scan finds
    assert scan.stats.scanned_share - 1 < 0.5                            # ... reading under half of it


def test_a_followed_face_is_left_to_the_tracker_and_its_old_box_is_not_handed_back(faces):
    """The followed face moved: its zone is not rescanned, so the round does not examine it, and
    its box from the last scan (where it was) is dropped; the other face, unchanged, stays."""
    det, scan = HaarDetector(scale_factor=1.15, min_neighbors=3), ChangeScan()
    f0 = frame_with([(faces[0], (20, 60)), (faces[1], (380, 200))])
    boxes, _ = scan.detect(det, f0, 0)
    assert len(boxes) == 2
    h, w = faces[0].shape                          # the left face, followed: a zone over its whole image
    square = np.array([[26 + w / 2, 60 + h / 2, 0.6 * max(h, w)]], np.float32)
    moved = frame_with([(faces[0], (26, 60)), (faces[1], (380, 200))])
    after, examined = scan.detect(det, moved, 8, skip=square)
    assert scan.stats.skipped == 1 and examined.tolist() == [False]
    assert len(after) == 1 and after[0, 0] > 300
    full, examined = scan.detect(det, moved, 200, skip=square)           # past full_every: all of it
    assert scan.stats.full == 2 and examined.tolist() == [True] and len(full) == 2


def test_a_detector_that_cannot_scan_a_rectangle_scans_the_whole_frame_or_nothing(faces):
    """The torch cascade has no `detect_in`: a change anywhere outside the followed faces costs a
    whole-frame scan, and a round with no change none, with the last scan's boxes."""
    class Whole:                     # OpenCV's cascade without its rectangle scan
        calls = 0

        def __init__(self):
            self.det = HaarDetector(scale_factor=1.15, min_neighbors=3)

        def detect(self, gray):
            Whole.calls += 1
            return self.det.detect(gray)

    scan, det = ChangeScan(), Whole()
    one = frame_with([(faces[0], (20, 60))])
    first, _ = scan.detect(det, one, 0)
    again, _ = scan.detect(det, one.copy(), 8)
    assert Whole.calls == 1 and scan.stats.skipped == 1 and np.array_equal(again, first)
    two = frame_with([(faces[0], (20, 60)), (faces[1], (380, 200))])
    both, _ = scan.detect(det, two, 16)
    assert Whole.calls == 2 and scan.stats.full == 2 and scan.stats.partial == 0
    assert same_boxes(both, det.det.detect(two)) and len(both) == 2


def test_a_followed_face_that_is_lost_where_it_stood_is_found_again(faces):
    """While a face is followed its old box is not handed back (it is where the face was); once it
    is not followed and has not moved, nothing changed there, and that box is what a scan finds."""
    det, scan = HaarDetector(scale_factor=1.15, min_neighbors=3), ChangeScan()
    f = frame_with([(faces[0], (20, 60))])
    (b,), _ = scan.detect(det, f, 0)
    square = np.array([[b[0] + b[2] / 2, b[1] + b[3] / 2, b[2]]], np.float32)
    followed, _ = scan.detect(det, f.copy(), 8, skip=square)
    assert len(followed) == 0
    lost, _ = scan.detect(det, f.copy(), 9)                  # its landmark score dropped: not skipped
    assert scan.stats.full == 1 and same_boxes(lost, det.detect(f))


def test_a_face_coming_in_beside_a_followed_face_is_scanned_whole(faces):
    """Face B comes in against followed face A, partly inside A's zone (where changes are not
    looked at): the rectangle reaches into the zone, so B is found as a whole-frame scan finds it."""
    det = HaarDetector(scale_factor=1.15, min_neighbors=3)
    a = frame_with([(faces[0], (20, 60))])
    (b,) = det.detect(a)[:1]
    square = np.array([[b[0] + b[2] / 2, b[1] + b[3] / 2, b[2]]], np.float32)
    found = 0
    for x in (120, 130, 140):
        scan = ChangeScan()
        scan.detect(det, a, 0)
        two = frame_with([(faces[0], (20, 60)), (faces[1], (x, 60))])
        whole = det.detect(two)
        new = whole[whole[:, 0] > b[0] + b[2] / 2]
        if not len(new):
            continue
        got, _ = scan.detect(det, two, 8, skip=square)
        assert scan.stats.partial == 1
        assert len(got) and (box_iou(new[:, :4], got[:, :4]).max(axis=1) >= 0.8).all(), x
        found += 1
    assert found == 3


def test_rectangles_grow_until_no_old_box_straddles_an_edge(faces):
    """A change beside one face grows its rectangle over that face's box, which then reaches the
    next face's box: that one is scanned whole too, not cut and lost."""
    det, scan = HaarDetector(scale_factor=1.15, min_neighbors=3), ChangeScan()
    f = frame_with([(faces[0], (20, 60)), (faces[1], (160, 60))])
    first, _ = scan.detect(det, f, 0)
    assert len(first) == 2
    g = f.copy()
    g[120:136, 32:48] = 255 - g[120:136, 32:48]         # a change left of the first face only
    again, _ = scan.detect(det, g, 8)
    assert scan.stats.partial == 1 and same_boxes(again, det.detect(g))


def test_frames_of_any_size_scan_like_the_whole_frame(faces):
    """Not a multiple of the 16 px cells, and larger than the detector's side (scanned at 640)."""
    import cv2
    det = HaarDetector(scale_factor=1.15, min_neighbors=3)
    base = cv2.resize(frame_with([(faces[0], (20, 60))]), (1281, 721))
    two = cv2.resize(frame_with([(faces[0], (20, 60)), (faces[1], (380, 200))]), (1281, 721))
    scan = ChangeScan()
    scan.detect(det, base, 0)
    got, _ = scan.detect(det, two, 8)
    assert scan.stats.partial == 1 and same_boxes(got, det.detect(two))
