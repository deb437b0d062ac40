"""`facetracks bench`: throughput of the annotate path against its floor (decode only) and the
seed-style naive path, measured side by side in one run on the same files.

Paths measured per video:
- decode: PyAV decode to upright gray (Y plane), nothing else — the floor of this pipeline.
- one row per annotate profile (accurate, fast): what `annotate --profile P` runs per video
  (decode -> detect/follow -> keypoints -> Parquet), in-process, one actor's worth of work.
- naive: the seed's way — BGR conversion, Haar on every full-size frame, one face per model call
  (the accurate model), no refinement.
Accuracy: on a clip made from labelled YTF-68 identity-test images (when ../shared is there),
NME of each profile as it runs (following faces) and with the detector on every frame.
Steadiness: jitter (median over a clip of each point's distance from the midpoint of its two
neighbours, over the inter-ocular distance) of every video's tracks, raw and smoothed; and on
"moving stills" (labelled faces moved along known smooth paths, jobs/steady.py) NME and jitter
raw vs smoothed beside the truth's own jitter: a smoother that lags shows as a higher NME.
Memory: peak RSS of the default profile on a clip and on the same clip ten times longer, each in
a fresh process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import av
import cv2
import numpy as np
import pandas as pd
import torch

from facetracks.models.crop import square_from_box
from facetracks.models.registry import resolve_weights
from facetracks.models.inference import LandmarkPredictor
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.detect import HaarDetector
from facetracks.pipeline.parquet import write_tracks
from facetracks.pipeline.profiles import PROFILES, ProfileParts, get_profile, load_profile
from facetracks.pipeline.schema import points_from_columns
from facetracks.pipeline.smoothing import SmoothParams, parse_smooth, smooth_tracks, table_ids, table_points
from facetracks.pipeline.video import iter_frames
from facetracks.training.metrics import clip_jitter

from .steady import moving_stills, pick_samples, steadiness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "samples", "pyfeat_WolfgangLanger_Pexels.mp4")
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "ytf68")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure throughput: decode-only vs full vs naive", description=__doc__)
    p.add_argument("videos", nargs="*", help="videos (default: the bundled sample + synthetic 640x480, 1280x720)")
    p.add_argument("--json", default="bench.json", help="where to write the results")
    p.add_argument("--frames", type=int, default=240, help="frames of each synthetic clip")
    p.add_argument("--naive-frames", type=int, default=120, help="frames the (slow) naive path runs on")
    p.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES),
                   help="annotate profiles to measure (default: all)")
    p.add_argument("--actors", default=None, metavar="N,M,...",
                   help="instead of the table: scaling of the Ray annotate job over these actor counts")
    p.add_argument("--address", default=None, help="Ray cluster for --actors (default: start Ray here)")
    p.add_argument("--segment-seconds", type=float, default=4.0, help="segment length for --actors runs")
    p.add_argument("--gpus-per-actor", type=float, default=None,
                   help="for --actors runs: GPU share of each actor (0.25: four per GPU; default 1 with GPUs)")
    p.add_argument("--smooth", type=parse_smooth, default=SmoothParams(),
                   help="smoother whose jitter is reported beside the raw points' (default: annotate's)")
    p.add_argument("--moving-stills", type=int, default=8, metavar="N",
                   help="labelled stills on smooth paths for the NME/jitter-with-smoothing check (0: skip)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS comparison")
    p.add_argument("--no-accuracy", action="store_true", help="skip the NME comparisons (truth clip, moving stills)")
    p.set_defaults(func=run)


def _write(path: str, frames, fps: int = 25) -> None:
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        for img in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def synthetic_clip(path: str, size: tuple[int, int], frames: int, repeat: int = 1) -> str:
    """The bundled sample's face, letterboxed into `size`, `frames` frames (looped `repeat` times)."""
    out = []
    for f in iter_frames(SAMPLE, color=True):
        h, w = f.bgr.shape[:2]
        s = min(size[0] / w, size[1] / h)
        img = cv2.resize(f.bgr, (round(w * s), round(h * s)))
        canvas = np.zeros((size[1], size[0], 3), np.uint8)
        y, x = (size[1] - img.shape[0]) // 2, (size[0] - img.shape[1]) // 2
        canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
        out.append(canvas)
        if len(out) == frames:
            break
    _write(path, out * repeat)
    return path


