#!/usr/bin/env bash
# Training on the GPU machine, in one call of the device tool (carry [".dev-train"], made here by
# `python docs/train/make_pack.py ../shared/data/ytf68 .dev-train`), from the repository root:
#
#     bash docs/train/gpu_train.sh            # results in $OUT (the device tool sets it)
#
# The shipped recipe (Wing loss, AdamW, cosine, the transforms, bfloat16 convolutions), longer, in
# three runs; every choice is made on the val identities, the test identities are not in the pack:
#   1. base: train identities, val monitored;   2. ema: the same with a moving average of the weights;
#   3. ship: train + val identities, with the weight average if run 2 ended lower on val than run 1.
# Each run's log.jsonl, config.json and model.pt (int8, shippable) land in $OUT/<run>/, the choice in
# $OUT/choice.json, everything printed in $OUT/log.txt. Then, here: `facetracks evaluate --weights
# OUT/ship/model.pt ...` on the test identities, the score's check (docs/score/), the README.
# The machine has torch (CUDA), numpy, pandas, OpenCV 5 (no cascade: the Haar boxes come in the pack).
set -u -o pipefail

MODEL=${MODEL:-ft68-resnet-slim-hm}
EPOCHS=${EPOCHS:-300}
EMA=${EMA:-0.999}
WORKERS=${WORKERS:-12}                 # processes augmenting batches (the CPU is the bottleneck there)
VAL_EVERY=${VAL_EVERY:-10}
DEVICE=${DEVICE:-cuda}
RUN_TIMEOUT=${RUN_TIMEOUT:-170}        # seconds per run: three runs and the set-up under 10 minutes
PY=${PY:-python3}
REPO=$PWD
PACK=${PACK:-$REPO/.dev-train}
SITE=${SITE:-/tmp/site-train}
RUNS=${RUNS:-/tmp/runs}
OUT=${OUT:-$REPO/out/gpu_train}
mkdir -p "$OUT" "$SITE/facetracks" "$RUNS"
PACK=$(cd "$PACK" && pwd) OUT=$(cd "$OUT" && pwd)

train() {   # train RUN [options...]: one run, killed at RUN_TIMEOUT; its shippable files into $OUT/RUN
    local run=$1; shift
    mkdir -p "$RUNS/$run" "$OUT/$run"
    cp "$PACK"/boxes/*.json "$RUNS/$run/"
    echo "== $run: $* ($((SECONDS)) s)"
    timeout "$RUN_TIMEOUT" "$PY" -c 'import argparse, sys
from facetracks.jobs import train_cmd
p = argparse.ArgumentParser(); train_cmd.add_parser(p.add_subparsers())
a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))' train --data "$PACK/ytf68" --split identity --out "$RUNS/$run" \
        --model "$MODEL" --epochs "$EPOCHS" --workers "$WORKERS" --val-every "$VAL_EVERY" --device "$DEVICE" "$@" \
        || echo "$run: rc $? (a run stopped by the timeout keeps its best.pt, exported below)"
    [ -f "$RUNS/$run/model.pt" ] || "$PY" -c 'import sys
from facetracks.models.registry import export_compact
export_compact(sys.argv[1], sys.argv[2])' "$RUNS/$run/best.pt" "$RUNS/$run/model.pt" || true
    cp "$RUNS/$run"/{log.jsonl,config.json,model.pt} "$OUT/$run/" 2>/dev/null
    tail -n 2 "$RUNS/$run/log.jsonl" 2>/dev/null
}

main() {
    # facetracks as a package of links (setup.cfg's package_dir), nothing installed; tqdm from the pack
    for f in facetracks/*.py; do ln -sfn "$REPO/$f" "$SITE/facetracks/"; done
    for d in models pipeline training jobs samples; do ln -sfn "$REPO/$d" "$SITE/facetracks/$d"; done
    export PYTHONPATH="$SITE:$PACK/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
    cd "$SITE" || return 1
    "$PY" -c 'import torch, cv2, facetracks.training.train as t
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "", "OpenCV", cv2.__version__, "from", t.__file__)' || return 1
    nvidia-smi --query-gpu=name,memory.total --format=csv || true
    nproc

    train base --version gpu-base
    train ema --version gpu-ema --ema "$EMA"
    local pick
    pick=$("$PY" - "$OUT" "$EMA" <<'PYEOF'
import json, os, sys
out, ema = sys.argv[1], float(sys.argv[2])
def last_val(run):
    rows = [json.loads(l) for l in open(os.path.join(out, run, "log.jsonl"))] if os.path.exists(os.path.join(out, run, "log.jsonl")) else []
    vals = [(r["epoch"], r["val_nme"]) for r in rows if r.get("val_nme") is not None]
    return vals[-1] if vals else (0, None)
base, with_ema = last_val("base"), last_val("ema")
use = with_ema[1] is not None and base[1] is not None and with_ema[0] == base[0] and with_ema[1] < base[1]
json.dump({"base_last_val": base, "ema_last_val": with_ema, "ema_chosen": use, "ema": ema if use else 0},
          open(os.path.join(out, "choice.json"), "w"), indent=2)
print(ema if use else 0)
PYEOF
)
    echo "== choice (val identities): ema $pick"
    train ship --version "gpu-$(date +%Y.%m.%d)" --include-val --ema "${pick:-0}"
    echo "== done ($SECONDS s)"
}

main 2>&1 | tee "$OUT/log.txt"
