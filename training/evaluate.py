"""Evaluate a landmark model on a labelled split, with ground-truth or detector squares.

With detector boxes, a face the detector misses has no prediction: `nme_mean` etc. are over found
faces, and `with_misses` counts every miss as a failure (NME = inf) for the second figure.

With `min_score`, the faces annotate would emit are those found with a score at or above it:
`faces_kept` (share of all images), `nme_mean_kept`, and the false faces, emitted faces whose NME
exceeds FALSE_FACE_NME (points on a cheek or the background, not a face's), as a count and as a
share of the emitted faces.
"""
from __future__ import annotations

import json
import os

import numpy as np

from facetracks.models.crop import square_from_points
from facetracks.models.inference import LandmarkPredictor
from facetracks.models.score import is_kept

from .boxes import Detector, detect_boxes
from .data import load_split
from .metrics import FAILURE_NME, summarize
from .plots import ced_plot, prediction_grid

FALSE_FACE_NME = 0.20


def evaluate(predictor: LandmarkPredictor, data_dir: str, split: str, boxes: str, detect: Detector | None,
             out_dir: str | None = None, part: str = "test", min_score: float | None = None) -> dict:
    samples = load_split(data_dir, split, part)
    gts = np.stack([s.points for s in samples])
    if boxes == "gt":
        found = np.ones(len(samples), bool)
        squares = square_from_points(gts)
    elif boxes == "haar":
        if detect is None:
            raise ValueError("boxes='haar' needs a detector")
        dets = detect_boxes(samples, detect, desc="haar")
        found = np.array([d is not None for d in dets])
        squares = predictor.squares_from_boxes(np.stack([d for d in dets if d is not None]).reshape(-1, 4))
    else:
        raise ValueError(f"unknown boxes {boxes!r} (gt or haar)")
    idx = np.flatnonzero(found)
    preds, scores = predictor.predict_with_score([samples[i].gray for i in idx], squares)
    res = summarize(preds, gts[idx])
    per = np.full(len(samples), np.inf)
    per[idx] = res["per_image"]
    res.update({
        "model": predictor.model_id, "split": split, "part": part, "boxes": boxes,
        "refine": predictor.refine, "flip": predictor.flip, "images": len(samples),
        "settled": [predictor.settled_move, predictor.settled_score],
        "faces_found": float(found.mean()),
        "with_misses": {"nme_mean_found": res["nme_mean"],
                        "failure_rate": float((per > FAILURE_NME).mean())},
    })
    if min_score is not None:
        res.update(kept_figures(np.asarray(res["per_image"]), scores, min_score, len(samples)))
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        tag = f"{split}_{part}_{boxes}"
        with open(os.path.join(out_dir, f"eval_{tag}.json"), "w") as f:
            json.dump(res, f, indent=2)
        ced_plot({f"{predictor.model_id} {tag}: mean {100 * res['nme_mean']:.2f}%": per[np.isfinite(per)]},
                 os.path.join(out_dir, f"ced_{tag}.png"))
        order = np.argsort(res["per_image"])
        pick = list(order[:: max(1, len(order) // 17)][:17]) + list(order[-7:])
        prediction_grid([samples[idx[i]].gray for i in pick], preds[pick], gts[idx[pick]],
                        os.path.join(out_dir, f"grid_{tag}.png"))
    return res


def kept_figures(per: np.ndarray, scores: np.ndarray, min_score: float, images: int) -> dict:
    """What a --min-score keeps of the found faces (a NaN score, not measured, keeps a face, as in
    annotate), and how many of those are false faces."""
    kept = is_kept(scores, min_score)
    false = per[kept] > FALSE_FACE_NME
    return {"min_score": min_score, "faces_kept": float(kept.sum() / max(1, images)),
            "kept_of_found": float(kept.mean()) if len(kept) else float("nan"),
            "nme_mean_kept": float(per[kept].mean()) if kept.any() else float("nan"),
            "false_faces": int(false.sum()), "false_face_share": float(false.mean()) if kept.any() else 0.0,
            "false_faces_dropped": int((per[~kept] > FALSE_FACE_NME).sum()),
            "score_p5_p50": [float(v) for v in np.nanpercentile(scores, [5, 50])] if len(scores) else []}
