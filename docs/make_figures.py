"""Make the README's pictures from the shipped model: python docs/make_figures.py [RUN_DIR]

- docs/sample_frame.png: a frame of the bundled sample with landmarks and three filters.
- docs/training_curve.png: validation NME per epoch from RUN_DIR/log.jsonl (if given).
- docs/eval/heads.png: validation NME per epoch of the 60-epoch runs in docs/eval/heads/ (fc and
  heatmap head, same body and recipe; the two-level head, on the same body and on a slimmer one).
The CED plot and prediction grid come from `facetracks evaluate --out docs/eval`.
"""
import json
import os
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from facetracks.models.inference import LandmarkPredictor  # noqa: E402
from facetracks.pipeline.annotate import annotate_video  # noqa: E402
from facetracks.pipeline.detect import HaarDetector  # noqa: E402
from facetracks.pipeline.filters import FILTERS  # noqa: E402
from facetracks.pipeline.render import faces_by_frame  # noqa: E402
from facetracks.pipeline.video import iter_frames  # noqa: E402
from facetracks.training.plots import line_plot  # noqa: E402

SAMPLE = os.path.join(ROOT, "samples", "pyfeat_WolfgangLanger_Pexels.mp4")


def sample_frame(index: int = 30) -> None:
    r = annotate_video(SAMPLE, "sample", HaarDetector(), LandmarkPredictor.load())
    faces = faces_by_frame(r.table)
    frame = next(f for f in iter_frames(SAMPLE, color=True) if f.index == index)
    tiles = []
    for name in ("input", "landmarks", "sunglasses", "moustache", "party_hat", "blur"):
        img = frame.bgr.copy() if name == "input" else FILTERS[name](frame.bgr.copy(), faces.get(index, []))
        pts = np.concatenate(faces[index]) if faces.get(index) else None
        if pts is not None:   # crop around the face so the points are visible
            cx, cy = pts.mean(axis=0)
            side = min(img.shape[:2] + (int((pts.max(axis=0) - pts.min(axis=0)).max() * 1.9),))
            x0 = int(np.clip(cx - side / 2, 0, img.shape[1] - side))
            y0 = int(np.clip(cy - side * 0.6, 0, img.shape[0] - side))
            img = img[y0:y0 + side, x0:x0 + side]
        img = cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)
        cv2.putText(img, name, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(img)
    cv2.imwrite(os.path.join(ROOT, "docs", "sample_frame.png"), np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])]))


def training_curve(run_dir: str) -> None:
    """Needs a run with a held-out set (a run made with --include-val has no validation NME)."""
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "log.jsonl"))]
    rows = [r for r in rows if r["val_nme"] is not None]
    if not rows:
        raise SystemExit(f"{run_dir}: no validation NME in log.jsonl (trained with --include-val?)")
    line_plot({"validation NME (%)": [(r["epoch"], 100 * r["val_nme"]) for r in rows]},
              os.path.join(ROOT, "docs", "training_curve.png"), xlabel="epoch", ymax=12)


def head_curves() -> None:
    runs = {"fc head (ft68-resnet-s)": "fc_60.jsonl", "heatmap head (ft68-resnet-s-hm)": "heatmap_60.jsonl",
            "heatmap head, 2 levels": "hl2_60.jsonl", "slim body, 2 levels (ft68-resnet-slim-hm)": "slim2_60.jsonl"}
    series = {}
    for label, name in runs.items():
        rows = [json.loads(line) for line in open(os.path.join(ROOT, "docs", "eval", "heads", name))]
        series[label] = [(r["epoch"], 100 * r["val_nme"]) for r in rows if r["val_nme"] is not None and r["epoch"] >= 10]
    line_plot(series, os.path.join(ROOT, "docs", "eval", "heads.png"), xlabel="epoch (val identities, one pass)",
              ymax=10)


if __name__ == "__main__":
    head_curves()
    sample_frame()
    if len(sys.argv) > 1:
        training_curve(sys.argv[1])
