"""OpenCV's Haar face cascade (`haarcascade_frontalface_default.xml`) parsed into flat arrays for
the torch detector (`haar_torch.py`): one row per stump, each stage's end, and OpenCV's stage
thresholds as `cascadedetect.cpp` stores them (`stageThreshold - 1e-5f`, in float32). Only the
new-format, stump-based, upright Haar cascades are read, which is what OpenCV 4.x ships.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class Cascade:
    """A stump-based Haar cascade as flat arrays, one row per stump (weak classifier)."""
    window: tuple[int, int]            # (width, height) of the training window
    stage_ends: tuple[int, ...]        # stump index after each stage's last stump
    stage_threshold: np.ndarray        # (S,) float32, already minus OpenCV's 1e-5 epsilon
    rects: np.ndarray                  # (T, 3, 4) int64 x, y, w, h (unused third rect: zeros)
    weights: np.ndarray                # (T, 3) float32 (unused third rect: 0)
    threshold: np.ndarray              # (T,) float32 stump thresholds
    left: np.ndarray                   # (T,) float32 leaf taken when value < threshold
    right: np.ndarray                  # (T,) float32


@lru_cache(maxsize=4)
def load_cascade(path: str) -> Cascade:
    """Parse an OpenCV (new format, stump-based, upright Haar) cascade XML once."""
    root = ET.parse(path).getroot().find("cascade")
    if root is None or root.findtext("featureType", "").strip() != "HAAR":
        raise ValueError(f"{path}: not a new-format Haar cascade")
    win = (int(root.findtext("width")), int(root.findtext("height")))
    feats = []
    for f in root.find("features"):
        if int((f.findtext("tilted") or "0").strip() or 0):
            raise ValueError(f"{path}: tilted features are not supported")
        rs = [[float(v) for v in r.text.split()] for r in f.find("rects")]
        feats.append(rs)
    stage_thr, ends, fidx, thr, left, right = [], [], [], [], [], []
    for st in root.find("stages"):
        # OpenCV: stage.threshold = (float)stageThreshold - THRESHOLD_EPS (1e-5f), in float32
        stage_thr.append(np.float32(float(st.findtext("stageThreshold"))) - np.float32(1e-5))
        for wc in st.find("weakClassifiers"):
            nodes = wc.findtext("internalNodes").split()
            leaves = wc.findtext("leafValues").split()
            if len(nodes) != 4 or len(leaves) != 2:
                raise ValueError(f"{path}: only stump cascades are supported")
            fidx.append(int(nodes[2]))
            thr.append(float(nodes[3]))
            left.append(float(leaves[0]))
            right.append(float(leaves[1]))
        ends.append(len(fidx))
    rects = np.zeros((len(fidx), 3, 4), np.int64)
    weights = np.zeros((len(fidx), 3), np.float32)
    for t, fi in enumerate(fidx):
        for k, r in enumerate(feats[fi]):
            rects[t, k] = r[:4]
            weights[t, k] = r[4]
    return Cascade(win, tuple(ends), np.array(stage_thr, np.float32), rects, weights,
                   np.array(thr, np.float32), np.array(left, np.float32), np.array(right, np.float32))
