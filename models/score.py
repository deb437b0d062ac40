"""The landmark score: one number per face saying whether its 68 points can be trusted.

Signs of a wrong answer, measured on every face at no extra network cost:

- disagreement with the mirrored twin: the last pass's crop, mirrored, read again (`flip`, or
  `flip_last` in the fast profile), mean point distance in inter-ocular units;
- disagreement with the pass before (`refine`): the points predicted from the detector's square
  against those from the square around the first answer. A real, near-frontal face gives nearly
  equal answers both ways; a crop the network cannot read (no face, half a face, a face upside
  down or at the wrong scale) gives answers that move with the crop;
- shape distance: how far the points, with position, size and in-plane rotation taken out, lie
  from the identity-train faces' shapes (models/shape.py; about 1 for a typical face);
- contrast: the standard deviation of the grey levels inside the face square of the last pass's
  crop. OpenCV's cascade rejects every window flatter than about 10 grey levels, so no face it can
  find is; a square under half that (MIN_CONTRAST) is a flat wall or a black border, which a
  heatmap head reads as a mean face, symmetric and well shaped (the two-level xs model scored
  such crops up to 0.39). Measured: true faces 12 and up, every shared clip's detection 9 and up.

score = exp(-(mirror + passes) / DISAGREEMENT_SCALE) * exp(-max(0, shape_distance - SHAPE_FREE) / SHAPE_SCALE)
in [0, 1] (a disagreement that was not measured counts 0; neither measured: NaN), and 0 where the
contrast is under MIN_CONTRAST. Each
disagreement alone let false faces through at any threshold that keeps 97 % of true faces; their
sum let none through on the calibration sets (docs/score/build_eval.py, train identities). The
shape factor is 1 for every true face measured (their largest distance was 1.28) and only lowers
crops that are already wrong; it is a guard for points strewn where no face shape fits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .landmarks68 import interocular
from .shape import load_shape_model

DISAGREEMENT_SCALE = 0.05    # inter-ocular units: 0.05 of disagreement -> factor 1/e
SHAPE_FREE = 1.5             # shape distances up to this cost nothing (true faces measured: at most 1.28)
SHAPE_SCALE = 1.0            # ... and each unit past it a factor 1/e
MIN_CONTRAST = 5.0           # grey levels (0-255) of the face square: half the cascade's floor


@dataclass
class ScoreParts:
    mirror: np.ndarray           # (N,) disagreement with the mirrored twin, inter-ocular units; NaN without `flip`
    passes: np.ndarray           # (N,) disagreement with the pass before; NaN without `refine`, and for a settled face
    shape_distance: np.ndarray   # (N,)
    contrast: np.ndarray         # (N,) grey-level standard deviation of the face square; NaN: not measured
    score: np.ndarray            # (N,) float32 in [0, 1]; NaN when neither disagreement was measured


def _disagreement(pts: np.ndarray, other: np.ndarray | None) -> np.ndarray:
    if other is None:
        return np.full(len(pts), np.nan)
    iod = interocular(pts) + 1e-6
    return np.linalg.norm(pts - other, axis=-1).mean(axis=-1) / iod


def score_parts(points: np.ndarray, mirrored: np.ndarray | None, previous: np.ndarray | None,
                contrast: np.ndarray | None = None) -> ScoreParts:
    """(N, 68, 2) final points, their mirrored twin and the previous pass's points (None: not run),
    and the last crops' contrast (None: not measured)."""
    pts = np.asarray(points, np.float64)
    shape = load_shape_model().shape_distance(pts)
    mirror, passes = _disagreement(pts, mirrored), _disagreement(pts, previous)
    contrast = np.full(len(pts), np.nan, np.float32) if contrast is None else np.asarray(contrast, np.float32)
    return ScoreParts(mirror.astype(np.float32), passes.astype(np.float32), shape, contrast,
                      landmark_score(mirror, passes, shape, contrast))


def is_kept(score: np.ndarray, min_score: float) -> np.ndarray:
    """The faces a threshold keeps: a NaN score (not measured: one pass, no mirror) never drops one."""
    return ~(np.asarray(score) < min_score)


def landmark_score(mirror: np.ndarray, passes: np.ndarray, shape_distance: np.ndarray,
                   contrast: np.ndarray | None = None) -> np.ndarray:
    """exp(-(sum of the disagreements measured) / DISAGREEMENT_SCALE), times the shape penalty; 0
    for a face square flatter than MIN_CONTRAST (a contrast not measured, NaN, does not count)."""
    mirror, passes = np.asarray(mirror, np.float64), np.asarray(passes, np.float64)
    dis = np.where(np.isnan(mirror) & np.isnan(passes), np.nan, np.nan_to_num(mirror) + np.nan_to_num(passes))
    penalty = np.maximum(0.0, np.asarray(shape_distance, np.float64) - SHAPE_FREE) / SHAPE_SCALE
    score = np.exp(-dis / DISAGREEMENT_SCALE - penalty)
    if contrast is not None:
        score = np.where(np.asarray(contrast) < MIN_CONTRAST, 0.0, score)
    return score.astype(np.float32)
