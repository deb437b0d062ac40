"""Figures from build_eval.py's records: per set and profile, the score's distribution, the share
of faces kept at the profile's --min-score, and the share of kept faces whose NME exceeds 20 %
(false faces). The score is recomputed from its parts with models/score.py, so what is reported is
what the shipped code computes. Writes docs/score/summary.json and docs/score/score_by_set.png
(drawn with OpenCV).
Run: python docs/score/summarise.py [runs/score] [docs/score]
"""
from __future__ import annotations

import json
import os
import sys

import cv2
import numpy as np

from facetracks.models.score import landmark_score
from facetracks.pipeline.profiles import PROFILES

SETS = ("true", "mirrored", "shifted", "scaled", "rotated", "upside_down", "occluded", "background",
        "still_fp", "clip_fp", "clip_haar", "clip_turned")
FALSE_NME = 0.20
UNLABELLED = ("still_fp", "clip_fp", "clip_haar", "clip_turned")   # no truth; still_fp holds some real faces


def min_score(profile: str) -> float:
    return float(PROFILES[profile].follow["min_score"])


def load(path: str) -> dict:
    with np.load(path, allow_pickle=False) as z:
        r = {k: z[k] for k in z.files}
    r["score"] = landmark_score(r["mirror"], r["passes"], r["shape_distance"], r.get("contrast"))
    r["nme"] = np.where(np.isin(r["set"], UNLABELLED), np.nan, r["nme"])
    return r


def figures(r: dict, threshold: float) -> dict:
    out = {}
    for s in SETS:
        m = r["set"] == s
        if not m.any():
            continue
        sc, e = r["score"][m], r["nme"][m]
        kept = sc >= threshold
        d = {"n": int(m.sum()), "kept": float(kept.mean()),
             "score_p5_p50_p95": [round(float(v), 3) for v in np.percentile(sc, [5, 50, 95])]}
        if np.isfinite(e).all():
            d["nme_over_20pct"] = float((e > FALSE_NME).mean())
            d["false_faces_of_kept"] = float((e[kept] > FALSE_NME).mean()) if kept.any() else 0.0
            d["false_faces_kept"] = int((e[kept] > FALSE_NME).sum())
            d["nme_mean_kept"] = float(e[kept].mean()) if kept.any() else float("nan")
        if s in ("clip_haar", "clip_turned"):
            yaw = np.abs(r["yaw"][m])
            d["kept_by_abs_yaw"] = {f"{lo}-{hi}": [int(((yaw >= lo) & (yaw < hi)).sum()),
                                                   float(kept[(yaw >= lo) & (yaw < hi)].mean()) if ((yaw >= lo) & (yaw < hi)).any() else None]
                                    for lo, hi in ((0, 15), (15, 30), (30, 45), (45, 90))}
        out[s] = d
    lab = np.isfinite(r["nme"])
    kept = r["score"] >= threshold
    out["all_labelled"] = {"n": int(lab.sum()), "emitted": int((kept & lab).sum()),
                           "false_faces_of_emitted": float((r["nme"][kept & lab] > FALSE_NME).mean())}
    return out


def draw(results: dict[str, dict], path: str) -> None:
    """One row per set, one column per profile: a histogram of the score (0..1, 25 bins), each
    row scaled to its tallest bin, the threshold as a black line."""
    cw, rh, lw, top = 300, 46, 110, 30
    profiles = list(results)
    img = np.full((top + rh * len(SETS) + 20, lw + cw * len(profiles) + 10, 3), 255, np.uint8)
    for j, prof in enumerate(profiles):
        r, thr = results[prof]["records"], results[prof]["threshold"]
        x0 = lw + j * cw
        cv2.putText(img, f"{prof} (min-score {thr:g})", (x0 + 10, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        for i, s in enumerate(SETS):
            y0 = top + i * rh
            m = r["set"] == s
            cv2.rectangle(img, (x0 + 5, y0 + 2), (x0 + cw - 5, y0 + rh - 4), (200, 200, 200), 1)
            if not m.any():
                cv2.putText(img, "none", (x0 + 12, y0 + 28), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (120, 120, 120), 1, cv2.LINE_AA)
                continue
            hist, _ = np.histogram(np.nan_to_num(r["score"][m]), bins=25, range=(0, 1))
            hist = hist / max(1, hist.max())
            bw = (cw - 10) / 25
            for b, v in enumerate(hist):
                xa = int(x0 + 5 + b * bw)
                cv2.rectangle(img, (xa + 1, int(y0 + rh - 4 - v * (rh - 8))), (int(xa + bw) - 1, y0 + rh - 4),
                              (60, 140, 60) if s in ("true", "mirrored", "clip_haar", "clip_turned") else (70, 70, 200), -1)
            tx = int(x0 + 5 + thr * (cw - 10))
            cv2.line(img, (tx, y0 + 2), (tx, y0 + rh - 4), (0, 0, 0), 2)
    for i, s in enumerate(SETS):
        cv2.putText(img, s, (6, top + i * rh + 28), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "score 0 .. 1; green: real faces, red: crops whose points are wrong or unknown; black: min-score", (lw, img.shape[0] - 6),
                cv2.FONT_HERSHEY_SIMPLEX, 0.4, (80, 80, 80), 1, cv2.LINE_AA)
    cv2.imwrite(path, img)


def main(runs: str = "runs/score", out: str = "docs/score") -> None:
    summary, drawn = {}, {}
    for prof in PROFILES:
        thr = min_score(prof)
        for part in ("train", "test"):
            path = os.path.join(runs, f"{prof}_{part}.npz")
            if not os.path.exists(path):
                continue
            r = load(path)
            summary[f"{prof}_{part}"] = {"min_score": thr, **figures(r, thr)}
            if part == "test":
                drawn[prof] = {"records": r, "threshold": thr}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if drawn:
        draw(drawn, os.path.join(out, "score_by_set.png"))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:])
