"""The 68-point (iBUG 300-W) layout: index groups, contour lines and the mirror permutation.

Everything that knows which index is which lives here, so training (flip augmentation, per-region
metrics), rendering (contour lines, filter anchors) and evaluation cannot disagree.
"""
from __future__ import annotations

import numpy as np

NUM_POINTS = 68

REGIONS: dict[str, range] = {
    "jaw": range(0, 17),
    "brows": range(17, 27),
    "nose": range(27, 36),
    "eyes": range(36, 48),
    "mouth": range(48, 68),
}

# Outer eye corners: the inter-ocular distance that normalises NME.
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 36, 45
RIGHT_EYE = range(36, 42)  # subject's right eye (image left)
LEFT_EYE = range(42, 48)

# Polylines for drawing: (start, stop, closed).
CONTOURS: tuple[tuple[int, int, bool], ...] = (
    (0, 17, False), (17, 22, False), (22, 27, False), (27, 31, False), (31, 36, False),
    (36, 42, True), (42, 48, True), (48, 60, True), (60, 68, True),
)


def _flip_permutation() -> np.ndarray:
    """Index map for a horizontal mirror: point i of the mirrored face is point perm[i] of the original."""
    pairs = [(i, 16 - i) for i in range(8)]                       # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]                 # brows
    pairs += [(31, 35), (32, 34)]                                 # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (60, 64), (61, 63), (67, 65), (59, 55), (58, 56)]  # mouth
    perm = np.arange(NUM_POINTS)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


FLIP_PERM: np.ndarray = _flip_permutation()
