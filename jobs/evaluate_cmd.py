"""`facetracks evaluate`: NME, failure rate, per-region NME and detection rate of a weights file;
with `--moving N`, also NME and jitter on video, raw and smoothed: N labelled stills of the split
moved along known smooth paths (jobs/steady.py)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from facetracks.pipeline.profiles import DEFAULT_PROFILE, PROFILES, build_parts, get_profile
from facetracks.pipeline.smoothing import SmoothParams
from facetracks.training.evaluate import evaluate

from .argtypes import smooth


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="measure a model's accuracy on a labelled split", description=__doc__)
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                   help="annotate profile whose model, detector and passes are measured")
    p.add_argument("--weights", default=None, help="checkpoint file or shipped model name (default: the profile's)")
    p.add_argument("--data", required=True, help="YTF-68 folder")
    p.add_argument("--split", default="identity", choices=["identity", "official"],
                   help="identity: no person in two parts (identity_split.csv); official: the dataset's train and test "
                        "folders, which share people (default %(default)s)")
    p.add_argument("--part", default="test", help="part of the split: train, val or test (official: train or test; default %(default)s)")
    p.add_argument("--boxes", default="haar", choices=["haar", "gt"], help="face squares from Haar or from the truth (default %(default)s)")
    p.add_argument("--refine", type=int, default=None, help="re-crop passes around predicted points (default: the profile's)")
    p.add_argument("--no-flip", action="store_true", help="skip mirrored test-time averaging")
    p.add_argument("--min-score", type=float, default=None,
                   help="score below which annotate drops a face (default: the profile's): faces kept, false faces")
    p.add_argument("--moving", type=int, default=0, metavar="N",
                   help="also run the profile on a video of N test stills moving along smooth paths: "
                        "NME and jitter, raw and smoothed (0: skip)")
    p.add_argument("--smooth", type=smooth, default=SmoothParams(), help="smoother for --moving")
    p.add_argument("--out", default=None, help="folder for eval JSON, CED plot and prediction grid")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    prof = get_profile(args.profile)
    passes = {**prof.predictor, **({"refine": args.refine} if args.refine is not None else {}),
              **({"flip": False, "flip_last": False} if args.no_flip else {})}
    parts = build_parts(args.profile, args.weights or prof.model, prof.detector, prof.follow, passes)
    min_score = args.min_score if args.min_score is not None else parts.follow.min_score
    res = evaluate(parts.predictor, args.data, args.split, args.boxes, parts.detector.detect, args.out, args.part,
                   min_score)
    res["profile"] = args.profile
    res.pop("per_image")
    if args.moving:
        from .clips import pick_faces
        from .steady import moving_stills, steadiness
        with tempfile.TemporaryDirectory() as work:
            clip = moving_stills(os.path.join(work, "moving.mp4"), pick_faces(args.data, args.moving, max_h=260, split=args.split, part=args.part))
            res["moving"] = steadiness(parts, clip, args.smooth)
        if args.out:
            with open(os.path.join(args.out, f"moving_{args.split}_{args.part}.json"), "w") as f:
                json.dump(res["moving"], f, indent=2)
        for k in ("raw", "smoothed"):
            res["moving"][k].pop("nme_per_frame")
    print(json.dumps(res, indent=2))
    print(f"{args.split} {args.part} ({args.profile}): NME {100 * res['nme_mean']:.2f} % on {100 * res['faces_found']:.1f} % found; "
          f"min-score {min_score:g} keeps {100 * res['faces_kept']:.1f} % (NME {100 * res['nme_mean_kept']:.2f} %), "
          f"false faces {res['false_faces']} ({100 * res['false_face_share']:.1f} % of kept)", file=sys.stderr)
    return 0