def decode_only(path: str) -> dict:
    t = time.perf_counter()
    n = sum(1 for _ in iter_frames(path))
    dt = time.perf_counter() - t
    return {"frames": n, "seconds": dt, "fps": n / dt}


def table_jitter(table) -> float:
    """Median jitter of a track table, in inter-ocular units (training.metrics.jitter)."""
    tid, fi = table_ids(table)
    return clip_jitter(tid, fi, table_points(table))


def full_path(path: str, parts: ProfileParts, smooth: SmoothParams | None = None) -> dict:
    smooth = smooth or SmoothParams()
    t = time.perf_counter()
    r = annotate_video(path, os.path.basename(path), parts.detector, parts.predictor, parts.follow)
    t_sm = time.perf_counter()
    table = smooth_tracks(r.table, smooth, (r.info.width, r.info.height))
    t_pq = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        write_tracks(table, os.path.join(d, "t.parquet"), {"bench": True})
    end = time.perf_counter()
    dt = end - t
    st = r.stats
    return {"frames": st.frames, "seconds": dt, "fps": st.frames / dt, "detections": st.detections,
            "faces": st.crops, "stage_s": {"detect": st.detect_s, "landmarks": st.landmarks_s,
                                           "smooth": t_pq - t_sm, "parquet": end - t_pq,
                                           "decode+other": dt - st.detect_s - st.landmarks_s - (end - t_sm)},
            "jitter": {"raw": table_jitter(r.table), "smoothed": table_jitter(table), "smooth": smooth.to_dict()}}


def naive_path(path: str, predictor: LandmarkPredictor, max_frames: int) -> dict:
    """The seed notebook's loop: colour frame, Haar on the full frame, one face per forward."""
    det = HaarDetector(max_side=1 << 16)
    p = replace(predictor, refine=0, flip=False)
    n, t = 0, time.perf_counter()
    with av.open(path) as c:
        for frame in c.decode(c.streams.video[0]):
            bgr = frame.to_ndarray(format="bgr24")
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            for box in det.detect(gray):
                p.predict([gray], square_from_box(box[None, :4], p.cfg.haar))
            n += 1
            if n == max_frames:
                break
    dt = time.perf_counter() - t
    return {"frames": n, "seconds": dt, "fps": n / dt}


def truth_clip(workdir: str) -> tuple[str, list] | None:
    """A clip made of labelled identity-test faces (none seen in training), each drifting for 10
    frames on a 640x480 canvas, and its true points per frame."""
    if not os.path.isdir(DATA):
        return None
    from facetracks.training.boxes import match_detection
    from facetracks.training.data import load_split
    det, faces = HaarDetector(), []
    for s in load_split(DATA, "identity", "test"):
        h, w = s.gray.shape
        if w <= 300 and h <= 230 and match_detection(det.detect(s.gray), s.points) is not None:
            faces.append(s)
        if len(faces) == 12:
            break
    frames, truth = [], []
    for i, s in enumerate(faces):         # each face is a shot of 10 frames, drifting right and down
        for k in range(10):
            canvas = np.full((480, 640, 3), 60 + 50 * (i % 3), np.uint8)
            at = np.array([150 + 3 * k, 100 + k])
            canvas[at[1]:at[1] + s.gray.shape[0], at[0]:at[0] + s.gray.shape[1]] = s.gray[..., None]
            frames.append(canvas)
            truth.append(s.points + at)
    path = os.path.join(workdir, "truth.mp4")
    _write(path, frames)
    return path, truth


def accuracy(parts: ProfileParts, clip: tuple[str, list]) -> dict:
    """NME of the profile as it runs (following) and with the detector on every frame."""
    from facetracks.training.metrics import nme
    path, truth = clip
    out = {}
    for name, params in (("followed", parts.follow), ("per-frame", replace(parts.follow, detect_every=1, batch_frames=1))):
        df = annotate_video(path, "truth.mp4", parts.detector, parts.predictor, params).table.to_pandas()
        df = df[df.track_id.notna()]
        pts = points_from_columns(df)
        e = nme(pts, np.stack([truth[i] for i in df.frame_index]))
        # the face that matches the truth is the one scored; any other on the frame is a false positive
        best = pd.DataFrame({"frame": df.frame_index.to_numpy(), "e": e}).groupby("frame").e
        e = best.min().to_numpy()
        out[name] = {"frames_with_face": int(len(e)), "frames": len(truth), "nme_mean": float(e.mean()),
                     "nme_median": float(np.median(e)), "false_positive_faces": int((best.size() - 1).sum())}
    return out


