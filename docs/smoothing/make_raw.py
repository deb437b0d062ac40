"""Build the RAW_DIR that measure.py reads: every profile's unsmoothed points on the single-face
shared clips, the moving stills and the head-shake clip (identity-test stills, as the bench's), with
their truth. In-process `annotate_video`, which is what `facetracks annotate --smooth none` writes.

    python docs/smoothing/make_raw.py RAW_DIR && python docs/smoothing/measure.py RAW_DIR
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pyarrow.parquet as pq
import torch

from facetracks.jobs.benchmarks import DATA
from facetracks.jobs.clips import pick_faces
from facetracks.jobs.steady import moving_stills
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.profiles import PROFILES, load_profile

VIDEOS = os.path.join(os.path.dirname(DATA), "..", "videos")
CLIPS = ("liveportrait_driving_d0.mp4", "liveportrait_driving_d6.mp4", "liveportrait_driving_d9.mp4",
         "liveportrait_source_s18.mp4", "pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_face_noface.mov",
         "pyfeat_single_face.mp4", "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4")


def main(raw: str) -> None:
    torch.set_num_threads(2)
    labelled = {}
    for name, kw, n in (("moving", {}, 10), ("shake", {"frames_each": 40, "seed": 1, "shake": True}, 8)):
        os.makedirs(os.path.join(raw, name), exist_ok=True)
        clip = moving_stills(os.path.join(raw, name, "clip.mp4"), pick_faces(DATA, n, max_h=260), **kw)
        np.savez(os.path.join(raw, name, "truth.npz"), truth=clip.truth, shot=clip.shot)
        labelled[name] = clip
    for prof in PROFILES:
        parts = load_profile(prof)
        os.makedirs(os.path.join(raw, prof), exist_ok=True)
        for c in CLIPS:
            r = annotate_video(os.path.join(VIDEOS, c), c, parts.detector, parts.predictor, parts.follow)
            pq.write_table(r.table, os.path.join(raw, prof, f"{os.path.splitext(c)[0]}.parquet"))
        for name, clip in labelled.items():
            r = annotate_video(clip.path, name, parts.detector, parts.predictor, parts.follow)
            pq.write_table(r.table, os.path.join(raw, name, f"{prof}.parquet"))
        print(prof, "done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
