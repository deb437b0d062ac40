"""`facetracks evaluate`: NME, failure rate, per-region NME and detection rate of a weights file."""
from __future__ import annotations

import argparse
import json

from models.inference import LandmarkPredictor
from pipeline.detect import HaarDetector
from pipeline.profiles import DEFAULT_PROFILE, PROFILES, get_profile
from training.evaluate import evaluate


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="measure a model's accuracy on a labelled split", description=__doc__)
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=sorted(PROFILES),
                   help="annotate profile whose model, detector and passes are measured")
    p.add_argument("--weights", default=None, help="checkpoint file or shipped model name (default: the profile's)")
    p.add_argument("--data", required=True, help="YTF-68 folder")
    p.add_argument("--split", default="identity", choices=["identity", "official"])
    p.add_argument("--part", default="test", help="part of the split (train, val, test)")
    p.add_argument("--boxes", default="haar", choices=["haar", "gt"], help="face squares from Haar or from the truth")
    p.add_argument("--refine", type=int, default=None, help="re-crop passes around predicted points (default: the profile's)")
    p.add_argument("--no-flip", action="store_true", help="skip mirrored test-time averaging")
    p.add_argument("--out", default=None, help="folder for eval JSON, CED plot and prediction grid")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    prof = get_profile(args.profile)
    passes = {**prof.predictor, **({"refine": args.refine} if args.refine is not None else {}),
              **({"flip": False} if args.no_flip else {})}
    predictor = LandmarkPredictor.load(args.weights or prof.model, **passes)
    detector = HaarDetector(**prof.detector)
    res = evaluate(predictor, args.data, args.split, args.boxes, detector.detect, args.out, args.part)
    res["profile"] = args.profile
    res.pop("per_image")
    print(json.dumps(res, indent=2))
    return 0
