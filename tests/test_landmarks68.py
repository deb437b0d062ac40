"""The left/right convention of models/landmarks68.py, checked against the annotated data."""
import numpy as np

from facetracks.models import landmarks68 as lm
from facetracks.training.data import load_split

PAIRS = [  # (subject's right, subject's left): the right one lies on the image's left in an upright photo
    (lm.RIGHT_EYE_OUTER, lm.LEFT_EYE_OUTER), (lm.RIGHT_BROW_OUTER, lm.LEFT_BROW_OUTER),
    (lm.RIGHT_NOSTRIL, lm.LEFT_NOSTRIL), (lm.RIGHT_MOUTH_CORNER, lm.LEFT_MOUTH_CORNER),
    (list(lm.RIGHT_EYE), list(lm.LEFT_EYE)),
]


def test_subject_right_is_image_left_in_the_annotations(data_dir):
    pts = np.stack([s.points for s in load_split(data_dir, "identity", "test", limit=40)])
    for right, left in PAIRS:
        rx = pts[:, right, 0].reshape(len(pts), -1).mean(axis=1)
        lx = pts[:, left, 0].reshape(len(pts), -1).mean(axis=1)
        assert (rx < lx).mean() >= 0.95, (right, left)


def test_anchors_are_mirror_pairs_and_centre_points_are_their_own_mirror():
    for right, left in PAIRS[:-1]:
        assert lm.FLIP_PERM[right] == left and lm.FLIP_PERM[left] == right
    assert lm.FLIP_PERM[lm.NOSE_BASE] == lm.NOSE_BASE and lm.FLIP_PERM[lm.UPPER_LIP_TOP] == lm.UPPER_LIP_TOP
    assert sorted(lm.FLIP_PERM[list(lm.BROWS_MIDDLE)]) == list(lm.BROWS_MIDDLE)
