"""The landmark score's evaluation set: faces whose points are right, and crops whose points
cannot be, through each profile's predictor; one record per face (score parts, pose, NME).

Sets (labelled: NME against the YTF labels, transformed with the image; clips: no labels):
  true         Haar boxes on the labelled stills (as `facetracks evaluate` crops them)
  mirrored     the same, on the horizontally mirrored still (a real face: should be kept)
  shifted      the label square moved by 0.6-0.9 of its side (past what the refine pass recovers)
  scaled       the label square x0.3 or x3
  rotated      the still rotated 60-120 degrees either way about the face
  upside_down  the still flipped top to bottom (a mirror the network was never shown)
  occluded     half the face (top, bottom, left or right) painted over with noise or flat grey
  background   squares of the face's size centred 1.1-1.6 sides away from it
  still_fp     detections of a lenient cascade (LENIENT) on the stills, a side or more from the
               labelled face: no labels (most are background, some are other people's faces)
  clip_fp      detections of the lenient cascade on pyfeat_no_face.mp4 (no face in it, and the
               profiles' own cascades fire on none of its frames; every detection is false)
  clip_haar    the profile's Haar detections on every shared clip with faces (FACE_CLIPS), every
               3rd frame: real faces (and whatever else the cascade takes for one), no labels
  clip_turned  the same clips followed as annotate follows them (min-score 0: nothing dropped),
               every 3rd frame: the square around the followed points read again; faces followed
               into turns the cascade would not find; yaw from the predicted points
Identity parts: `--part train` (calibration: choices are made here; all 2,943 train stills, a
300-still sample with `--limit 300` until 2026.11.29)
or `--part test` (reported). Raw records go to runs/score/<profile>_<part>.npz (git-ignored);
summarise.py turns them into docs/score/summary.json and the figure.
Run: python docs/score/build_eval.py --data ../shared/data/ytf68 --videos ../shared/videos --profile accurate --part test
"""
from __future__ import annotations

import argparse
import os

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from facetracks.models.crop import square_from_points
from facetracks.models.inference import LandmarkPredictor
from facetracks.models.landmarks68 import FLIP_PERM
from facetracks.models.pose import head_pose
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.detect import HaarDetector
from facetracks.pipeline.follow import FollowParams
from facetracks.pipeline.profiles import ProfileParts, get_profile
from facetracks.pipeline.schema import points_from_columns
from facetracks.pipeline.video import iter_frames
from facetracks.training.boxes import match_detection
from facetracks.training.data import load_split
from facetracks.training.metrics import nme

SETS = ("true", "mirrored", "shifted", "scaled", "rotated", "upside_down", "occluded", "background",
        "still_fp", "clip_fp", "clip_haar", "clip_turned")
FACE_CLIPS = ("liveportrait_driving_d0.mp4", "liveportrait_driving_d6.mp4", "liveportrait_driving_d9.mp4",
              "liveportrait_source_s18.mp4", "pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4",
              "pyfeat_face_noface.mov", "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4")
LENIENT = {"min_neighbors": 1, "detect_side": 960, "scale_factor": 1.05}   # a cascade tuned to fire too often


