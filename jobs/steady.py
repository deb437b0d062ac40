"""Steadiness against ground truth: "moving stills", labelled identity-test faces moved along known
smooth paths, so the true 68 points are known on every frame of a real, encoded video.

A smoother that lags shows here as a higher NME than the raw points (the truth moves 2-10 px a
frame); one that removes shimmer shows as a lower jitter, and the truth's own jitter (~0 on these
paths) says what "no shimmer" is. Used by `facetracks bench` and `facetracks evaluate --moving`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.profiles import ProfileParts
from facetracks.pipeline.smoothing import SmoothParams, smooth_tracks, table_ids, table_points
from facetracks.training.metrics import jitter, nme

from .clips import write_video

CANVAS = (800, 600)


@dataclass
class MovingClip:
    path: str
    truth: np.ndarray      # (frames, 68, 2) true points on every frame (one face per shot)
    shot: np.ndarray       # (frames,) which still each frame shows


def shot_path(i: int, n: int, size: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
    """2x3 affine warps of one still over `n` frames: its centre moves at 2-10 px a frame (speed
    by shot, cycling) along a gentle arc, while it scales by up to +-15 % and turns by up to
    +-10 deg, all smooth (no frame-to-frame jitter in the truth)."""
    speed = 2 + 2 * (i % 5)
    angle = rng.uniform(0, 2 * np.pi)
    d = np.array([np.cos(angle), np.sin(angle)])
    bend = rng.uniform(-0.04, 0.04) * np.array([-d[1], d[0]])   # px/frame^2 across the path
    s1, r1 = rng.uniform(-0.15, 0.15), rng.uniform(-10, 10)
    w, h = size
    mats = []
    for k in range(n):
        u = (k - (n - 1) / 2)
        centre = np.array(CANVAS) / 2 + speed * u * d + 0.5 * bend * u * u
        m = cv2.getRotationMatrix2D((w / 2, h / 2), r1 * k / (n - 1), 1 + s1 * k / (n - 1))
        m[:, 2] += centre - np.array([w / 2, h / 2])
        mats.append(m)
    return mats


def shake_path(i: int, n: int, size: tuple[int, int], rng: np.random.Generator, fps: int = 25) -> list[np.ndarray]:
    """A head shake: the still swings back and forth (sideways, up and down, or turning in plane by
    turns) at 1.5-3 Hz, peaking at 8 px a frame. True motion faster than a wide window passes:
    where a smoother flattens it, NME shows it."""
    hz = (1.5, 2.0, 2.5, 3.0)[i % 4]
    w = 2 * np.pi * hz / fps
    amp = 8 / w                                  # px: the peak speed is 8 px a frame
    phase = rng.uniform(0, 2 * np.pi)
    kind = i % 3
    mats = []
    for k in range(n):
        s = np.sin(w * k + phase)
        shift = np.array([amp * s, 0.0]) if kind == 0 else np.array([0.0, amp * s]) if kind == 1 else np.zeros(2)
        angle = np.degrees(amp * s / (max(size) / 2)) if kind == 2 else 0.0   # 8 px a frame at the image's edge
        m = cv2.getRotationMatrix2D((size[0] / 2, size[1] / 2), angle, 1.0)
        m[:, 2] += np.array(CANVAS) / 2 + shift - np.array([size[0] / 2, size[1] / 2])
        mats.append(m)
    return mats


def moving_stills(path: str, samples, frames_each: int = 32, fps: int = 25, seed: int = 0,
                  shake: bool = False) -> MovingClip:
    """Encode one shot per sample (each on its own background grey, so shots are scene cuts),
    H.264 at the default quality: the encoder's noise is part of the test."""
    rng = np.random.default_rng(seed)
    truth, shot = [], []

    def frames():
        for i, smp in enumerate(samples):
            h, w = smp.gray.shape
            bg = 50 + 60 * (i % 3)
            for m in (shake_path if shake else shot_path)(i, frames_each, (w, h), rng):
                img = cv2.warpAffine(smp.gray, m, CANVAS, flags=cv2.INTER_LINEAR, borderValue=bg)
                truth.append(smp.points @ m[:, :2].T + m[:, 2])
                shot.append(i)
                yield cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)

    write_video(path, frames(), fps=fps)
    return MovingClip(path, np.stack(truth).astype(np.float32), np.array(shot))


def score_table(table: pa.Table, clip: MovingClip) -> dict:
    """NME per frame (the face nearest the truth), jitter of ours and of the truth, per clip."""
    tid, fi = table_ids(table)
    pts = table_points(table)
    face = tid >= 0
    e = nme(pts[face], clip.truth[fi[face]])
    best = np.full(len(clip.truth), np.inf)
    np.minimum.at(best, fi[face], e)
    found = np.isfinite(best)
    # the truth as a "track" per shot: its jitter is what a perfect tracker would show
    tj = jitter(clip.shot, np.arange(len(clip.truth)), clip.truth)
    # only the faces that are the truth's face (a false positive's shimmer is not the point)
    keep = np.zeros(len(tid), bool)
    keep[np.flatnonzero(face)[e <= best[fi[face]]]] = True
    j = jitter(np.where(keep, tid, -1), fi, pts)
    return {"frames": int(len(clip.truth)), "frames_with_face": int(found.sum()),
            "nme_mean": float(best[found].mean()), "nme_median": float(np.median(best[found])),
            "jitter_median": float(np.median(j)) if len(j) else float("nan"),
            "truth_jitter_median": float(np.median(tj)), "nme_per_frame": best.tolist()}


def steadiness(parts: ProfileParts, clip: MovingClip, smooth: SmoothParams) -> dict:
    """One annotate run of the profile on the clip; its raw and smoothed points scored."""
    r = annotate_video(clip.path, os.path.basename(clip.path), parts.detector, parts.predictor, parts.follow)
    raw, smoothed = score_table(r.table, clip), score_table(smooth_tracks(r.table, smooth, (r.info.width, r.info.height)), clip)
    return {"smooth": smooth.to_dict(), "raw": raw, "smoothed": smoothed,
            "jitter_ratio": smoothed["jitter_median"] / raw["jitter_median"],
            "nme_delta": smoothed["nme_mean"] - raw["nme_mean"]}
