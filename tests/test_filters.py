"""Filters on synthetic frames: placement follows the face, clipping at the edge, masks."""
import cv2
import numpy as np
import pytest

from facetracks.pipeline.filters import FILTERS, face_mask, get_filter, place, sunglasses


def face_points(cx=100.0, cy=100.0, scale=1.0, angle_deg=0.0):
    """A crude but correctly ordered 68-point face (mean-shape-like layout) centred at (cx, cy)."""
    jaw = [(-40 + 5 * i, 10 + 30 * np.sin(np.pi * i / 16)) for i in range(17)]
    brows = [(-35 + 7 * i, -35) for i in range(5)] + [(5 + 7 * i, -35) for i in range(5)]
    nose = [(0, -25 + 8 * i) for i in range(4)] + [(-10 + 5 * i, 10) for i in range(5)]
    eye = lambda x0: [(x0 + 4 * i, -20 - (i in (1, 2)) * 3 + (i in (4, 5)) * 3) for i in range(6)]
    mouth = [(-20 + 40 * i / 11, 30) for i in range(12)] + [(-12 + 24 * i / 7, 30) for i in range(8)]
    pts = np.array(jaw + brows + nose + eye(-30) + eye(10) + mouth, np.float64) * scale
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (pts @ rot.T + [cx, cy]).astype(np.float32)


def test_points_helper_is_68():
    assert face_points().shape == (68, 2)


def test_sunglasses_tilt_with_the_head():
    def dark_centroid(angle):
        img = np.full((200, 200, 3), 255, np.uint8)
        place(img, sunglasses(), face_points(angle_deg=angle))
        ys, xs = np.nonzero(img.max(axis=2) < 60)
        left, right = xs < 100, xs >= 100
        return np.polyfit(xs, ys, 1)[0], left.sum() > 0 and right.sum() > 0
    slope0, both0 = dark_centroid(0)
    slope20, _ = dark_centroid(20)
    assert both0 and abs(slope0) < 0.05 and slope20 > 0.2      # y grows with x when tilted clockwise


@pytest.mark.parametrize("name", list(FILTERS))
def test_filters_clip_at_the_frame_edge_without_error(name):
    img = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)        # texture: blur shows
    out = get_filter(name)(img.copy(), [face_points(cx=10, cy=60, scale=1.5)])     # partly outside
    assert out.shape == img.shape and (out != img).any()


def test_face_off_frame_entirely_is_a_no_op():
    img = np.full((120, 160, 3), 200, np.uint8)
    out = get_filter("sunglasses")(img.copy(), [face_points(cx=-500, cy=-500)])
    assert np.array_equal(out, img)


def test_face_mask_covers_forehead_and_chin_not_background():
    pts = face_points()
    m = face_mask((200, 200), pts) > 0
    assert m[int(pts[:, 1].min()) - 15, 100] and m[int(pts[8, 1]) - 2, 100]
    assert not m[5, 5] and not m[195, 195]


@pytest.mark.parametrize("face_px", [40, 270, 900])
def test_blur_hides_the_face_at_any_size(face_px):
    """The face's fine detail is gone (the Laplacian's variance, 270 on this texture, drops by
    hundreds of times or more) at any face size, from a thumbnail's face to a photo's."""
    size = int(face_px * 1.6)
    img = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 255, (size, size, 3), np.uint8), (0, 0), 1.0)
    pts = face_points(cx=size / 2, cy=size / 2, scale=face_px / 80)      # face_points is 80 px wide
    out = get_filter("blur")(img.copy(), [pts])
    mask = face_mask(img.shape, pts)
    inside = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0          # off the mask's own edge
    detail = lambda a: cv2.Laplacian(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.CV_64F)[inside].var()
    assert detail(out) < detail(img) / 200
    assert np.array_equal(out[mask == 0], img[mask == 0])              # the rest untouched


def test_the_blur_works_on_a_copy_of_bounded_size():
    """The blur runs on the face region shrunk to at most BLUR_SIDE px a side: a Gaussian of a sixth
    of the face's size costs the cube of that size at full size (2 s a 1080p frame with a 600 px
    face, minutes for a photo). A region smaller than that is blurred as it is, never enlarged."""
    from facetracks.pipeline.filters import BLUR_SIDE, blur_size
    assert max(blur_size(8000, 6000)) <= BLUR_SIDE and max(blur_size(1, 6000)) <= BLUR_SIDE
    assert blur_size(1, 6000)[0] >= 1
    assert blur_size(40, 30) == (40, 30)


def test_the_overlay_filter_without_an_image_says_what_it_needs():
    """The help lists `overlay`; without the image it was "unknown filter 'overlay'"."""
    with pytest.raises(ValueError, match="the overlay filter needs --overlay PNG"):
        get_filter("overlay")
