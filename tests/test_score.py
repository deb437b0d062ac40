"""The landmark score: true face crops score above crops whose points cannot be right (moved off
the face, turned upside down), for both profiles' predictors and at their --min-score; the shape
prior knows a face's shape from a jumble of the same points."""
import numpy as np
import pytest

from facetracks.models.crop import square_from_points
from facetracks.models.inference import LandmarkPredictor
from facetracks.models.score import landmark_score, score_parts
from facetracks.models.shape import load_shape_model
from facetracks.pipeline.profiles import get_profile
from facetracks.training.data import list_split, load_split


@pytest.mark.parametrize("profile", ["accurate", "fast"])
def test_score_keeps_true_crops_and_drops_shifted_and_upside_down_ones(data_dir, profile):
    prof = get_profile(profile)
    pred = LandmarkPredictor.load(prof.model, **prof.predictor)
    s = load_split(data_dir, "identity", "test", limit=24)
    grays = [x.gray for x in s]
    squares = square_from_points(np.stack([x.points for x in s]))
    _, face = pred.predict_with_score(grays, squares)
    shifted = squares + np.stack([0.75 * squares[:, 2], np.zeros(len(s)), np.zeros(len(s))], axis=1)
    _, moved = pred.predict_with_score(grays, shifted)
    flipped = [np.ascontiguousarray(g[::-1]) for g in grays]
    up = squares.copy()
    up[:, 1] = np.array([g.shape[0] for g in grays]) - 1 - up[:, 1]
    _, upside = pred.predict_with_score(flipped, up)
    thr = prof.follow["min_score"]
    assert (face >= thr).mean() >= 0.9
    assert (moved >= thr).mean() <= 0.1 and (upside >= thr).mean() <= 0.1
    assert np.median(face) > max(np.median(moved), np.median(upside)) + 0.3


def test_shape_distance_tells_a_face_from_a_jumble(data_dir):
    pts = np.stack([p for _, _, p in list_split(data_dir, "identity", "test")])
    m = load_shape_model()
    real = m.shape_distance(pts)
    rng = np.random.default_rng(0)
    jumbled = np.stack([p[rng.permutation(68)] for p in pts[:50]])
    assert np.median(real) < 1.2 and np.percentile(real, 99) < 2.0
    assert m.shape_distance(jumbled).min() > 3 * np.median(real)


def test_score_parts_without_a_second_opinion_is_null():
    pts = np.tile(load_shape_model().mean[None] * 100 + 200, (3, 1, 1))
    parts = score_parts(pts, None, None)
    assert np.isnan(parts.score).all() and parts.shape_distance.shape == (3,)
    same = score_parts(pts, pts, pts)
    np.testing.assert_allclose(same.score, 1.0, atol=1e-5)
    assert landmark_score(np.array([0.01]), np.array([0.2]), np.array([0.5])) < landmark_score(
        np.array([0.01]), np.array([0.01]), np.array([0.5]))


def test_evaluate_counts_kept_and_false_faces():
    from facetracks.training.evaluate import kept_figures
    per = np.array([0.03, 0.04, 0.5, 0.25, 0.05])
    scores = np.array([0.9, 0.2, 0.1, 0.6, np.nan], np.float32)     # NaN: not measured, kept
    f = kept_figures(per, scores, 0.45, images=10)
    assert f["faces_kept"] == 0.3 and f["false_faces"] == 1 and f["false_faces_dropped"] == 1
    assert abs(f["nme_mean_kept"] - (0.03 + 0.25 + 0.05) / 3) < 1e-9 and abs(f["false_face_share"] - 1 / 3) < 1e-9


def test_a_flat_square_is_no_face_whatever_the_points(data_dir):
    """A crop of a flat wall or a black border gives a heatmap head a mean face, symmetric and
    well shaped; the score reads the face square's contrast and drops it. A real face, even dim,
    is far above the floor (the cascade needs about 10 grey levels to find one)."""
    from facetracks.models.score import MIN_CONTRAST
    pred = LandmarkPredictor.load("ft68-resnet-xs-hm", refine=1, flip=False, flip_last=True)
    border = np.zeros((200, 200), np.uint8)
    border[:, 190:] = 90                     # a black square with an edge outside its face square
    _, parts = pred.predict_with_parts([border], np.array([[100, 100, 80]], np.float32))
    assert parts.contrast[0] < MIN_CONTRAST and parts.score[0] == 0
    s = load_split(data_dir, "identity", "test", limit=10)
    dim = [x.gray // 4 for x in s]           # a quarter of the light
    _, parts = pred.predict_with_parts(dim, square_from_points(np.stack([x.points for x in s])))
    assert (parts.contrast >= MIN_CONTRAST).all() and (parts.score > 0).all()
