"""The bench's checks beside speed (`facetracks bench`, jobs/bench.py): accuracy (NME against
the truth, on a clip made of labelled identity-test faces) and memory (peak RSS in a fresh
process). Apart from the timed paths (bench_paths.py) and the Ray job's scaling (bench_job.py)
because they measure what a run gets right and holds, not how fast it goes.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd

from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.profiles import ProfileParts
from facetracks.pipeline.schema import points_from_columns

from .bench_paths import ROOT
from .clips import pick_faces, write_video

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "ytf68")


def truth_clip(workdir: str, data_dir: str = DATA, detector=None) -> tuple[str, list] | None:
    """A clip made of labelled identity-test faces (none seen in training), each drifting for 10
    frames on a 640x480 canvas, and its true points per frame. `detector` picks the faces
    (`pick_faces`; default OpenCV's Haar with default settings)."""
    if not os.path.isdir(data_dir):
        return None
    frames, truth = [], []
    for i, s in enumerate(pick_faces(data_dir, 12, detector=detector)):   # each face: a shot of 10 frames, drifting
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
    every_frame = replace(parts.follow, detect_every=1, batch_size=1, max_detect_every=0)
    for name, params in (("followed", parts.follow), ("per-frame", every_frame)):
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


# The child's own peak: VmHWM of its address space where Linux has it. getrusage's ru_maxrss
# survives exec on Linux, so a child started from the bench (which has run every video by then)
# reported the bench's own peak, about 1.4-1.7 GB, instead of its ~0.5 GB.
_RSS = """
import resource, sys
from facetracks.models.inference import LandmarkPredictor
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.detect import HaarDetector
annotate_video(sys.argv[1], "x", HaarDetector(), LandmarkPredictor.load())
try:
    with open("/proc/self/status") as f:
        print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(path: str) -> float:
    out = subprocess.run([sys.executable, "-c", _RSS, path], capture_output=True, text=True, cwd=ROOT, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024
