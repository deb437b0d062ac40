import numpy as np
import pytest
import torch

from facetracks.models.crop import CropSpec, square_from_points
from facetracks.models.landmarks68 import FLIP_PERM
from facetracks.training.transforms import CropToInput, Normalize, flip, rotate, train_transforms


def marked(h=120, w=160, at=(40, 30)):
    """A black image with one bright pixel at `at` (x, y), and 68 points all at that pixel."""
    g = np.zeros((h, w), np.uint8)
    g[at[1], at[0]] = 255
    pts = np.tile(np.array(at, np.float32), (68, 1))
    return {"gray": g, "points": pts, "square": np.array([w / 2, h / 2, 60], np.float32)}


def brightest(g):
    y, x = np.unravel_index(np.argmax(g), g.shape)
    return np.array([x, y], np.float32)


def test_flip_permutation_is_an_involution_that_swaps_sides():
    assert np.array_equal(FLIP_PERM[FLIP_PERM], np.arange(68))
    assert FLIP_PERM[36] == 45 and FLIP_PERM[0] == 16 and FLIP_PERM[48] == 54 and FLIP_PERM[30] == 30


def test_flip_twice_is_identity():
    rng = np.random.default_rng(1)
    s = {"gray": rng.integers(0, 255, (50, 70), np.uint8), "points": rng.uniform(0, 50, (68, 2)).astype(np.float32),
         "square": np.array([30, 20, 25], np.float32), "det_square": np.array([28, 22, 30], np.float32)}
    once = flip(s)
    assert once["det_square"][0] == 70 - 1 - 28        # detector squares are mirrored too
    back = flip(once)
    np.testing.assert_allclose(back["det_square"], s["det_square"], atol=1e-5)
    assert np.array_equal(back["gray"], s["gray"])
    np.testing.assert_allclose(back["points"], s["points"], atol=1e-5)
    np.testing.assert_allclose(back["square"], s["square"], atol=1e-5)


def test_flip_moves_the_marked_pixel_with_its_point():
    out = flip(marked())
    np.testing.assert_allclose(out["points"][0], brightest(out["gray"]))


@pytest.mark.parametrize("angle", [-30, 10, 90])
def test_rotated_point_follows_the_marked_pixel(angle):
    s = marked()
    out = rotate(s, angle)
    assert np.abs(out["points"][0] - brightest(out["gray"])).max() <= 1.0
    assert not np.allclose(out["points"][0], s["points"][0])   # it really moved


def test_crop_to_input_keeps_the_marked_pixel_under_its_point():
    spec = CropSpec(112, 1.3)
    s = marked(at=(70, 55))
    out = Normalize(spec)(CropToInput(spec)(s))
    assert out["image"].shape == (112, 112) and out["image"].max() <= 1.0
    px = (out["target"][0] + 1) * 56
    assert np.abs(px - brightest(out["gray"])).max() <= 1.0
    assert np.abs(out["target"]).max() < 1.0


def test_training_pipeline_outputs_tensors_in_range():
    spec = CropSpec(112, 1.35)
    rng = np.random.default_rng(4)
    s = {"gray": rng.integers(0, 255, (200, 180), np.uint8),
         "points": rng.uniform(60, 140, (68, 2)).astype(np.float32), "det_square": np.array([100, 95, 80], np.float32)}
    s["square"] = square_from_points(s["points"])
    out = train_transforms(spec, seed=0)(s)
    assert tuple(out["image"].shape) == (1, 112, 112) and tuple(out["target"].shape) == (68, 2)
    assert float(out["image"].min()) >= 0 and float(out["image"].max()) <= 1
    assert float(out["target"].abs().max()) < 1.5
    assert out["image"].dtype == torch.float32 and out["target"].dtype == torch.float32   # ToTensor ran last
