"""Faces on their side or upside down (README "Faces on their side"): what the turned scans do.

1. The bundled sample's first 240 frames turned a quarter clockwise, a quarter anticlockwise and
   a half, as a clip filmed sideways that lost its rotation tag (or a camera on its side) looks:
   frames with her face against the upright clip's, the mean distance of her points from the
   upright reading turned the same way (% of the inter-ocular distance), track ids, and time.
2. The shared clips as they are: faces, ids, detections and time, so that what the turned scans
   cost where nothing is turned is on record (they run only while no face is trusted, on rounds
   that find no upright face).

`before` runs each clip with `turned_every` 0 and the tracker's duplicate rule as it was (the
older id survives even when lost), in the same process. Writes `docs/eval/quarter_turns.json`.
Run from the repo: `python docs/eval/quarter_turns.py` (about 6 minutes on 2 cores).
"""
import json
import os
import tempfile
import time
from dataclasses import replace

import av
import cv2
import numpy as np

from facetracks.jobs.bench_paths import SAMPLE
from facetracks.jobs.clips import write_video
from facetracks.models.landmarks68 import interocular
from facetracks.pipeline import tracking
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.profiles import load_profile
from facetracks.pipeline.smoothing import table_ids, table_points

HERE = os.path.dirname(os.path.abspath(__file__))
VIDEOS = os.path.join(HERE, "..", "..", "..", "shared", "videos")
TURNS = {"quarter clockwise": cv2.ROTATE_90_CLOCKWISE, "quarter anticlockwise": cv2.ROTATE_90_COUNTERCLOCKWISE,
         "half": cv2.ROTATE_180}
NEW_RULE = tracking.FaceTracker._drop_duplicates


def _old_rule(self) -> None:
    if len(self.tracks) < 2:
        return
    iou = tracking.square_iou(self.squares(), self.squares())
    drop = {j if self.tracks[j].id > self.tracks[i].id else i
            for i in range(len(self.tracks)) for j in range(i + 1, len(self.tracks)) if iou[i, j] > self.duplicate_iou}
    self.tracks = [t for k, t in enumerate(self.tracks) if k not in drop]


def run(path: str, prof: str, before: bool):
    parts = load_profile(prof)
    tracking.FaceTracker._drop_duplicates = _old_rule if before else NEW_RULE
    follow = replace(parts.follow, turned_every=0) if before else parts.follow
    t = time.perf_counter()
    r = annotate_video(path, "x", parts.detector, parts.predictor, follow)
    dt = time.perf_counter() - t
    tracking.FaceTracker._drop_duplicates = NEW_RULE
    return r, dt


def summary(r, dt: float) -> dict:
    tid, _ = table_ids(r.table)
    return {"frames": r.stats.frames, "faces": r.stats.faces, "ids": len(set(tid[tid >= 0].tolist())),
            "detections": r.stats.detections, "turned_scans": r.stats.turned_scans, "seconds": round(dt, 3)}


def turned(prof: str, work: str) -> dict:
    with av.open(SAMPLE) as c:
        imgs = [f.to_ndarray(format="bgr24") for _, f in zip(range(240), c.decode(video=0))]
    h, w = imgs[0].shape[:2]
    up = os.path.join(work, "upright.mp4")
    write_video(up, imgs, fps=24)
    ref, dt = run(up, prof, False)
    rp, (rt, rf) = table_points(ref.table), table_ids(ref.table)
    out = {"upright": summary(ref, dt)}
    for name, code in TURNS.items():
        path = os.path.join(work, f"{code}.mp4")
        write_video(path, (cv2.rotate(i, code) for i in imgs), fps=24)
        # a frame point (x, y) in the turned clip: where cv2.rotate puts that pixel
        to = {cv2.ROTATE_90_CLOCKWISE: lambda p: np.stack([h - 1 - p[..., 1], p[..., 0]], -1),
              cv2.ROTATE_90_COUNTERCLOCKWISE: lambda p: np.stack([p[..., 1], w - 1 - p[..., 0]], -1),
              cv2.ROTATE_180: lambda p: np.stack([w - 1 - p[..., 0], h - 1 - p[..., 1]], -1)}[code]
        out[name] = {}
        for before in (True, False):
            r, dt = run(path, prof, before)
            p, (tid, fi) = table_points(r.table), table_ids(r.table)
            dist = []
            for i in np.flatnonzero(tid >= 0):
                j = np.flatnonzero((rf == fi[i]) & (rt >= 0))
                if len(j):
                    want = to(rp[j[0]])
                    dist.append(float(np.linalg.norm(p[i] - want, axis=-1).mean() / interocular(want[None])[0]))
            out[name]["before" if before else "now"] = {**summary(r, dt), "distance": float(np.mean(dist)) if dist else None}
        print(prof, name, json.dumps(out[name]), flush=True)
    return out


def shared(prof: str) -> dict:
    out = {}
    for name in sorted(os.listdir(VIDEOS)):
        if name.endswith((".mp4", ".mov")):
            path = os.path.join(VIDEOS, name)
            out[name] = {k: summary(*run(path, prof, k == "before")) for k in ("before", "now")}
            print(prof, name, json.dumps(out[name]), flush=True)
    return out


if __name__ == "__main__":
    res = {}
    with tempfile.TemporaryDirectory() as work:
        for prof in ("accurate", "fast"):
            res[prof] = {"turned": turned(prof, work), "shared": shared(prof)}
    with open(os.path.join(HERE, "quarter_turns.json"), "w") as f:
        json.dump(res, f, indent=2)
