"""One video through each path `facetracks bench` times side by side: decode only (the floor),
the annotate path per profile (with its jitter raw and smoothed), the seed-style naive loop and the
dlib peer (optional, with why it cannot run here); and the synthetic clips they run on. Kept
apart from the Ray job's scaling (bench_job.py) and the accuracy and memory checks
(benchmarks.py): these only measure one path on one file, in-process.
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace

import av
import cv2
import numpy as np

from facetracks.models.crop import square_from_box
from facetracks.models.inference import LandmarkPredictor
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.detect import HaarDetector
from facetracks.pipeline.parquet import write_tracks
from facetracks.pipeline.profiles import ProfileParts
from facetracks.pipeline.smoothing import SmoothParams, smooth_tracks, table_ids, table_points
from facetracks.pipeline.video import iter_frames
from facetracks.training.metrics import clip_jitter

from .clips import letterboxed, write_video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "samples", "pyfeat_WolfgangLanger_Pexels.mp4")


def synthetic_clip(path: str, size: tuple[int, int], frames: int, repeat: int = 1, source: str = SAMPLE) -> str:
    """`source`'s frames (default: the bundled sample), letterboxed into `size`, `frames` frames
    (the source looped if shorter), the whole looped `repeat` times."""
    out = list(letterboxed(source, size, frames))
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
    # as the annotate job runs it: with smoothing, the pose is fitted once, to the smoothed points
    r = annotate_video(path, os.path.basename(path), parts.detector, parts.predictor, parts.follow,
                       pose=smooth.method == "none")
    t_sm = time.perf_counter()
    table = smooth_tracks(r.table, smooth, (r.info.width, r.info.height))
    t_pq = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        write_tracks(table, os.path.join(d, "t.parquet"), {"bench": True})
    end = time.perf_counter()
    dt = end - t
    st = r.stats
    return {"frames": st.frames, "seconds": dt, "fps": st.frames / dt, "detections": st.detections,
            "partial_scans": st.partial_scans, "skipped_scans": st.skipped_scans, "faces": st.crops,
            "stage_s": {"detect": st.detect_s, "landmarks": st.landmarks_s, "smooth": t_pq - t_sm,
                        "parquet": end - t_pq, "decode+other": dt - st.detect_s - st.landmarks_s - (end - t_sm)},
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


# The dlib row (issue 15): the usual CPU way to 68 points on video. Optional: from the `peers`
# extra (pip install -e '.[peers]': dlib-bin, face-recognition-models); skipped when absent.
DLIB_INSTALL = "pip install -e '.[peers]' (dlib-bin, face-recognition-models)"


def dlib_predictor_file() -> str:
    """face_recognition_models' shape_predictor_68_face_landmarks.dat. Its
    `pose_predictor_model_location()` imports pkg_resources, which setuptools >= 81 no longer
    ships: then the file is found beside the package without importing it."""
    import importlib.util
    try:
        import face_recognition_models
        path = face_recognition_models.pose_predictor_model_location()
    except ModuleNotFoundError as e:
        if e.name != "pkg_resources":
            raise
        spec = importlib.util.find_spec("face_recognition_models")
        path = os.path.join(spec.submodule_search_locations[0], "models", "shape_predictor_68_face_landmarks.dat")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no 68-point shape predictor at {path}")
    return path


def dlib_missing() -> str | None:
    """Why the dlib row cannot run here (None when it can)."""
    try:
        import dlib  # noqa: F401
    except ImportError as e:
        return f"dlib not importable ({e}); {DLIB_INSTALL}"
    try:
        dlib_predictor_file()
    except (ImportError, OSError) as e:
        return f"no dlib 68-point model ({e}); {DLIB_INSTALL}"
    return None


def dlib_path(path: str, max_frames: int, upsample: int = 0) -> dict:
    """dlib on every frame: the HOG frontal face detector with `upsample` 0 (its fastest, so the
    hardest bar to clear; face_recognition's default is 1, about 4x slower), then the
    68-point ERT shape predictor (face_recognition_models' shape_predictor_68_face_landmarks.dat)
    on every face found, its points read out. Frames decoded as the other paths do (PyAV, upright
    gray). Models are loaded before the clock starts; up to `max_frames` frames."""
    import dlib
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(dlib_predictor_file())
    n = faces = 0
    t = time.perf_counter()
    for f in iter_frames(path):
        gray = np.ascontiguousarray(f.gray)            # the Y plane may be a padded view
        for rect in detector(gray, upsample):
            shape = predictor(gray, rect)
            np.array([(p.x, p.y) for p in shape.parts()], np.float32)
            faces += 1
        n += 1
        if n == max_frames:
            break
    dt = time.perf_counter() - t
    return {"frames": n, "seconds": dt, "fps": n / dt, "faces": faces, "upsample": upsample}
