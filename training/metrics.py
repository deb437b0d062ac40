"""Landmark accuracy: NME normalised by the outer-eye-corner distance (points 36 and 45)."""
from __future__ import annotations

import numpy as np

from facetracks.models.landmarks68 import REGIONS, interocular

FAILURE_NME = 0.10


def nme(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, 68, 2) predictions and truth -> (N,) mean point error / inter-ocular distance."""
    err = np.linalg.norm(pred - gt, axis=-1)
    return err.mean(axis=-1) / interocular(gt)


def summarize(pred: np.ndarray, gt: np.ndarray) -> dict:
    """Mean, median, failure rate, per-region NME, and the per-image values for a CED curve."""
    per = nme(pred, gt)
    err = np.linalg.norm(pred - gt, axis=-1) / interocular(gt)[:, None]
    return {
        "n": int(len(per)),
        "nme_mean": float(per.mean()) if len(per) else float("nan"),
        "nme_median": float(np.median(per)) if len(per) else float("nan"),
        "failure_rate": float((per > FAILURE_NME).mean()) if len(per) else float("nan"),
        "region_nme": {k: float(err[:, list(r)].mean()) for k, r in REGIONS.items()} if len(per) else {},
        "per_image": per.tolist(),
    }


def jitter(track_id: np.ndarray, frame_index: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Shimmer of tracked points, one value per face and frame that has both neighbours in its track:
    |p_t - (p_{t-1} + p_{t+1}) / 2| averaged over the 68 points, over the outer-eye-corner distance
    of frame t. On a still face this is pure noise; on smooth true motion it is ~0 (a constant
    velocity cancels), so it measures shimmer, not movement. Rows with a negative `track_id` (no
    face) are ignored. A clip's figure is the median of these (`clip_jitter`)."""
    tid, fi = np.asarray(track_id), np.asarray(frame_index)
    order = np.lexsort((fi, tid))
    order = order[tid[order] >= 0]
    t, f, p = tid[order], fi[order], np.asarray(points, np.float64)[order]
    if len(order) < 3:
        return np.zeros(0)
    mid = (t[:-2] == t[1:-1]) & (t[2:] == t[1:-1]) & (f[1:-1] - f[:-2] == 1) & (f[2:] - f[1:-1] == 1)
    c = p[1:-1][mid]
    second = np.linalg.norm(c - (p[:-2][mid] + p[2:][mid]) / 2, axis=-1).mean(axis=-1)
    return second / interocular(c)


def clip_jitter(track_id: np.ndarray, frame_index: np.ndarray, points: np.ndarray) -> float:
    """Median jitter over a clip (NaN when no face has two neighbours)."""
    j = jitter(track_id, frame_index, points)
    return float(np.median(j)) if len(j) else float("nan")
