#!/usr/bin/env bash
# Training on the GPU machine, in one call of the device tool (carry [".dev-train"], made here by
# `python docs/train/make_pack.py ../shared/data/ytf68 .dev-train`), from the repository root:
#
#     SECONDS_BUDGET=420 bash docs/train/gpu_train.sh     # results in $OUT (the device tool sets it)
#
# The shipped recipe (Wing loss, AdamW, cosine, the transforms, bfloat16 convolutions) with a moving
# average of the weights, as many epochs as fit the budget. Two runs side by side on the one GPU
# (on the H100: 1.5 s an epoch each, 295 epochs in 555 s; whether one at a time would go faster
# was not measured):
#   val:  train identities, val monitored: what the recipe reaches on faces it never saw;
#   ship: train + val identities, the same epochs: the candidate weights.
# The test identities are not in the pack. A 4-epoch probe of both runs side by side measures the
# seconds per epoch first, so the cosine schedule ends inside the budget instead of being cut.
# Each run's log.jsonl, config.json and model.pt (int8, shippable) land in $OUT/<run>/, the probe's
# figures in $OUT/probe.json, everything printed in $OUT/log.txt. Then, here: `facetracks evaluate
# --weights OUT/ship/model.pt ...` on the test identities, the score's check (docs/score/), the README.
# The machine has torch (CUDA), numpy, pandas, OpenCV 5 (no cascade: the Haar boxes come in the pack).
set -u -o pipefail

MODEL=${MODEL:-ft68-resnet-slim-hm}
SECONDS_BUDGET=${SECONDS_BUDGET:-420}  # the whole script, probe included
EMA=${EMA:-0.999}
WORKERS=${WORKERS:-6}                  # loader processes per run (two runs on 16 cores)
VAL_EVERY=${VAL_EVERY:-10}
MAX_EPOCHS=${MAX_EPOCHS:-1200}
DEVICE=${DEVICE:-cuda}
TRAIN_ARGS=${TRAIN_ARGS:-}             # more options for both runs (a check elsewhere: "--limit 64")
PY=${PY:-python3}
REPO=$PWD
PACK=${PACK:-$REPO/.dev-train}
SITE=${SITE:-/tmp/site-train}
RUNS=${RUNS:-/tmp/runs}
OUT=${OUT:-$REPO/out/gpu_train}
mkdir -p "$OUT" "$SITE/facetracks" "$RUNS"
PACK=$(cd "$PACK" && pwd) OUT=$(cd "$OUT" && pwd)

train() {   # train DIR EPOCHS [options...]: one run in DIR, its Haar boxes from the pack
    local dir=$1 epochs=$2; shift 2
    mkdir -p "$dir"
    cp "$PACK"/boxes/*.json "$dir/"
    # shellcheck disable=SC2086  # TRAIN_ARGS: words
    timeout "${RUN_TIMEOUT:-100000}" "$PY" -c 'import argparse, sys
from facetracks.jobs import train_cmd
p = argparse.ArgumentParser(); train_cmd.add_parser(p.add_subparsers())
a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))' train --data "$PACK/ytf68" --split identity --out "$dir" \
        --model "$MODEL" --epochs "$epochs" --workers "$WORKERS" --val-every "$VAL_EVERY" --device "$DEVICE" \
        --ema "$EMA" $TRAIN_ARGS "$@" > "$dir/stdout.txt" 2>&1
}

both() {    # both ROOT EPOCHS: the val and ship runs side by side
    local root=$1 epochs=$2
    train "$root/val" "$epochs" --version gpu-val & local a=$!
    train "$root/ship" "$epochs" --version "gpu-$(date +%Y.%m.%d)" --include-val & local b=$!
    wait $a; echo "val: rc $?"; wait $b; echo "ship: rc $?"
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

    echo "== probe: 4 epochs of both runs side by side ($SECONDS s)"
    local t0=$SECONDS
    both "$RUNS/probe" 4
    local wall=$((SECONDS - t0)) epochs
    epochs=$("$PY" - "$RUNS/probe" "$wall" "$SECONDS_BUDGET" "$SECONDS" "$MAX_EPOCHS" "$OUT/probe.json" <<'PYEOF'
import json, os, sys
root, wall, budget, now, cap, out = sys.argv[1], *map(float, sys.argv[2:6]), sys.argv[6]
rows = {r: [json.loads(l) for l in open(os.path.join(root, r, "log.jsonl"))] for r in ("val", "ship")}
# seconds per epoch from epochs 2-4 (the first pays for CUDA's start and the loaders'); the slower run
per_epoch = max((v[-1]["elapsed_s"] - v[0]["elapsed_s"]) / (len(v) - 1) for v in rows.values())
start = wall - max(v[-1]["elapsed_s"] for v in rows.values())      # load, boxes, model, export
left = budget - now - start - 25                                     # 25 s: last validation, export, copies
epochs = int(max(10, min(cap, left / per_epoch)))
json.dump({"per_epoch_s": per_epoch, "start_s": start, "probe_wall_s": wall, "left_s": left,
           "epochs": epochs, "rows": rows}, open(out, "w"), indent=1)
print(epochs)
PYEOF
) || { echo "probe failed:"; tail -n 20 "$RUNS"/probe/*/stdout.txt; return 1; }
    echo "== $epochs epochs each, ema $EMA ($SECONDS s)"
    RUN_TIMEOUT=$((SECONDS_BUDGET - SECONDS - 12)) both "$RUNS/main" "$epochs"   # a run cut here keeps its best.pt
    for run in val ship; do
        mkdir -p "$OUT/$run"
        [ -f "$RUNS/main/$run/model.pt" ] || "$PY" -c 'import sys
from facetracks.models.registry import export_compact
export_compact(sys.argv[1], sys.argv[2])' "$RUNS/main/$run/best.pt" "$RUNS/main/$run/model.pt" || true
        cp "$RUNS/main/$run"/{log.jsonl,config.json,model.pt} "$OUT/$run/" 2>/dev/null
        echo "-- $run"; tail -n 3 "$RUNS/main/$run/stdout.txt"
    done
    echo "== done ($SECONDS s)"
}

main 2>&1 | tee "$OUT/log.txt"