_RSS = """
import resource, sys
from facetracks.models.inference import LandmarkPredictor
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.detect import HaarDetector
annotate_video(sys.argv[1], "x", HaarDetector(), LandmarkPredictor.load())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(path: str) -> float:
    out = subprocess.run([sys.executable, "-c", _RSS, path], capture_output=True, text=True, cwd=ROOT, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def scaling(videos: list[str], profile: str, counts: list[int], segment_s: float, address: str | None,
            gpus_per_actor: float | None = None) -> dict:
    """The whole `annotate` job (Ray actors, segments, Parquet) per actor count, same inputs,
    fresh output folder each time; efficiency = fps(n) / (n * fps(first count) / first count)."""
    from .inputs import VideoItem
    from .ray_runner import RunOptions, init_ray, run_annotate
    init_ray(address)                   # Ray's own start-up is not the job's time; actor start-up is
    prof = get_profile(profile)
    weights = resolve_weights(prof.model)
    items = [VideoItem(os.path.abspath(v), os.path.basename(v)) for v in videos]
    rows = []
    for n in counts:
        with tempfile.TemporaryDirectory() as out:
            opt = RunOptions(out_dir=out, weights=weights, model_id=prof.model, detector=dict(prof.detector),
                             follow=dict(prof.follow), predictor=dict(prof.predictor), address=address, actors=n,
                             segment_s=segment_s, gpus_per_actor=gpus_per_actor)
            t = time.perf_counter()
            summary = run_annotate(items, opt)
            dt = time.perf_counter() - t
        failed = [k for k, v in summary["videos"].items() if v["status"] != "ok"]
        if failed:
            raise RuntimeError(f"scaling run with {n} actors failed on {failed}")
        frames = sum(v["frames"] for v in summary["videos"].values())
        rows.append({"actors": summary["actors"]["count"], "requested": n, "frames": frames, "seconds": dt, "fps": frames / dt,
                     "device": summary["actors"]["device"], "cpus_per_actor": summary["actors"]["cpus_per_actor"],
                     "gpus_per_actor": summary["actors"]["gpus_per_actor"]})
    base = rows[0]["fps"] / rows[0]["actors"]
    for r in rows:
        r["efficiency"] = r["fps"] / (r["actors"] * base) if base else float("nan")
    return {"profile": profile, "segment_seconds": segment_s, "runs": rows}


def run_scaling(args: argparse.Namespace) -> int:
    counts = [int(x) for x in args.actors.split(",") if x.strip()]
    res = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()}, "scaling": {}}
    with tempfile.TemporaryDirectory() as work:
        # default: a minute of 640x480 video, so that actor start-up is a small part of the time
        videos = args.videos or [synthetic_clip(os.path.join(work, "minute_640x480.mp4"), (640, 480), args.frames, repeat=6)]
        print(f"{'profile':9} {'actors':>6} {'frames':>7} {'seconds':>8} {'fps':>8} {'efficiency':>10}  device")
        for name in args.profiles:
            sc = res["scaling"][name] = scaling(videos, name, counts, args.segment_seconds, args.address,
                                                args.gpus_per_actor)
            for r in sc["runs"]:
                print(f"{name:9} {r['actors']:6d} {r['frames']:7d} {r['seconds']:8.1f} {r['fps']:8.1f} {r['efficiency']:10.2f}  {r['device']}")
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {args.json}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.actors:
        return run_scaling(args)
    profiles = [load_profile(n) for n in args.profiles]
    naive_pred = load_profile("accurate").predictor
    res = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                       "device": str(naive_pred.device),
                       "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                       "platform": platform.platform(), "torch": torch.__version__, "av": av.__version__,
                       "opencv": cv2.__version__},
           "profiles": {p.name: {"model": p.predictor.model_id, "detector": get_profile(p.name).detector,
                                 "follow": p.follow.to_dict(), "refine": p.predictor.refine, "flip": p.predictor.flip}
                        for p in profiles},
           "videos": []}
    with tempfile.TemporaryDirectory() as work:
        videos = args.videos or [SAMPLE, synthetic_clip(os.path.join(work, "synthetic_640x480.mp4"), (640, 480), args.frames),
                                 synthetic_clip(os.path.join(work, "synthetic_1280x720.mp4"), (1280, 720), args.frames)]
        print(f"{'video':34} {'path':9} {'fps':>8} {'x decode':>9} {'x naive':>8}  time share detect/landmarks/parquet/decode+other")
        for v in videos:
            dec, naive = decode_only(v), naive_path(v, naive_pred, args.naive_frames)
            row = {"video": os.path.basename(v), "decode": dec, "naive": naive, "profiles": {}}
            print(f"{row['video'][:34]:34} {'decode':9} {dec['fps']:8.1f} {1:9.3f} {dec['fps'] / naive['fps']:8.1f}")
            for p in profiles:
                full = full_path(v, p, args.smooth)
                full["over_decode"], full["over_naive"] = full["fps"] / dec["fps"], full["fps"] / naive["fps"]
                full["stage_share"] = {k: round(x / full["seconds"], 3) for k, x in full["stage_s"].items()}
                row["profiles"][p.name] = full
                print(f"{'':34} {p.name:9} {full['fps']:8.1f} {full['over_decode']:9.3f} {full['over_naive']:8.1f}  "
                      + "/".join(f"{full['stage_share'][k]:.2f}" for k in ("detect", "landmarks", "parquet", "decode+other"))
                      + f"  jitter {100 * full['jitter']['raw']:.3f}% raw, {100 * full['jitter']['smoothed']:.3f}% smoothed")
            print(f"{'':34} {'naive':9} {naive['fps']:8.1f} {naive['fps'] / dec['fps']:9.3f} {1:8.1f}")
            res["videos"].append(row)
        clip = None if args.no_accuracy else truth_clip(work)
        if clip:
            res["accuracy"] = {}
            for p in profiles:
                acc = res["accuracy"][p.name] = accuracy(p, clip)
                print(f"accuracy, {p.name}, on a clip of labelled identity-test faces: "
                      + ", ".join(f"{k} NME {100 * a['nme_mean']:.2f}% ({a['frames_with_face']}/{a['frames']} frames)"
                                  for k, a in acc.items()))
        if args.moving_stills and not args.no_accuracy and os.path.isdir(DATA):
            clip = moving_stills(os.path.join(work, "moving.mp4"), pick_samples(DATA, args.moving_stills))
            res["steadiness"] = {}
            for p in profiles:
                s = steadiness(p, clip, args.smooth)
                for k in ("raw", "smoothed"):
                    s[k].pop("nme_per_frame")
                res["steadiness"][p.name] = s
                print(f"steadiness, {p.name}, {args.moving_stills} labelled stills on smooth paths (2-10 px/frame): "
                      f"NME {100 * s['raw']['nme_mean']:.2f}% raw, {100 * s['smoothed']['nme_mean']:.2f}% smoothed; "
                      f"jitter {100 * s['raw']['jitter_median']:.3f}% raw, {100 * s['smoothed']['jitter_median']:.3f}% "
                      f"smoothed, truth {100 * s['raw']['truth_jitter_median']:.3f}%")
        if not args.no_memory:
            short = synthetic_clip(os.path.join(work, "mem_short.mp4"), (640, 480), 60)
            long = synthetic_clip(os.path.join(work, "mem_long.mp4"), (640, 480), 60, repeat=10)
            a, b = peak_rss_mb(short), peak_rss_mb(long)
            res["memory"] = {"short_frames": 60, "long_frames": 600, "peak_rss_mb_short": a, "peak_rss_mb_long": b,
                             "ratio": b / a}
            print(f"peak RSS: {a:.0f} MB for 60 frames, {b:.0f} MB for 600 frames (x{b / a:.2f})")
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {args.json}")
    return 0
