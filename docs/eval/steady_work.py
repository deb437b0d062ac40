"""Issue 15 levers, measured against labels: work skipped where nothing changes.

- `settled_move` / `settled_score` (models/inference.py): a followed face whose first-pass square
  barely moved, and that the mirrored read trusts, skips the refine pass.
- `max_detect_every` (pipeline/follow.py): after a detection round that changed nothing, the next
  waits twice as long, up to the maximum.

Labelled faces of the *val* identities only (a choice must not look at the test identities):
moving stills and head shakes (jobs/steady.py), the hand-sized blob of occlusion.py, and a clip
where a second face comes into each of 8 steady 64-frame shots (frames until it is emitted).
Speed: in-process annotate on the shared clips, one run each, this machine. Run from the repo:
`python docs/eval/steady_work.py` writes docs/eval/steady_work.json.
"""
import json
import os
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

from facetracks.jobs.clips import pick_faces, write_video
from facetracks.jobs.steady import moving_stills, score_table
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.profiles import load_profile
from facetracks.pipeline.schema import points_from_columns

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import occlusion  # noqa: E402  (its occluded clip and measure)

ROOT = os.path.join(HERE, "..", "..")
DATA = os.path.join(ROOT, "..", "shared", "data", "ytf68")
VIDEOS = os.path.join(ROOT, "..", "shared", "videos")
CLIPS = ("pyfeat_WolfgangLanger_Pexels.mp4", "liveportrait_driving_d6.mp4", "liveportrait_source_s18.mp4",
         "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4")
SHOT = 64
torch.set_num_threads(2)


def entering_clip(path: str, faces) -> list[int]:
    """8 steady shots (a cut between them): face A drifts slowly; face B appears at frame 5 + 7i of
    shot i and stays. Returns the frames where B appears."""
    frames, appear = [], []
    for i in range(8):
        a, b = faces[2 * i], faces[2 * i + 1]
        t0 = 5 + 7 * i
        for k in range(SHOT):
            canvas = np.full((480, 640), 60 + 50 * (i % 3), np.uint8)
            h, w = a.gray.shape
            canvas[60 + k // 4:60 + k // 4 + h, 20 + k:20 + k + w] = a.gray
            if k >= t0:
                h, w = b.gray.shape
                canvas[200:200 + h, 330:330 + w] = b.gray
            frames.append(np.repeat(canvas[..., None], 3, axis=2))
        appear.append(i * SHOT + t0)
    write_video(path, frames)
    return appear


def entering(parts, follow, path: str, appear: list[int]) -> dict:
    r = annotate_video(path, "entering.mp4", parts.detector, parts.predictor, follow)
    df = r.table.to_pandas()
    df = df[df.track_id.notna()]
    fi, cx = df.frame_index.to_numpy(), points_from_columns(df)[:, :, 0].mean(1)
    late = []
    for i, f0 in enumerate(appear):      # B is the face right of x = 330
        seen = fi[(cx > 330) & (fi >= f0) & (fi < (i + 1) * SHOT)]
        late.append(int(seen.min() - f0) if len(seen) else SHOT - (f0 % SHOT))
    return {"frames_late_mean": float(np.mean(late)), "frames_late_max": int(max(late)), "late": late,
            "detections": r.stats.detections}


def labelled(parts, follow, clips: dict) -> dict:
    out = {}
    for name in ("moving", "shake"):
        r = annotate_video(clips[name].path, name, parts.detector, parts.predictor, follow)
        s = score_table(r.table, clips[name])
        out[name] = {"nme": s["nme_mean"], "frames_with_face": s["frames_with_face"], "jitter": s["jitter_median"]}
    o = occlusion.measure(parts, follow, *clips["occluded"])
    out["occluded"] = {k: o[k] for k in ("clear_emitted", "clear_nme", "covered_emitted", "covered_nme",
                                         "covered_wrong", "track_ids", "detections")}
    out["entering"] = entering(parts, follow, *clips["entering"])
    return out


def speed(parts, follow) -> dict:
    out = {}
    for c in CLIPS:
        t = time.perf_counter()
        r = annotate_video(os.path.join(VIDEOS, c), c, parts.detector, parts.predictor, follow)
        dt = time.perf_counter() - t
        out[c] = {"fps": r.stats.frames / dt, "faces": r.stats.faces, "detections": r.stats.detections,
                  "crops": r.stats.crops}
    return out


def val_clips() -> dict:
    """The labelled clips `labelled` reads, made of val-identity faces in a temporary folder."""
    d = tempfile.mkdtemp()
    val = pick_faces(DATA, 16, split="identity", part="val")
    still = pick_faces(DATA, 12, split="identity", part="val", max_h=260)
    opath = os.path.join(d, "occluded.mp4")
    return {"moving": moving_stills(os.path.join(d, "moving.mp4"), still),
            "shake": moving_stills(os.path.join(d, "shake.mp4"), still, shake=True),
            "occluded": (opath, *occlusion.occluded_clip(opath, val)),
            "entering": (os.path.join(d, "entering.mp4"), entering_clip(os.path.join(d, "entering.mp4"), val))}


def main() -> None:
    clips = val_clips()
    variants = {"accurate": {"before": ({"settled_move": 0.0}, {"max_detect_every": 0}),
                             "settled": ({}, {"max_detect_every": 0}),
                             "settled + 8-16 (default)": ({}, {}),
                             "settled + 8-32": ({}, {"max_detect_every": 32})},
                "fast": {"before": ({}, {"max_detect_every": 0}),
                         "24-48 (default)": ({}, {})}}
    out = {}
    for prof, vs in variants.items():
        parts = load_profile(prof)
        for name, (pred, follow) in vs.items():
            p = replace(parts, predictor=replace(parts.predictor, **pred))
            f = replace(parts.follow, **follow)
            row = {"predictor": pred, "follow": follow, **labelled(p, f, clips), "speed": speed(p, f)}
            out[f"{prof} {name}"] = row
            print(f"{prof} {name}:", json.dumps({k: v for k, v in row.items() if k not in ("predictor", "follow")}),
                  flush=True)
    with open(os.path.join(HERE, "steady_work.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
