"""`facetracks annotate`: videos -> per-frame 68-point landmark tracks in Parquet, on Ray actors."""
from __future__ import annotations

import argparse
import sys

from models.registry import ModelCfg, default_weights, load_checkpoint
from pipeline.detect import HaarDetector
from pipeline.keypoints import FollowParams

from pipeline.filters import FILTERS, get_filter

from .inputs import expand_inputs
from .render_cmd import add_render_options
from .ray_runner import RunOptions, run_annotate


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("annotate", help="landmark every frame of every video into Parquet", description=__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video files, folders (recursive) or globs")
    p.add_argument("--out", required=True, help="output folder: <relative path>.parquet per video, _summary.json")
    p.add_argument("--weights", default=None, help="landmark checkpoint (default: the shipped model)")
    p.add_argument("--address", default=None, help="Ray cluster (auto, ray://host:port); default: start Ray here")
    p.add_argument("--actors", type=int, default=0, help="model actors (default: one per GPU, or per 2 CPUs)")
    p.add_argument("--cpus-per-actor", type=float, default=0)
    p.add_argument("--gpus-per-actor", type=float, default=None, help="fractions allowed; default 1 if GPUs")
    p.add_argument("--batch-size", type=int, default=FollowParams().batch_frames,
                   help="most frames whose faces go through the network in one batch")
    p.add_argument("--segment-seconds", type=float, default=120.0,
                   help="split longer videos at keyframes this far apart, over several actors (0: never)")
    p.add_argument("--overwrite", action="store_true", help="redo videos whose output is current")
    p.add_argument("--render", default=None, metavar="FILTER",
                   help=f"also write DIR/<relative path>.<FILTER>.mp4 ({', '.join(FILTERS)}, or 'overlay' with --overlay)")
    add_render_options(p)
    g = p.add_argument_group("detection and following")
    d, f = HaarDetector.__dataclass_fields__, FollowParams()
    g.add_argument("--scale-factor", type=float, default=d["scale_factor"].default)
    g.add_argument("--min-neighbors", type=int, default=d["min_neighbors"].default)
    g.add_argument("--min-face", type=int, default=d["min_size"].default, help="smallest face side, pixels")
    g.add_argument("--detect-side", type=int, default=d["max_side"].default,
                   help="longest side the detector sees (frames are downscaled to it)")
    g.add_argument("--detect-every", type=int, default=f.detect_every,
                   help="frames between detections while faces are followed (1: every frame)")
    g.add_argument("--idle-detect-every", type=int, default=f.idle_detect_every,
                   help="frames between detections while no face is followed")
    g.add_argument("--min-score", type=float, default=f.min_score, help="confidence below which a face is lost")
    g.add_argument("--max-faces", type=int, default=f.max_faces)
    g.add_argument("--refine", type=int, default=1, help="re-crop passes around predicted points")
    g.add_argument("--no-flip", action="store_true", help="skip mirrored test-time averaging (faster)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    items = expand_inputs(args.inputs)
    if not items:
        print(f"facetracks annotate: no videos found in {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    render = None
    if args.render:
        try:   # fail fast on a bad filter or overlay, before any video is decoded
            get_filter(args.render, args.overlay, args.anchor)
        except ValueError as e:
            print(f"facetracks annotate: {e}", file=sys.stderr)
            return 2
        render = {"name": args.render, "overlay": args.overlay, "anchor": args.anchor, "crf": args.crf,
                  "preset": args.preset}
    weights = args.weights or default_weights()
    cfg = ModelCfg.from_dict(load_checkpoint(weights)["config"])
    detector = {"scale_factor": args.scale_factor, "min_neighbors": args.min_neighbors,
                "min_size": args.min_face, "max_side": args.detect_side}
    follow = {"detect_every": args.detect_every, "idle_detect_every": args.idle_detect_every,
              "min_score": args.min_score, "max_faces": args.max_faces,
              "batch_frames": args.batch_size}
    predictor = {"refine": args.refine, "flip": not args.no_flip}
    opt = RunOptions(out_dir=args.out, weights=weights, model_id=f"{cfg.name}@{cfg.version}", detector=detector,
                     follow=follow, predictor=predictor, address=args.address, actors=args.actors,
                     cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
                     overwrite=args.overwrite, render=render, segment_s=args.segment_seconds,
                     # trackers restart per segment, so the segment length is part of the result
                     params_for_key={"detector": detector, "follow": follow, "predictor": predictor,
                                     "segment_seconds": args.segment_seconds})
    summary = run_annotate(items, opt)
    v = summary["videos"]
    ok = [n for n, e in v.items() if e["status"] == "ok"]
    skipped = [n for n, e in v.items() if e["status"] == "skipped"]
    failed = {n: e["error"] for n, e in v.items() if e["status"] == "failed"}
    frames = sum(e.get("frames", 0) for e in v.values())
    rendered = [e["rendered"] for e in v.values() if e.get("rendered")]
    print(f"annotate: {len(ok)} ok, {len(skipped)} skipped (current), {len(failed)} failed; "
          f"{frames} frames in {summary['seconds']:.1f} s; summary in {args.out}/_summary.json")
    for path in rendered:
        print(f"  rendered: {path}")
    for name, err in failed.items():
        print(f"  failed: {name}: {err}", file=sys.stderr)
    return 1 if failed else 0
