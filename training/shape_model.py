"""The shape prior shipped beside the weights, built from the identity-train labels only.

Two things come out of the same 2,943 labelled shapes (test identities never seen):

- a 2-D point-distribution model: the Procrustes mean shape and its main modes of variation
  (PCA), which the landmark score uses to tell a face-like answer from a distorted one;
- a generic 3-D 68-point face for head pose: the YTF faces turn and nod, so the 2-D shapes of
  one rigid-ish face seen from many angles factor, as in Tomasi-Kanade structure from motion, into
  per-image cameras and one 3-D shape (rank-3 SVD, then the metric upgrade that makes each
  scaled-orthographic camera's rows orthogonal and of equal length). The result is made mirror
  symmetric, turned so that the training faces' average orientation is zero, its depth sign set so
  the nose points at the camera, and scaled to millimetres with a 90 mm outer-eye-corner width
  (the adult average; scale changes no angle).

Written as one small .npz (`models/weights/face_shape.npz`), shared by every model: it comes
from the labels, not from a network, so re-training a model does not touch it.
Run: python -m facetracks.training.shape_model DATA_DIR [OUT]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from facetracks.models.landmarks68 import FLIP_PERM, NUM_POINTS, interocular
from facetracks.models.shape import SHAPE_FILE, align_to, normalise

from .data import list_split

N_MODES = 12
EYE_WIDTH_MM = 90.0


def procrustes_mean(shapes: np.ndarray, rounds: int = 5) -> np.ndarray:
    """Generalised Procrustes: the mean of unit-size centred shapes, each aligned to it."""
    shapes = normalise(shapes)
    mean = shapes[0]
    for _ in range(rounds):
        mean = normalise(align_to(shapes, mean).mean(axis=0))
    return mean


def point_model(shapes: np.ndarray, n_modes: int = N_MODES) -> dict:
    """Mean shape, the first `n_modes` PCA modes (unit rows) and their variances, and the variance
    per coordinate left outside them (the residual's scale)."""
    mean = procrustes_mean(shapes)
    aligned = align_to(normalise(shapes), mean).reshape(len(shapes), -1) - mean.reshape(-1)
    _, s, vt = np.linalg.svd(aligned, full_matrices=False)
    var = s ** 2 / len(shapes)
    return {"mean": mean.astype(np.float32), "modes": vt[:n_modes].astype(np.float32),
            "mode_var": var[:n_modes].astype(np.float32),
            "residual_var": np.float32(var[n_modes:].sum() / (aligned.shape[1] - n_modes))}


def _sym_row(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Coefficients of a^T L b in the 6 entries of a symmetric 3x3 L."""
    return np.stack([a[:, 0] * b[:, 0], a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0], a[:, 0] * b[:, 2] + a[:, 2] * b[:, 0],
                     a[:, 1] * b[:, 1], a[:, 1] * b[:, 2] + a[:, 2] * b[:, 1], a[:, 2] * b[:, 2]], axis=1)


def template_3d(shapes: np.ndarray) -> np.ndarray:
    """(68, 3) face in millimetres, camera axes (x right, y down, z away from the camera) at the
    training faces' average orientation."""
    p = normalise(shapes).astype(np.float64)
    n = len(p)
    w = np.stack([p[..., 0], p[..., 1]], axis=1).reshape(2 * n, NUM_POINTS)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    cams, shape = u[:, :3] * np.sqrt(s[:3]), np.sqrt(s[:3])[:, None] * vt[:3]
    r1, r2 = cams[0::2], cams[1::2]
    a = np.concatenate([_sym_row(r1, r1) - _sym_row(r2, r2), _sym_row(r1, r2),
                        (_sym_row(r1, r1) + _sym_row(r2, r2)).sum(axis=0, keepdims=True)])
    l6 = np.linalg.lstsq(a, np.concatenate([np.zeros(2 * n), [2.0 * n]]), rcond=None)[0]
    gram = np.array([[l6[0], l6[1], l6[2]], [l6[1], l6[3], l6[4]], [l6[2], l6[4], l6[5]]])
    q = np.linalg.cholesky(gram)                   # fails loudly if the upgrade is not metric
    cams, shape = cams @ q, np.linalg.inv(q) @ shape
    rots = []
    for k in range(n):
        a1, a2 = cams[2 * k], cams[2 * k + 1]
        sc = (np.linalg.norm(a1) + np.linalg.norm(a2)) / 2
        rots.append(np.stack([a1 / sc, a2 / sc, np.cross(a1 / sc, a2 / sc)]))
    uu, _, vv = np.linalg.svd(np.mean(rots, axis=0))
    x = ((uu @ vv) @ shape).T                      # the average camera: identity
    if x[30, 2] > x[:, 2].mean():                  # depth sign: the nose tip (30) towards the camera
        x[:, 2] *= -1
    mirror = x[FLIP_PERM] * np.array([-1.0, 1.0, 1.0])
    x = (x + mirror) / 2
    x -= x.mean(axis=0)
    x *= EYE_WIDTH_MM / interocular(x)
    return x.astype(np.float32)


def build(data_dir: str) -> dict:
    shapes = np.stack([p for _, _, p in list_split(data_dir, "identity", "train")]).astype(np.float64)
    return {**point_model(shapes), "template_3d": template_3d(shapes), "n_shapes": np.int32(len(shapes))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_dir")
    ap.add_argument("out", nargs="?", default=SHAPE_FILE)
    args = ap.parse_args(argv)
    model = build(args.data_dir)
    tmp = args.out + ".tmp.npz"
    np.savez(tmp, **model)
    os.replace(tmp, args.out)
    print(f"{args.out}: {int(model['n_shapes'])} shapes, template eye width "
          f"{interocular(model['template_3d']):.1f} mm")


if __name__ == "__main__":
    main()
