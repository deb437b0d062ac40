"""Head pose from 68 points: the generic 3-D face (models/shape.py) fitted with cv2.solvePnP.

Conventions (degrees; the subject's left and right; a face looking straight into the camera is
0, 0, 0, the training faces' average orientation):
- yaw > 0: the subject turns to their left, the nose moves towards image right;
- pitch > 0: the subject looks up, the nose moves up in the image;
- roll > 0: the head tilts clockwise as seen in the image (the top of the head towards image
  right, the subject's left shoulder).
A horizontal mirror of the image negates yaw and roll and keeps pitch. The angles are those of
R = Rz(roll) Ry(-yaw) Rx(-pitch) taking the 3-D face's axes (x right, y down, z away from the
camera) to the camera's. The camera is a pinhole with focal length max(width, height) pixels
(about 53 degrees across the long side), centred in the frame, no distortion: a guess, but the
angles change by a degree or two over any reasonable field of view.

Only the points that move rigidly with the skull are fitted: brows, nose, eyes and the mouth
corners. The jaw line is a silhouette that slides round the face as it turns, and the lips and
chin move with speech.
"""
from __future__ import annotations

import cv2
import numpy as np

from .shape import load_shape_model

RIGID_POINTS = np.r_[17:48, 48, 54]
REFINE = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 5, 1e-6)   # LM steps after SQPnP


def camera_matrix(frame_size: tuple[int, int]) -> np.ndarray:
    w, h = frame_size
    f = float(max(w, h))
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], np.float64)


def angles_from_rotation(rot: np.ndarray) -> np.ndarray:
    """3x3 rotation -> (yaw, pitch, roll) degrees in the conventions above."""
    beta = np.arcsin(np.clip(-rot[2, 0], -1, 1))          # R = Rz(g) Ry(b) Rx(a)
    alpha = np.arctan2(rot[2, 1], rot[2, 2])
    gamma = np.arctan2(rot[1, 0], rot[0, 0])
    return np.degrees([-beta, -alpha, gamma])


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The inverse of `angles_from_rotation` (for tests and synthetic faces)."""
    a, b, g = np.radians([-pitch, -yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_pose(points: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """(N, 68, 2) image points of one frame size -> (N, 3) float32 yaw, pitch, roll in degrees
    (NaN for a row of NaN points, as on rows without a face)."""
    pts = np.asarray(points, np.float64).reshape(-1, 68, 2)
    out = np.full((len(pts), 3), np.nan, np.float32)
    obj = load_shape_model().template_3d[RIGID_POINTS].astype(np.float64)
    cam = camera_matrix(frame_size)
    for i in np.flatnonzero(np.isfinite(pts).all(axis=(1, 2))):
        img = pts[i, RIGID_POINTS]
        ok, rvec, tvec = cv2.solvePnP(obj, img, cam, None, flags=cv2.SOLVEPNP_SQPNP)
        if not ok:
            continue
        # SQPnP minimises an object-space error; one Levenberg-Marquardt refinement from it
        # minimises the reprojection error in pixels, what the points actually measure
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, cam, None, rvec, tvec, REFINE)
        out[i] = angles_from_rotation(cv2.Rodrigues(rvec)[0])
    return out
