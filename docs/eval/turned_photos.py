"""Photos on their side or upside down (README "Faces on their side"): what a photo's last try does.

A photo has one detection round. Where the upright cascade finds nothing, that round scans the
photo turned too; where it finds a false box the network rejects, it did not, and the face was
lost (an upside-down photo, typically). `follow.Schedule.try_turned_last` now detects again on the
input's last frame, turned scans included, when every face its round found was rejected.

Photos: every 20th frame of the bundled sample (12), upright and turned a quarter each way and a
half, written as PNG and read back as `annotate` reads photos. Per profile and turn: photos with a
face, the mean distance of her points from the upright photo's reading turned the same way (% of
the inter-ocular distance), turned scans, detection rounds, time; three ways, in one process:
`off` (turned scans off, `turned_every` 0), `before` (turned scans, no last try) and `now`.
Writes `docs/eval/turned_photos.json`. Run from the repo: `python docs/eval/turned_photos.py`.
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
from facetracks.models.landmarks68 import interocular
from facetracks.pipeline import follow
from facetracks.pipeline.photo import annotate_photo, read_photo
from facetracks.pipeline.profiles import load_profile
from facetracks.pipeline.smoothing import table_ids, table_points

HERE = os.path.dirname(os.path.abspath(__file__))
TURNS = {"upright": None, "quarter clockwise": cv2.ROTATE_90_CLOCKWISE,
         "quarter anticlockwise": cv2.ROTATE_90_COUNTERCLOCKWISE, "half": cv2.ROTATE_180}
LAST_TRY = follow.Schedule.try_turned_last


def read(path: str, parts, way: str):
    follow.Schedule.try_turned_last = LAST_TRY if way == "now" else (lambda self, index: False)
    params = replace(parts.follow, turned_every=0) if way == "off" else parts.follow
    t = time.perf_counter()
    r = annotate_photo(read_photo(path), "p", parts.detector, parts.predictor, params)
    dt = time.perf_counter() - t
    follow.Schedule.try_turned_last = LAST_TRY
    tid, _ = table_ids(r.table)
    pts = table_points(r.table)[tid >= 0]
    return pts, r.stats, dt


def main() -> dict:
    with av.open(SAMPLE) as c:
        imgs = [f.to_ndarray(format="bgr24") for k, f in zip(range(240), c.decode(video=0)) if k % 20 == 0]
    h, w = imgs[0].shape[:2]
    to = {None: lambda p: p,
          cv2.ROTATE_90_CLOCKWISE: lambda p: np.stack([h - 1 - p[..., 1], p[..., 0]], -1),
          cv2.ROTATE_90_COUNTERCLOCKWISE: lambda p: np.stack([p[..., 1], w - 1 - p[..., 0]], -1),
          cv2.ROTATE_180: lambda p: np.stack([w - 1 - p[..., 0], h - 1 - p[..., 1]], -1)}
    res = {}
    with tempfile.TemporaryDirectory() as work:
        for prof in ("accurate", "fast"):
            parts = load_profile(prof)
            ups = []
            for k, img in enumerate(imgs):
                path = os.path.join(work, f"up{k}.png")
                cv2.imwrite(path, img)
                ups.append(read(path, parts, "now")[0])
            res[prof] = {}
            for name, code in TURNS.items():
                row = {}
                for way in ("off", "before", "now"):
                    found, dist, scans, rounds, secs = 0, [], 0, 0, 0.0
                    for k, img in enumerate(imgs):
                        path = os.path.join(work, f"t{k}.png")
                        cv2.imwrite(path, cv2.rotate(img, code) if code is not None else img)
                        pts, st, dt = read(path, parts, way)
                        found += len(pts) > 0
                        scans, rounds, secs = scans + st.turned_scans, rounds + st.detections, secs + dt
                        if len(pts) and len(ups[k]):
                            want = to[code](ups[k][0])
                            dist.append(float(np.linalg.norm(pts[0] - want, axis=-1).mean() / interocular(want[None])[0]))
                    row[way] = {"photos": len(imgs), "with_face": found, "turned_scans": scans, "rounds": rounds,
                                "distance": round(float(np.mean(dist)), 5) if dist else None, "seconds": round(secs, 3)}
                res[prof][name] = row
                print(prof, name, json.dumps(row), flush=True)
    with open(os.path.join(HERE, "turned_photos.json"), "w") as f:
        json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":
    main()
