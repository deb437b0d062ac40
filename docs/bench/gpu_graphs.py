"""On a CUDA machine: the landmark passes as CUDA graphs (models/graphed_pass.py, the network's own
graphs where crops are cut on the CPU) against eager, and how fast the predictor and the torch
Haar detector (its scan a graph too, pipeline/haar_graphed.py) run per call. Exits non-zero when graphs fail
or differ (gpu_bench.sh then runs the bench with FACETRACKS_CUDA_GRAPHS=0). Writes JSON to argv[1]
when given."""
import json
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from facetracks.jobs.bench_paths import SAMPLE
from facetracks.pipeline.profiles import load_profile
from facetracks.pipeline.video import iter_frames


def timed(fn, reps: int) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps


def main() -> int:
    frames = [f.gray for _, f in zip(range(256), iter_frames(SAMPLE))]
    out, ok = {}, True
    for name in ("accurate", "fast"):
        p = load_profile(name)
        pred, res = p.predictor, {}
        boxes = p.detector.detect_batch(frames[:1])[0]
        jitter = np.random.default_rng(0).normal(0, 2, (len(frames), 3)).astype(np.float32)
        h, w = frames[0].shape
        first = pred.squares_from_boxes(boxes[:1, :4]) if len(boxes) else np.array([[w / 2, h / 2, h / 2]], np.float32)
        sq = np.repeat(first, len(frames), 0) + jitter
        eager = replace(pred, graphed=None, pass_graphs=None)
        for n in (3, 40, 256):
            a, sa = eager.predict_with_score(frames[:n], sq[:n])
            b, sb = pred.predict_with_score(frames[:n], sq[:n])
            res[f"max_px_{n}"] = float(np.abs(a - b).max())
            res[f"max_score_{n}"] = float(np.nanmax(np.abs(sa - sb))) if np.isfinite(sa).any() else 0.0
        graphs = [g for g in (pred.pass_graphs, pred.graphed) if g is not None]
        res["graphs_broken"] = next((g.broken for g in graphs if g.broken), None) if graphs else "not on CUDA"
        res["cascade_graphs_broken"] = getattr(p.detector, "graphs_broken", None)
        # a padded batch runs other cuDNN kernels than its own size would: float16 rounding then
        # moves points by ~0.1 px (the README's float16 figures); a wrong graph would move them by pixels
        ok = ok and res["graphs_broken"] is None and max(res[f"max_px_{n}"] for n in (3, 40, 256)) < 0.5
        for n in (32, 256):
            for which, pr in (("eager", eager), ("graphs", pred)):
                s = timed(lambda: pr.predict_with_score(frames[:n], sq[:n]), 5)
                res[f"{which}_ms_per_call_{n}"] = 1000 * s
                res[f"{which}_faces_per_s_{n}"] = n / s
        for b in (1, 4, 16):
            for _ in range(2):                 # the cascade's graph is captured at a shape's second call
                p.detector.detect_batch(frames[:b])
            s = timed(lambda: p.detector.detect_batch(frames[:b]), 3)
            res[f"haar_ms_per_call_{b}"] = 1000 * s
            res[f"haar_ms_per_frame_{b}"] = 1000 * s / b
        out[name] = res
        print(name, json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}))
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            json.dump(out, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
