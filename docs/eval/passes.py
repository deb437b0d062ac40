"""Issue 15 lever: how much each pass of `accurate` buys (identity split, *val* identities: a
choice of passes must not look at the test identities; Haar boxes), and the
kept/false-face figures at its min score (0.45, calibrated for the default passes). Run from the repo:
`python docs/eval/passes.py` writes docs/eval/passes_accurate.json."""
import json, os, time

import torch
from dataclasses import replace
from facetracks.pipeline.profiles import load_profile
from facetracks.training.evaluate import evaluate

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "..", "shared", "data", "ytf68")
torch.set_num_threads(2)
p = load_profile("accurate", device="cpu")
# settled_move 0: every face refined, as when this was measured (before settled faces)
variants = {"refine1+flip (default, 4 fwd)": dict(refine=1, flip=True, flip_last=False, settled_move=0.0),
            "refine1+flip_last (3 fwd)": dict(refine=1, flip=False, flip_last=True, settled_move=0.0),
            "refine1 no mirror (2 fwd)": dict(refine=1, flip=False, flip_last=False, settled_move=0.0),
            "refine0+flip (2 fwd)": dict(refine=0, flip=True, flip_last=False, settled_move=0.0)}
out = {}
for name, kw in variants.items():
    pred = replace(p.predictor, **kw)
    t = time.perf_counter()
    r = evaluate(pred, DATA, "identity", "haar", p.detector.detect, None, "val", p.follow.min_score)
    dt = time.perf_counter() - t
    keep = {k: r[k] for k in r if k.startswith("kept") or k.startswith("false")}
    out[name] = {"nme": r["nme_mean"], "found": r["faces_found"], "seconds": dt, **keep}
    print(name, f"NME {100*r['nme_mean']:.2f}%", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in keep.items()}, f"{dt:.1f}s", flush=True)
json.dump(out, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "passes_accurate.json"), "w"), indent=2)
