"""Landmark accuracy: NME normalised by the outer-eye-corner distance (points 36 and 45)."""
from __future__ import annotations

import numpy as np

from models.landmarks68 import LEFT_EYE_OUTER, REGIONS, RIGHT_EYE_OUTER

FAILURE_NME = 0.10


def interocular(gt: np.ndarray) -> np.ndarray:
    return np.linalg.norm(gt[..., LEFT_EYE_OUTER, :] - gt[..., RIGHT_EYE_OUTER, :], axis=-1)


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
