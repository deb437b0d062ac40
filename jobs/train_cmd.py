"""`facetracks train`: wire the Haar detector and the dataset into the training loop."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from facetracks.models.registry import ARCHS, ModelCfg, create_model
from facetracks.pipeline.detect import HaarDetector
from facetracks.training.boxes import detect_boxes
from facetracks.training.data import load_split
from facetracks.training.train import TrainConfig, train

from .argtypes import arch_override


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the 68-point model", description=__doc__)
    p.add_argument("--data", required=True, help="YTF-68 folder (CSV files + training/ test/)")
    p.add_argument("--split", default="identity", choices=["identity", "official"])
    p.add_argument("--out", required=True, help="run folder: checkpoints, log.jsonl, config.json")
    p.add_argument("--model", default=TrainConfig.model_name, choices=sorted(ARCHS), help="architecture")
    p.add_argument("--arch", type=arch_override, action="append", default=[], metavar="KEY=VALUE",
                   help="change one field of the model's architecture, e.g. head_levels=2 (repeatable)")
    p.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--lr", type=float, default=TrainConfig.lr)
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images (smoke runs)")
    p.add_argument("--version", default="dev", help="version string stored in the weights")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--precision", default=TrainConfig.precision, choices=["auto", "bf16", "fp32"],
                   help="convolutions in bfloat16 (auto: where the device runs it natively; ~3x faster on such a CPU)")
    p.add_argument("--device", default=TrainConfig.device, choices=["auto", "cpu", "cuda"],
                   help="where the network trains (auto: a GPU where there is one)")
    p.add_argument("--workers", type=int, default=TrainConfig.workers,
                   help="processes preparing batches (0: the training process; on a GPU, the CPU's augmentation "
                        "is the bottleneck: use most cores)")
    p.add_argument("--ema", type=float, default=TrainConfig.ema,
                   help="decay per step of a moving average of the weights, validated and shipped instead of the "
                        "last weights (0: off; e.g. 0.999)")
    p.add_argument("--val-every", type=int, default=TrainConfig.val_every,
                   help="epochs between validations (the last one is always validated)")
    p.add_argument("--teacher", default="", metavar="WEIGHTS",
                   help="distil: a trained model (path or shipped name, cropping as wide as --model) whose mirrored "
                        "reading of each augmented crop is a second target")
    p.add_argument("--distill", type=float, default=TrainConfig.distill,
                   help="with --teacher: the teacher's share of the loss (the labels' is 1 - this)")
    p.add_argument("--include-val", action="store_true",
                   help="identity split: train on the train and val identities together, with no held-out "
                        "monitoring (the schedule is fixed and the last epoch is kept); test stays unseen")
    p.set_defaults(func=run)


def _boxes(out: str, name: str, samples, make_detector) -> list:
    """Haar boxes are cached in the run folder: they cost a minute and never change for a split.
    No samples (the val part under --include-val): nothing to detect, and a cache is left alone.
    `make_detector` is called only when there is no cache (so a machine whose OpenCV has no
    cascade, 5.x, trains from a run folder made elsewhere)."""
    if not samples:
        return []
    path = os.path.join(out, f"haar_boxes_{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
        if len(cached) == len(samples):
            return [None if b is None else np.asarray(b, np.float32) for b in cached]
    boxes = detect_boxes(samples, make_detector().detect, desc=f"haar {name}")
    with open(path, "w") as f:
        json.dump([None if b is None else b.tolist() for b in boxes], f)
    return boxes


def run(args: argparse.Namespace) -> int:
    try:                             # before a minute of loading and detecting, not after
        create_model(ModelCfg.named(args.model, arch=dict(args.arch)))
    except ValueError as e:
        raise SystemExit(f"facetracks train: --model {args.model} with --arch {dict(args.arch)}: {e}")
    os.makedirs(args.out, exist_ok=True)
    train_set = load_split(args.data, args.split, "train", args.limit)
    val_part = "val" if args.split == "identity" else "test"
    val_set = load_split(args.data, args.split, val_part, args.limit)
    if args.include_val:
        if args.split != "identity":
            raise SystemExit("--include-val needs --split identity (the official split has no val part)")
        train_set, val_set = train_set + val_set, []
    make_detector = HaarDetector     # called only if a split's boxes are not cached in the run folder
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                      threads=args.threads, version=args.version, precision=args.precision,
                      model_name=args.model, device=args.device, workers=args.workers, ema=args.ema,
                      val_every=args.val_every, model=dict(args.arch), teacher=args.teacher, distill=args.distill)
    suffix = f"{args.split}_{args.limit or 'all'}"
    train_name = f"train{'+val' if args.include_val else ''}_{suffix}"
    result = train(cfg, train_set, _boxes(args.out, train_name, train_set, make_detector),
                   val_set, _boxes(args.out, f"{val_part}_{suffix}", val_set, make_detector), args.out,
                   resume=args.resume)
    best = "no held-out set" if not val_set else f"best validation NME {result['best_val_nme']:.4f}"
    print(f"{best} after {result['epochs']} epochs, "
          f"{result['elapsed_s'] / 60:.1f} min; shippable weights in {args.out}/model.pt")
    return 0
