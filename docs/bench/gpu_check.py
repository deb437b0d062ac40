"""The GPU parts against OpenCV 4, where the GPU machine has only OpenCV 5 (no Haar cascade).

    python docs/bench/gpu_check.py --make .dev          # here, with OpenCV 4: the device kit
    python docs/bench/gpu_check.py --check .dev OUT.json   # there: compare, write OUT.json

--make fills DEV (git-ignored, it travels to the GPU machine with the tree):
- haarcascades/haarcascade_frontalface_default.xml, from cv2.data (for FACETRACKS_CASCADE_DIR);
- clips/: a few of ../shared/videos with faces, video only, long ones cut at a keyframe;
- ytf68/: the first identity-test rows of ../shared/data/ytf68 (identity_split.csv, both keypoint
  CSVs, their images): what `truth_clip` and the moving stills pick from;
- opencv_boxes.json: OpenCV's `HaarDetector` boxes, with each profile's detector settings, on
  those images and on frames of the clips (with a hash of each frame, so the device knows it
  decoded the same pixels).

--check, on the device: `TorchHaarDetector(device=cuda)` on the same frames against those boxes
(matched at IoU >= 0.8: missing, extra, largest score difference), and `warp_crops` on cuda
against `warp_crop` (cv2.warpAffine, in OpenCV 5 too) on random squares of the same frames.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
SAMPLE = os.path.join(ROOT, "samples", "pyfeat_WolfgangLanger_Pexels.mp4")
# name -> seconds kept (None: whole); small ones with one face each, 5-6 MB in all
CLIPS = {"pyfeat_single_face.mp4": None, "liveportrait_source_s18.mp4": None, "liveportrait_driving_d6.mp4": 12.0,
         "liveportrait_driving_d9.mp4": 8.0, "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4": None}
TEST_ROWS = 60            # identity-test rows kept: truth_clip takes 12 faces from the first 17, the stills 8
FRAMES_PER_CLIP = 5       # frames of each clip (and of the sample) for the detector check
SETTINGS = {"accurate": {}, "fast": {"detect_side": 320, "scale_factor": 1.2}}   # the profiles' detectors


def sha1(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()


def cut_copy(src: str, dst: str, seconds: float | None) -> None:
    """The video stream of `src`, packets copied, stopping at the first keyframe at or after
    `seconds` (None: all of it): whole GOPs, nothing re-encoded, no audio."""
    import av
    with av.open(src) as i, av.open(dst, "w") as o:
        si = i.streams.video[0]
        so = o.add_stream_from_template(si)
        for p in i.demux(si):
            if p.size == 0:
                continue
            if seconds is not None and p.is_keyframe and p.pts is not None and float(p.pts * si.time_base) >= seconds:
                break
            p.stream = so
            o.mux(p)


def check_frames(dev: str) -> list[dict]:
    """The frames both sides use: the kit's identity-test images, then frames of each clip."""
    from facetracks.pipeline.video import iter_frames
    from facetracks.training.data import list_split, read_image_gray
    out = []
    data = os.path.join(dev, "ytf68")
    for f, n, _ in list_split(data, "identity", "test"):
        out.append({"kind": "image", "source": f"{f}/{n}", "gray": read_image_gray(os.path.join(data, f, n))})
    clips = [SAMPLE] + sorted(os.path.join(dev, "clips", n) for n in os.listdir(os.path.join(dev, "clips")))
    for c in clips:
        frames = list(iter_frames(c))
        for k in np.linspace(0, len(frames) - 1, FRAMES_PER_CLIP).round().astype(int):
            out.append({"kind": "clip", "source": f"{os.path.basename(c)}#{k}", "gray": frames[k].gray})
    return out


