"""Tilted heads (README "Tilted heads"): what turning a crop with the face past 15 degrees does.

1. Stills: the val identities' faces turned about their centre by 0-45 degrees, read from the
   upright square around their points (refine pass as each profile runs it): NME and the share
   the profile's min score keeps.
2. Video: the bundled sample turned about her face (about (447, 221)) by an angle growing to 30,
   45 or 60 degrees over 120 frames, then held for 120 (her hand passes over her face meanwhile):
   faces in the held half against the upright clip's reading of the same frames, the mean
   distance of her points from that reading turned the same way (% of the inter-ocular
   distance), and the track ids.

`--before` runs the code as it was before turned crops (the upright zone set to 180 degrees, so no
crop, window or detection round ever turns). Writes `docs/eval/tilt.json` (or `tilt_before.json`).
Run from the repo: `python docs/eval/tilt.py [--before]` (about 3 minutes on 2 cores).
"""
import json
import os
import sys
import tempfile

import av
import cv2
import numpy as np

import facetracks.models.crop as crop
import facetracks.models.inference as inference
import facetracks.pipeline.follow as follow
from facetracks.jobs.bench_paths import SAMPLE
from facetracks.jobs.clips import write_video
from facetracks.models.landmarks68 import interocular
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.profiles import load_profile
from facetracks.pipeline.smoothing import table_ids, table_points
from facetracks.training.data import load_split
from facetracks.training.metrics import summarize

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "..", "shared", "data", "ytf68")
BEFORE = "--before" in sys.argv
if BEFORE:
    upright = lambda p: crop.square_along_face(p, zone=np.pi)
    inference.square_along_face = follow.square_along_face = upright


def stills(prof: str) -> dict:
    parts = load_profile(prof)
    val = load_split(DATA, "identity", "val")
    out = {}
    for deg in (0, 15, 25, 35, 45):
        imgs, truth = [], []
        for s in val:
            c = s.points.mean(axis=0)
            m = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), deg, 1.0)
            imgs.append(cv2.warpAffine(s.gray, m, s.gray.shape[::-1], borderMode=cv2.BORDER_REPLICATE))
            truth.append(s.points @ m[:, :2].T + m[:, 2])
        truth = np.stack(truth)
        pts, score = parts.predictor.predict_with_score(imgs, crop.square_from_points(truth))
        out[deg] = {"nme": summarize(pts, truth)["nme_mean"], "kept": float(np.mean(score >= parts.follow.min_score))}
    return out


def clips(prof: str, work: str) -> dict:
    parts = load_profile(prof)
    with av.open(SAMPLE) as c:
        imgs = [f.to_ndarray(format="bgr24") for _, f in zip(range(240), c.decode(video=0))]
    ref = annotate_video(SAMPLE, "s", parts.detector, parts.predictor, parts.follow, end_s=10.0).table
    rp, (rt, rf) = table_points(ref), table_ids(ref)
    out = {}
    for top in (30, 45, 60):
        mats = [cv2.getRotationMatrix2D((447.0, 221.0), top * min(1.0, i / 120), 1.0) for i in range(240)]
        path = os.path.join(work, f"tilt{top}.mp4")
        write_video(path, (cv2.warpAffine(i, m, (640, 360), borderMode=cv2.BORDER_REPLICATE)
                           for i, m in zip(imgs, mats)), fps=24)
        t = annotate_video(path, "x", parts.detector, parts.predictor, parts.follow).table
        p, (tid, fi) = table_points(t), table_ids(t)
        held = []
        for i in np.flatnonzero((tid >= 0) & (fi >= 120)):
            j = np.flatnonzero((rf == fi[i]) & (rt >= 0))
            if len(j):
                m = mats[fi[i]]
                want = rp[j[0]] @ m[:, :2].T + m[:, 2]
                held.append(float(np.linalg.norm(p[i] - want, axis=-1).mean() / interocular(want[None])[0]))
        out[top] = {"faces_held_half": len(held), "upright_faces_held_half": int(((rt >= 0) & (rf >= 120)).sum()),
                    "distance": float(np.mean(held)) if held else None, "ids": len(set(tid[tid >= 0].tolist()))}
    return out


if __name__ == "__main__":
    res = {"before": BEFORE}
    with tempfile.TemporaryDirectory() as work:
        for prof in ("accurate", "fast"):
            res[prof] = {"stills": stills(prof), "clips": clips(prof, work)}
            print(prof, json.dumps(res[prof]), flush=True)
    with open(os.path.join(HERE, "tilt_before.json" if BEFORE else "tilt.json"), "w") as f:
        json.dump(res, f, indent=2)