def _rotate(gray: np.ndarray, pts: np.ndarray, angle: float, centre) -> tuple[np.ndarray, np.ndarray]:
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
    img = cv2.warpAffine(gray, m, gray.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
    return img, (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def labelled_sets(samples, detect, lenient, to_square, rng) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(set, gray, square, truth points) for every labelled crop; truth NaN never (all labelled)."""
    out = []
    for s in samples:
        g, p = s.gray, s.points
        h, w = g.shape
        sq = square_from_points(p)
        box = match_detection(detect(g), p)
        if box is not None:
            out.append(("true", g, to_square(box[None])[0], p))
        gm = np.ascontiguousarray(g[:, ::-1])
        pm = p[FLIP_PERM].copy()
        pm[:, 0] = w - 1 - pm[:, 0]
        box = match_detection(detect(gm), pm)
        if box is not None:
            out.append(("mirrored", gm, to_square(box[None])[0], pm))
        a = rng.uniform(0, 2 * np.pi)
        out.append(("shifted", g, sq + np.r_[rng.uniform(0.6, 0.9) * sq[2] * np.r_[np.cos(a), np.sin(a)], 0], p))
        out.append(("scaled", g, sq * np.r_[1, 1, rng.choice([0.3, 3.0])], p))
        gr, pr = _rotate(g, p, rng.choice([-1, 1]) * rng.uniform(60, 120), sq[:2])
        out.append(("rotated", gr, square_from_points(pr), pr))
        gu, pu = np.ascontiguousarray(g[::-1]), p.copy()
        pu[:, 1] = h - 1 - pu[:, 1]
        out.append(("upside_down", gu, square_from_points(pu), pu))
        go = g.copy()
        x0, y0 = (sq[:2] - sq[2] / 2).astype(int)
        x1, y1 = (sq[:2] + sq[2] / 2).astype(int)
        cx, cy = sq[:2].astype(int)
        side = rng.integers(4)
        ys, xs = [(slice(max(y0, 0), cy), slice(max(x0, 0), x1)), (slice(cy, y1), slice(max(x0, 0), x1)),
                  (slice(max(y0, 0), y1), slice(max(x0, 0), cx)), (slice(max(y0, 0), y1), slice(cx, x1))][side]
        patch = go[ys, xs]
        go[ys, xs] = rng.integers(0, 256, patch.shape, dtype=np.uint8) if rng.random() < 0.5 else int(g.mean())
        out.append(("occluded", go, sq, p))
        a = rng.uniform(0, 2 * np.pi)
        out.append(("background", g, sq + np.r_[rng.uniform(1.1, 1.6) * sq[2] * np.r_[np.cos(a), np.sin(a)], 0], p))
        for b in lenient(g):
            if np.hypot(*(b[:2] + b[2:4] / 2 - sq[:2])) > sq[2]:
                out.append(("still_fp", g, to_square(b[None, :4])[0]))   # unlabelled: some are real faces behind
    return out


def clip_sets(videos: str, detect, lenient, to_square, follow=None):
    """(set, gray, square) for detections on the shared clips; with `follow(path)` (the rows of
    annotate on it), also the followed faces."""
    out = []
    for name, tag, step in [("pyfeat_no_face.mp4", "clip_fp", 1)] + [(c, "clip_haar", 3) for c in FACE_CLIPS]:
        path = os.path.join(videos, name)
        rows = follow(path) if follow and tag == "clip_haar" else {}
        for f in iter_frames(path):
            if f.index % step == 0:
                out += [(tag, f.gray, to_square(b[None, :4])[0]) for b in (lenient if tag == "clip_fp" else detect)(f.gray)]
                out += [("clip_turned", f.gray, square_from_points(p)) for p in rows.get(f.index, [])]
    return out


def followed(parts: ProfileParts):
    """path -> {frame_index: [points of each face]} from annotate with nothing dropped."""
    def rows(path: str) -> dict[int, list[np.ndarray]]:
        follow = FollowParams(**{**parts.follow.to_dict(), "min_score": 0.0})
        t = annotate_video(path, os.path.basename(path), parts.detector, parts.predictor, follow).table
        df = t.filter(pa.compute.is_valid(t.column("track_id"))).to_pandas()
        out: dict[int, list[np.ndarray]] = {}
        for fi, p in zip(df.frame_index, points_from_columns(df)):
            out.setdefault(int(fi), []).append(p)
        return out
    return rows


def run(predictor: LandmarkPredictor, items: list, batch: int = 128) -> dict:
    recs = {k: [] for k in ("set", "score", "mirror", "passes", "shape_distance", "contrast", "yaw", "pitch", "roll",
                            "nme")}
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        pts, parts = predictor.predict_with_parts([c[1] for c in chunk], np.stack([c[2] for c in chunk]))
        for j, c in enumerate(chunk):
            pose = head_pose(pts[j:j + 1], c[1].shape[::-1])[0]
            recs["set"].append(c[0])
            recs["score"].append(parts.score[j])
            recs["mirror"].append(parts.mirror[j])
            recs["passes"].append(parts.passes[j])
            recs["shape_distance"].append(parts.shape_distance[j])
            recs["contrast"].append(parts.contrast[j])
            recs["yaw"].append(pose[0]), recs["pitch"].append(pose[1]), recs["roll"].append(pose[2])
            recs["nme"].append(float(nme(pts[j:j + 1], c[3][None])[0]) if len(c) > 3 else np.nan)
    return {k: np.asarray(v) for k, v in recs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--videos", required=True)
    ap.add_argument("--profile", default="accurate")
    ap.add_argument("--part", default="test", choices=["train", "val", "test"])
    ap.add_argument("--limit", type=int, default=None, help="stills per identity part (default: all)")
    ap.add_argument("--out", default="runs/score")
    args = ap.parse_args()
    prof = get_profile(args.profile)
    predictor = LandmarkPredictor.load(prof.model, **prof.predictor)
    det = HaarDetector(**prof.detector)
    rng = np.random.default_rng(0)
    samples = load_split(args.data, "identity", args.part)
    if args.limit:
        samples = [samples[i] for i in sorted(rng.choice(len(samples), args.limit, replace=False))]
    lenient = HaarDetector(**LENIENT).detect
    items = labelled_sets(samples, det.detect, lenient, predictor.squares_from_boxes, rng)
    parts = ProfileParts(args.profile, det, predictor, FollowParams(**prof.follow))
    items += clip_sets(args.videos, det.detect, lenient, predictor.squares_from_boxes, followed(parts))
    recs = run(predictor, items)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.profile}_{args.part}.npz")
    np.savez(path, **recs)
    print(path, {s: int((recs["set"] == s).sum()) for s in SETS})


if __name__ == "__main__":
    main()
