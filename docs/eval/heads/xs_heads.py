"""60-epoch fc vs heatmap head for ft68-resnet-xs (train identities, val monitored), 1 thread each:
`python docs/eval/heads/xs_heads.py fc` and `... heatmap` side by side (the train CLI names only
shipped architectures, so the head is an override of the arch here). Reads ../shared/data/ytf68;
writes /tmp/exp/xs-HEAD-60 (box caches copied from an earlier run there when present)."""
import json
import os
import shutil
import sys

head = sys.argv[1]
from facetracks.jobs.train_cmd import _boxes
from facetracks.pipeline.detect import HaarDetector
from facetracks.training.data import load_split
from facetracks.training.train import TrainConfig, train
D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "shared", "data", "ytf68")
out = f"/tmp/exp/xs-{head}-60"
os.makedirs(out, exist_ok=True)
for f in ("haar_boxes_train_identity_all.json", "haar_boxes_val_identity_all.json"):
    src = f"/tmp/exp/ft68-resnet-s-60/{f}"
    if os.path.exists(src) and not os.path.exists(os.path.join(out, f)):
        shutil.copy(src, out)
tr, va = load_split(D, "identity", "train"), load_split(D, "identity", "val")
tb, vb = _boxes(out, "train_identity_all", tr, HaarDetector), _boxes(out, "val_identity_all", va, HaarDetector)
model = {"head": "heatmap", "head_channels": 64, "hidden": 0} if head == "heatmap" else {}
cfg = TrainConfig(epochs=60, threads=1, model_name="ft68-resnet-xs", model=model, version="exp")
r = train(cfg, tr, tb, va, vb, out)
print(json.dumps({"head": head, "best": r["best_val_nme"]}))