def make(dev: str) -> None:
    import cv2
    import pandas as pd
    from facetracks.pipeline.detect import HaarDetector
    os.makedirs(os.path.join(dev, "haarcascades"), exist_ok=True)
    xml = "haarcascade_frontalface_default.xml"
    shutil.copy(os.path.join(cv2.data.haarcascades, xml), os.path.join(dev, "haarcascades", xml))
    os.makedirs(os.path.join(dev, "clips"), exist_ok=True)
    for n, s in CLIPS.items():
        cut_copy(os.path.join(SHARED, "videos", n), os.path.join(dev, "clips", n), s)
    src, data = os.path.join(SHARED, "data", "ytf68"), os.path.join(dev, "ytf68")
    ids = pd.read_csv(os.path.join(src, "identity_split.csv"))
    ids = ids[ids.split == "test"].head(TEST_ROWS)
    os.makedirs(data, exist_ok=True)
    ids.to_csv(os.path.join(data, "identity_split.csv"), index=False)
    for folder in ("training", "test"):
        kp = f"{folder}_frames_keypoints.csv"
        df = pd.read_csv(os.path.join(src, kp))
        df[df.iloc[:, 0].isin(set(ids.image[ids.folder == folder]))].to_csv(os.path.join(data, kp), index=False)
        os.makedirs(os.path.join(data, folder), exist_ok=True)
        for n in ids.image[ids.folder == folder]:
            shutil.copy(os.path.join(src, folder, n), os.path.join(data, folder, n))
    frames = check_frames(dev)
    dets = {k: HaarDetector(**v) for k, v in SETTINGS.items()}
    ref = {"opencv": cv2.__version__, "settings": SETTINGS,
           "frames": [{"kind": f["kind"], "source": f["source"], "shape": list(f["gray"].shape), "sha1": sha1(f["gray"]),
                       "boxes": {k: d.detect(f["gray"]).tolist() for k, d in dets.items()}} for f in frames]}
    with open(os.path.join(dev, "opencv_boxes.json"), "w") as fh:
        json.dump(ref, fh)
    n = {k: sum(len(f["boxes"][k]) for f in ref["frames"]) for k in SETTINGS}
    print(f"{dev}: {len(frames)} frames, boxes {n}")


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4+) x (M, 4+) x, y, w, h -> (N, M) intersection over union."""
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    return inter / (a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter)


def compare_boxes(ref: np.ndarray, got: np.ndarray, at: float = 0.8) -> dict:
    ref, got = ref.reshape(-1, 5), got.reshape(-1, 5)
    m = iou(ref, got) if len(ref) and len(got) else np.zeros((len(ref), len(got)))
    pairs = sorted(((m[i, j], i, j) for i, j in zip(*np.nonzero(m >= at))), reverse=True)
    ri, gj, dscore = set(), set(), []
    for _, i, j in pairs:                       # greedy, best overlap first
        if i not in ri and j not in gj:
            ri.add(i)
            gj.add(j)
            dscore.append(abs(float(ref[i, 4] - got[j, 4])))
    matched = len(ri)
    exact = ref.shape == got.shape and np.allclose(ref, got, atol=1e-3)
    return {"matched": matched, "missing": len(ref) - matched, "extra": len(got) - matched,
            "max_score_diff": max(dscore, default=0.0), "exact": bool(exact)}


def turned(m: np.ndarray, angle_deg: float, mirror: bool, size: int) -> np.ndarray:
    """`m` followed by a turn (and a mirror) about the crop's centre (as tests/test_crop_torch.py)."""
    a, half = np.deg2rad(angle_deg), size / 2
    r = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) * (np.array([[-1.0], [1.0]]) if mirror else 1.0)
    out = r @ m
    out[:, 2] += np.array([half, half]) - r @ np.array([half, half])
    return out


def batch_times(settings: dict, device: str, frames: list[dict], reps: int = 5) -> dict:
    """ms for one call on 4 frames of one size, the scan replayed as a CUDA graph against op by op
    (stages grouped), each the best of `reps` after a warm-up."""
    import torch
    from facetracks.pipeline.haar_torch import TorchHaarDetector
    by_shape: dict[tuple, list[np.ndarray]] = {}
    for f in frames:
        by_shape.setdefault(f["gray"].shape, []).append(f["gray"])
    four = max(by_shape.values(), key=len)[:4]
    out = {}
    for name, static in (("graph", True), ("op_by_op", False)):
        det = TorchHaarDetector(**settings, device=device, static=static)
        for _ in range(2):             # warm-up: kernels, caches, the graph's capture (at a shape's second call)
            det.detect_batch(four)
        best = float("inf")
        for _ in range(reps):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            det.detect_batch(four)
            best = min(best, time.perf_counter() - t)
        out[name] = round(1000 * best, 2)
    return out


def pass_times(device: str, grays: list[np.ndarray], reps: int = 5) -> dict:
    """ms for one `fast` landmark call on 64 faces of one frame size, each pass replayed as a CUDA
    graph against eager (models/graphed_pass.py), and the points' largest difference."""
    from dataclasses import replace

    import torch
    from facetracks.models.inference import LandmarkPredictor
    from facetracks.pipeline.profiles import get_profile
    prof = get_profile("fast")
    pred = LandmarkPredictor.load(prof.model, device=device, **prof.predictor)
    same = [g for g in grays if g.shape == grays[0].shape]
    faces = [same[k % len(same)] for k in range(64)]
    h, w = faces[0].shape
    squares = np.tile([w / 2, h / 2, min(h, w) / 3], (64, 1)).astype(np.float32)
    out = {"graphs": "off" if pred.pass_graphs is None else "on"}
    pts = {}
    for name, p in (("graph", pred), ("eager", replace(pred, pass_graphs=None))):
        for _ in range(2):
            pts[name] = p.predict_with_score(faces, squares)[0]
        best = float("inf")
        for _ in range(reps):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            p.predict_with_score(faces, squares)
            best = min(best, time.perf_counter() - t)
        out[name + "_ms"] = round(1000 * best, 2)
    out["broken"] = pred.pass_graphs.broken if pred.pass_graphs is not None else None
    out["max_point_diff_px"] = float(np.abs(pts["graph"] - pts["eager"]).max())
    return out


