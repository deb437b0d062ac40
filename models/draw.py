"""Drawing the 68 points and their contour lines (for the `landmarks` filter, figures and grids)."""
from __future__ import annotations

import cv2
import numpy as np

from .landmarks68 import CONTOURS


def draw_landmarks(bgr: np.ndarray, points: np.ndarray, color: tuple[int, int, int] = (0, 255, 0),
                   radius: int = 1, lines: bool = True, thickness: int = 1) -> np.ndarray:
    """Draw in place with sub-pixel accuracy (4 fractional bits); returns the image."""
    shift = 4
    p = np.round(np.asarray(points, np.float64) * (1 << shift)).astype(np.int32)
    if lines:
        for a, b, closed in CONTOURS:
            cv2.polylines(bgr, [p[a:b]], closed, color, thickness, cv2.LINE_AA, shift)
    for x, y in p:
        cv2.circle(bgr, (int(x), int(y)), radius << shift, color, -1, cv2.LINE_AA, shift)
    return bgr
