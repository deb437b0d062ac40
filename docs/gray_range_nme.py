"""`python docs/gray_range_nme.py docs/gray_range_nme.json`: followed and per-frame NME on the bench's identity-test clip (H.264 yuv420p, limited range),
with the full-range gray mapping and without it (raw Y, as before)."""
import json, sys, tempfile
import numpy as np
sys.path.insert(0, ".")
import facetracks.pipeline.video as video
from facetracks.jobs.benchmarks import accuracy, truth_clip
from facetracks.pipeline.profiles import load_profile

res = {}
FULL = video._LIMITED_TO_FULL.copy()
with tempfile.TemporaryDirectory() as d:
    clip = truth_clip(d)
    for prof in ("accurate", "fast"):
        parts = load_profile(prof)
        for name, lut in (("full_range", FULL), ("raw_Y", np.arange(256, dtype=np.uint8))):
            video._LIMITED_TO_FULL[:] = lut
            r = accuracy(parts, clip)
            res[f"{prof}/{name}"] = {k: {"nme_mean": round(v["nme_mean"] * 100, 3), "frames_with_face": v["frames_with_face"],
                                         "false_positive_faces": v["false_positive_faces"]} for k, v in r.items()}
            print(prof, name, res[f"{prof}/{name}"], flush=True)
json.dump(res, open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gray_range_nme.json", "w"), indent=1)
