"""Issue 15 lever: the cascade's scale step and neighbours for each profile, chosen on the *val*
identities (Haar boxes, each profile's model and passes): faces found, NME, kept at the profile's
min score, and the detector's time on 640x480 frames of the bundled sample. Run from the repo:
`python docs/eval/detector.py` writes docs/eval/detector.json."""
import json, os, time

import av
import cv2
import torch

from facetracks.pipeline.detect import HaarDetector
from facetracks.pipeline.profiles import load_profile
from facetracks.training.evaluate import evaluate

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "..", "shared", "data", "ytf68")
SAMPLE = os.path.join(HERE, "..", "..", "samples", "pyfeat_WolfgangLanger_Pexels.mp4")
GRID = {"accurate": [(640, 1.1, 5), (640, 1.1, 3), (640, 1.15, 5), (640, 1.15, 3), (640, 1.2, 5), (640, 1.2, 3)],
        "fast": [(320, 1.2, 5), (320, 1.2, 3), (320, 1.15, 3), (400, 1.2, 3)]}
torch.set_num_threads(2)


def main() -> None:
    with av.open(SAMPLE) as c:
        frames = [cv2.resize(f.to_ndarray(format="gray"), (640, 480))
                  for i, f in zip(range(200), c.decode(video=0)) if i % 10 == 0]
    out = {}
    for name, grid in GRID.items():
        p = load_profile(name)
        for side, step, neighbours in grid:
            d = HaarDetector(scale_factor=step, min_neighbors=neighbours, detect_side=side)
            d.detect(frames[0])
            t = time.perf_counter()
            for g in frames:
                d.detect(g)
            ms = (time.perf_counter() - t) / len(frames) * 1e3
            r = evaluate(p.predictor, DATA, "identity", "haar", d.detect, None, "val", p.follow.min_score)
            key = f"{name} side {side} step {step} neighbours {neighbours}"
            out[key] = {"ms_640x480": ms, "val_found": r["faces_found"], "val_nme": r["nme_mean"],
                        "val_kept": r["faces_kept"], "val_false_faces": r["false_faces"]}
            print(key, {k: round(v, 4) for k, v in out[key].items()}, flush=True)
    with open(os.path.join(HERE, "detector.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
