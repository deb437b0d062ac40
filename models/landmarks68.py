"""The 68-point (iBUG 300-W) layout: index groups, named anchors, contour lines and the mirror permutation.

Everything that knows which index is which lives here, so training (flip augmentation, per-region
metrics), rendering (contour lines, filter anchors) and evaluation cannot disagree.

Left and right are always the **subject's**, as iBUG names them: the right eye (36-41) is the one
on the image's left in an upright, unmirrored frontal view.
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

RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)

# Named anchors (the points filters and metrics hold on to).
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 36, 45           # their distance normalises NME and the score
RIGHT_BROW_OUTER, LEFT_BROW_OUTER = 17, 26
BROWS_MIDDLE = range(19, 25)                        # the middle of both brows, over the nose bridge
RIGHT_NOSTRIL, LEFT_NOSTRIL = 31, 35               # outer edges of the nostrils
NOSE_BASE = 33                                      # below the nose tip, between the nostrils
RIGHT_MOUTH_CORNER, LEFT_MOUTH_CORNER = 48, 54
UPPER_LIP_TOP = 51

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


def interocular(points: np.ndarray) -> np.ndarray:
    """Outer-eye-corner distance of (..., 68, 2 or 3) points: the unit of NME, jitter and the score."""
    return np.linalg.norm(points[..., LEFT_EYE_OUTER, :] - points[..., RIGHT_EYE_OUTER, :], axis=-1)
