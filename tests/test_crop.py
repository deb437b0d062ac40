"""The crop contract (models/crop.py): image <-> crop coordinates, squares from points and boxes."""
import numpy as np
import pytest

from facetracks.models.crop import BoxCalibration, CropSpec, crop_matrix, from_crop_coords, square_from_box, \
    square_from_points, to_crop_coords


def test_crop_contract_round_trip():
    spec = CropSpec(112, 1.3)
    m = crop_matrix(np.array([100, 80, 50]), spec)
    pts = np.random.default_rng(2).uniform(50, 150, (68, 2)).astype(np.float32)
    np.testing.assert_allclose(from_crop_coords(to_crop_coords(pts, m, spec), m, spec), pts, atol=1e-3)


def test_square_centre_lands_on_the_crop_centre_and_its_side_spans_one_over_expand():
    spec = CropSpec(64, 1.35)
    m = crop_matrix(np.array([100, 80, 50]), spec)
    c = to_crop_coords(np.array([[100, 80], [125, 80]], np.float32), m, spec)
    np.testing.assert_allclose(c, [[0, 0], [1 / 1.35, 0]], atol=1e-6)


def test_squares_from_points_and_from_calibrated_boxes():
    pts = np.array([[10, 20], [50, 30], [30, 80]], np.float32)
    np.testing.assert_allclose(square_from_points(pts), [30, 50, 60])
    sq = square_from_box(np.array([[10, 20, 40, 40]]), BoxCalibration(dx=0.1, dy=0.2, scale=0.5))
    np.testing.assert_allclose(sq, [[34, 48, 20]])


def turned_face(deg: float) -> np.ndarray:
    """The shape prior's mean face (level eyes), 200 px, turned `deg` clockwise as displayed about (320, 240)."""
    from facetracks.models.shape import load_shape_model
    base = load_shape_model().mean.astype(np.float64) * 100
    eyes = base[42:48].mean(axis=0) - base[36:42].mean(axis=0)
    a = np.radians(deg) - np.arctan2(eyes[1], eyes[0])          # the mean face's eyes are 6 degrees off level
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])      # y down: clockwise on screen
    return (base @ rot.T + [320, 240]).astype(np.float32)


def test_a_face_within_the_upright_zone_is_cropped_as_before_and_one_past_it_turned_by_the_excess():
    """`square_along_face`: within 15 degrees of level eyes, the upright square of
    `square_from_points` bit for bit, turn 0 (the crop the network was trained on, and every
    crop before turned squares). At 45 degrees the crop turns by 30: in it the eyes tilt by the 15
    the zone leaves, and the points' box, taken in that turned frame, is centred in the crop and
    spans 1 / expand of it, as an upright face's does."""
    from facetracks.models.crop import UPRIGHT_ZONE, crop_matrices, square_along_face
    spec = CropSpec(64, 1.35)
    for deg in (0, 10, -14):
        pts = turned_face(deg)
        got = square_along_face(pts[None])[0]
        assert got[3] == 0 and (got[:3] == square_from_points(pts)).all()
        assert (crop_matrices(got[None], spec) == crop_matrices(got[None, :3], spec)).all()
    # past the zone: turned by the excess (45: by 30; -60: by -45, though -90 is nearer)
    for deg, want in ((45, 30), (-60, -45)):
        pts = turned_face(deg)
        sq = square_along_face(pts[None])[0]
        assert abs(sq[3] - np.radians(want)) < np.radians(1) and abs(np.radians(abs(deg - want))) == pytest.approx(UPRIGHT_ZONE)
        c = to_crop_coords(pts, crop_matrices(sq[None], spec)[0], spec)
        eyes = c[42:48].mean(axis=0) - c[36:42].mean(axis=0)
        assert abs(abs(np.degrees(np.arctan2(eyes[1], eyes[0]))) - 15) < 1
        lo, hi = c.min(axis=0), c.max(axis=0)              # the box in the crop's own (turned) frame
        np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-4)
        assert abs((hi - lo).max() - 2 / 1.35) < 1e-4


def test_a_face_on_its_side_or_upside_down_is_cut_by_that_quarter_turn_and_read_at_its_own_tilt():
    """The zone is about the nearest quarter turn: a face lying at 90 degrees, or upside down, is
    cut turned by exactly that, so the crop holds it as level as an upright face's (the eyes at
    the face's own tilt from the quarter: 0 here, -10 at -100); before, it was cut 15 degrees short.
    Past that quarter's zone the rule about upright holds (at 120: turned by 105)."""
    from facetracks.models.crop import crop_matrices, square_along_face
    spec = CropSpec(64, 1.35)
    for deg, turn, left in ((90, 90, 0), (180, 180, 0), (-100, -90, -10), (-180, -180, 0), (120, 105, 15)):
        pts = turned_face(deg)
        sq = square_along_face(pts[None])[0]
        assert np.cos(sq[3] - np.radians(turn)) > np.cos(np.radians(0.5)), (deg, np.degrees(sq[3]))
        c = to_crop_coords(pts, crop_matrices(sq[None], spec)[0], spec)
        eyes = c[42:48].mean(axis=0) - c[36:42].mean(axis=0)
        assert abs(np.degrees(np.arctan2(eyes[1], eyes[0])) - left) < 0.5, (deg, eyes)