def check(dev: str, out_path: str, squares: int = 300) -> dict:
    import cv2
    import torch
    from facetracks.models.crop import CropSpec, crop_matrix, warp_crop
    from facetracks.models.crop_torch import warp_crops
    from facetracks.pipeline.haar_torch import TorchHaarDetector
    device = "cuda" if torch.cuda.is_available() else "cpu"
    res = {"device": device, "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
           "torch": torch.__version__, "opencv": cv2.__version__,
           "opencv_has_cascade_classifier": hasattr(cv2, "CascadeClassifier")}
    with open(os.path.join(dev, "opencv_boxes.json")) as fh:
        ref = json.load(fh)
    res["reference_opencv"] = ref["opencv"]
    frames = check_frames(dev)
    if [f["source"] for f in frames] != [r["source"] for r in ref["frames"]]:
        raise SystemExit("gpu_check: the kit's frames are not those the references were made on (--make again)")
    res["frames"] = len(frames)
    res["frames_decoded_differently"] = [f["source"] for f, r in zip(frames, ref["frames"]) if sha1(f["gray"]) != r["sha1"]]
    res["haar"] = {}
    for name, settings in ref["settings"].items():
        det = TorchHaarDetector(**settings, device=device)
        det.detect(frames[0]["gray"])                                   # warm-up: kernels, caches
        rows, t = [], time.perf_counter()
        for f, r in zip(frames, ref["frames"]):
            got = det.detect(f["gray"])
            rows.append({"source": f["source"], **compare_boxes(np.asarray(r["boxes"][name], np.float32), got)})
        dt = time.perf_counter() - t
        res["haar"][name] = {
            "frames": len(rows), "frames_exact": sum(r["exact"] for r in rows),
            "boxes_reference": sum(len(r["boxes"][name]) for r in ref["frames"]),
            "matched": sum(r["matched"] for r in rows), "missing": sum(r["missing"] for r in rows),
            "extra": sum(r["extra"] for r in rows), "max_score_diff": max(r["max_score_diff"] for r in rows),
            "ms_per_frame": 1000 * dt / len(rows),
            "graphs": "off" if not det.static else det.graphs_broken or "on",
            "static_overflows": det.static_overflows,
            "batch_of_4_ms": batch_times(settings, device, frames),
            "frames_not_exact": [r for r in rows if not r["exact"]][:20]}
        print(f"haar {name}: {json.dumps({k: v for k, v in res['haar'][name].items() if k != 'frames_not_exact'})}")
    res["landmark_pass"] = pass_times(device, [f["gray"] for f in frames if f["kind"] == "clip"])
    print(f"landmark pass: {res['landmark_pass']}")
    # crops: per frame size, one batch on the device against cv2.warpAffine one face at a time
    rng = np.random.default_rng(7)
    res["crops"] = {}
    clip_frames = [f["gray"] for f in frames if f["kind"] == "clip"]
    for size in (112, 64):
        spec = CropSpec(size, 1.35)
        worst, differing, total, n = 0, 0, 0, 0
        by_shape: dict[tuple, list[np.ndarray]] = {}
        for g in clip_frames:
            by_shape.setdefault(g.shape, []).append(g)
        for shape, group in by_shape.items():
            h, w = shape
            k = max(1, squares * len(group) // len(clip_frames))
            mats, idx = [], []
            for _ in range(k):
                sq = np.array([rng.uniform(-60, w + 60), rng.uniform(-60, h + 60), rng.uniform(16, 1.5 * h)], np.float32)
                mats.append(turned(crop_matrix(sq, spec), float(rng.uniform(-40, 40)) * (rng.random() < 0.5),
                                   bool(rng.random() < 0.3), size))
                idx.append(int(rng.integers(0, len(group))))
            want = np.stack([warp_crop(group[i], m, spec) for i, m in zip(idx, mats)])
            got = warp_crops(torch.from_numpy(np.stack(group)).to(device), idx, np.stack(mats), spec).cpu().numpy()
            d = np.abs(got.astype(np.int16) - want)
            worst, differing, total, n = max(worst, int(d.max())), differing + int((d > 0).sum()), total + d.size, n + k
        res["crops"][str(size)] = {"squares": n, "max_pixel_diff": worst, "share_differing": differing / total}
        print(f"crops {size}px: {res['crops'][str(size)]}")
    with open(out_path, "w") as fh:
        json.dump(res, fh, indent=2)
    print(f"wrote {out_path}")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--make", metavar="DEV", help="build the kit in DEV (needs ../shared and OpenCV 4)")
    g.add_argument("--check", nargs=2, metavar=("DEV", "OUT_JSON"), help="compare on this machine's GPU")
    ap.add_argument("--squares", type=int, default=300, help="random squares for the crop check")
    a = ap.parse_args(argv)
    if a.make:
        make(a.make)
    else:
        check(a.check[0], a.check[1], a.squares)
    return 0


if __name__ == "__main__":
    sys.exit(main())
