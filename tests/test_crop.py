"""The crop contract (models/crop.py): image <-> crop coordinates, squares from points and boxes."""
import numpy as np

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
