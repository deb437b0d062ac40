"""The measurements behind `facetracks bench` (jobs/bench.py): each path timed on one video, the
accuracy and memory checks, and the Ray job's scaling. Each returns plain dicts, so the command
only prints and writes them.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import av
import cv2
import numpy as np
import pandas as pd

from facetracks.models.crop import square_from_box
from facetracks.models.inference import LandmarkPredictor
from facetracks.models.registry import resolve_weights
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.detect import HaarDetector
from facetracks.pipeline.parquet import write_tracks
from facetracks.pipeline.profiles import ProfileParts, get_profile
from facetracks.pipeline.schema import points_from_columns
from facetracks.pipeline.smoothing import SmoothParams, smooth_tracks, table_ids, table_points
from facetracks.pipeline.video import iter_frames
from facetracks.training.metrics import clip_jitter

from .clips import pick_faces, write_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "samples", "pyfeat_WolfgangLanger_Pexels.mp4")
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "ytf68")


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
    write_video(path, out * repeat)
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
    det = HaarDetector(detect_side=1 << 16)
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
    frames, truth = [], []
    for i, s in enumerate(pick_faces(DATA, 12)):         # each face is a shot of 10 frames, drifting right and down
        for k in range(10):
            canvas = np.full((480, 640, 3), 60 + 50 * (i % 3), np.uint8)
            at = np.array([150 + 3 * k, 100 + k])
            canvas[at[1]:at[1] + s.gray.shape[0], at[0]:at[0] + s.gray.shape[1]] = s.gray[..., None]
            frames.append(canvas)
            truth.append(s.points + at)
    path = os.path.join(workdir, "truth.mp4")
    write_video(path, frames)
    return path, truth


def accuracy(parts: ProfileParts, clip: tuple[str, list]) -> dict:
    """NME of the profile as it runs (following) and with the detector on every frame."""
    from facetracks.training.metrics import nme
    path, truth = clip
    out = {}
    for name, params in (("followed", parts.follow), ("per-frame", replace(parts.follow, detect_every=1, batch_size=1))):
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
    with open(resolve_weights(prof.model), "rb") as f:   # bytes, as annotate sends them: no node needs the file
        weights = f.read()
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
