"""Head pose from 68 points: the generic 3-D face (models/shape.py) fitted to them, all faces at once.

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

import numpy as np

from .shape import load_shape_model

RIGID_POINTS = np.r_[17:48, 48, 54]
LM_STEPS = 10               # Levenberg-Marquardt steps from the weak-perspective start (8 converge on real tracks)


def camera_matrix(frame_size: tuple[int, int]) -> np.ndarray:
    w, h = frame_size
    f = float(max(w, h))
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], np.float64)


def angles_from_rotation(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotations -> (..., 3) (yaw, pitch, roll) degrees in the conventions above."""
    beta = np.arcsin(np.clip(-rot[..., 2, 0], -1, 1))          # R = Rz(g) Ry(b) Rx(a)
    alpha = np.arctan2(rot[..., 2, 1], rot[..., 2, 2])
    gamma = np.arctan2(rot[..., 1, 0], rot[..., 0, 0])
    return np.degrees(np.stack([-beta, -alpha, gamma], axis=-1))


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The inverse of `angles_from_rotation` (for tests and synthetic faces)."""
    a, b, g = np.radians([-pitch, -yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_pose(points: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """(N, 68, 2) image points of one frame size -> (N, 3) float32 yaw, pitch, roll in degrees
    (NaN for a row of NaN points, as on rows without a face).

    All faces are fitted at once, in numpy: a closed-form weak-perspective start, then
    Levenberg-Marquardt on the reprojection error in pixels, what the points actually measure.
    It replaced one cv2.solvePnP (SQPnP) and one cv2.solvePnPRefineLM per face, 0.12 ms a face,
    about a tenth of the `fast` profile's time per frame: a quarter of the time, the same angles
    (within 0.03 degrees on the shared clips; tests/test_pose.py holds it to OpenCV's fit).
    """
    pts = np.asarray(points, np.float64).reshape(-1, 68, 2)
    out = np.full((len(pts), 3), np.nan, np.float32)
    rows = np.flatnonzero(np.isfinite(pts).all(axis=(1, 2)))
    if not len(rows):
        return out
    obj = load_shape_model().template_3d[RIGID_POINTS].astype(np.float64)
    cam = camera_matrix(frame_size)
    img = (pts[rows][:, RIGID_POINTS] - cam[:2, 2]) / cam[0, 0]        # normalised image coordinates
    rot, t = _weak_perspective(obj, img)
    rot, _ = _refine(obj, img, rot, t)
    ok = np.isfinite(rot).all(axis=(1, 2))
    out[rows[ok]] = angles_from_rotation(rot[ok])
    return out


def _weak_perspective(obj: np.ndarray, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pose of a scaled orthographic camera, in closed form for all faces: the affine map from
    the centred 3-D points to the centred image points, its 2x3 part made the nearest pair of
    orthonormal rows (SVD), their cross product the third. The 3-D face is not flat (the nose),
    so the affine map is unique and the start sits in the basin of the perspective optimum."""
    centre = obj.mean(axis=0)
    mean = img.mean(axis=1)
    m = (img - mean[:, None]).transpose(0, 2, 1) @ np.linalg.pinv(obj - centre).T      # (N, 2, 3)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    q = u @ vt
    rot = np.concatenate([q, np.cross(q[:, 0], q[:, 1])[:, None]], axis=1)
    depth = 1 / np.maximum(s.mean(axis=1), 1e-12)
    return rot, np.concatenate([mean * depth[:, None], depth[:, None]], axis=1) - rot @ centre


def _project(obj: np.ndarray, rot: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotated points (N, 3, P) and their projections (N, 2, P), in normalised coordinates."""
    q = rot @ obj.T
    pc = q + t[:, :, None]
    return q, pc[:, :2] / pc[:, 2:]


def _refine(obj: np.ndarray, img: np.ndarray, rot: np.ndarray, t: np.ndarray,
            steps: int = LM_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Levenberg-Marquardt for N faces at once (normalised coordinates, so one damping fits any
    focal length): each step rotates by a small angle (the rotation's tangent space) and moves;
    a step that raises a face's error is undone and its damping raised. A face whose step has
    become negligible is done, so the later steps only work on the few that are not."""
    rot, t = rot.copy(), t.copy()
    target = img.transpose(0, 2, 1)                                   # (N, 2, P)
    lam = np.full(len(rot), 1e-3)
    q, uv = _project(obj, rot, t)
    cost = ((uv - target) ** 2).sum(axis=(1, 2))
    live = np.arange(len(rot))
    eye = np.eye(6)
    for _ in range(steps):
        if not len(live):
            break
        r, tt, qq, pp, tg, lm = rot[live], t[live], q[live], uv[live], target[live], lam[live]
        res = pp - tg
        iz = 1 / (qq[:, 2] + tt[:, 2:])
        x, y = pp[:, 0], pp[:, 1]
        qx, qy, qz = qq[:, 0], qq[:, 1], qq[:, 2]
        zero = np.zeros_like(iz)
        # d(projection)/d(small rotation, translation) per point: rows (n, 6, P) for u and for v
        ju = np.stack([-x * qy * iz, (qz + x * qx) * iz, -qy * iz, iz, zero, -x * iz], axis=1)
        jv = np.stack([-(qz + y * qy) * iz, y * qx * iz, qx * iz, zero, iz, -y * iz], axis=1)
        j = np.concatenate([ju, jv], axis=2)                          # (n, 6, 2P)
        h = j @ j.transpose(0, 2, 1)
        g = j @ np.concatenate([res[:, 0], res[:, 1]], axis=1)[:, :, None]
        damped = h + lm[:, None, None] * eye * np.diagonal(h, axis1=1, axis2=2)[:, None, :]
        step = -np.linalg.solve(damped, g)[..., 0]
        r2, t2 = _small_rotation(step[:, :3]) @ r, tt + step[:, 3:]
        q2, uv2 = _project(obj, r2, t2)
        cost2 = ((uv2 - tg) ** 2).sum(axis=(1, 2))
        better = cost2 <= cost[live]
        won = live[better]
        rot[won], t[won], q[won], uv[won], cost[won] = r2[better], t2[better], q2[better], uv2[better], cost2[better]
        lam[live] = np.where(better, lm / 10, lm * 10)
        # done: the step turned the head by under 1e-6 rad (2e-4 degrees) and moved it by under
        # a millionth of its distance (Gauss-Newton converges linearly on noisy points: ~8x a step)
        moved = np.maximum(np.abs(step[:, :3]).max(axis=1), np.abs(step[:, 3:]).max(axis=1) / np.abs(tt[:, 2]))
        live = live[~better | (moved > 1e-6)]
    return rot, t


def _small_rotation(w: np.ndarray) -> np.ndarray:
    """(N, 3) rotation vectors -> (N, 3, 3) rotations (Rodrigues' formula)."""
    theta = np.linalg.norm(w, axis=1)[:, None, None]
    z = np.zeros(len(w))
    k = np.stack([np.stack([z, -w[:, 2], w[:, 1]], -1), np.stack([w[:, 2], z, -w[:, 0]], -1),
                  np.stack([-w[:, 1], w[:, 0], z], -1)], axis=1)
    safe = np.where(theta < 1e-12, 1.0, theta)
    a = np.where(theta < 1e-12, 1.0, np.sin(safe) / safe)
    b = np.where(theta < 1e-12, 0.5, (1 - np.cos(safe)) / safe ** 2)
    return np.eye(3) + a * k + b * (k @ k)
