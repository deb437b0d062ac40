"""Reading the YouTube Faces 68-point layout: `<split>_frames_keypoints.csv` plus image folders.

Images are decoded by content (`cv2.imdecode` on the bytes), because the public files are PNGs
named .jpg and ours are JPEGs with the same names. `identity_split.csv` gives the
identity-disjoint train/val/test split that headline numbers use; the official split leaks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from facetracks.models.landmarks68 import NUM_POINTS

FOLDERS = ("training", "test")

# The CSV coordinates are 1-based (MATLAB style): mirrored images only agree with mirrored labels
# when x' = W + 1 - x. Measured here: a model trained with the 0-based flip (x' = W - 1 - x) is off by
# -0.6 px on images and +1.8 px on mirrored images, a 2.4 px gap, as a 1-based origin predicts (2 px
# at full scale). Subtracting 1 on load makes every coordinate inside facetracks a 0-based pixel
# centre, the convention OpenCV's warps and the video pipeline use.
LABEL_ORIGIN = 1.0


@dataclass
class Sample:
    folder: str
    name: str
    gray: np.ndarray       # (H, W) uint8
    points: np.ndarray     # (68, 2) float32, pixels


def read_image_gray(path: str) -> np.ndarray:
    """Decode any image file by its bytes, whatever its extension says."""
    buf = np.fromfile(path, np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"{path}: not a readable image")
    return img


def read_keypoints_csv(path: str) -> pd.DataFrame:
    """CSV of name, x0, y0, ..., x67, y67 -> names and (68, 2) points, 0-based pixel centres."""
    df = pd.read_csv(path)
    if df.shape[1] != 1 + 2 * NUM_POINTS:
        raise ValueError(f"{path}: expected {1 + 2 * NUM_POINTS} columns, found {df.shape[1]}")
    names = df.iloc[:, 0].astype(str).to_numpy()
    pts = df.iloc[:, 1:].to_numpy(np.float32).reshape(-1, NUM_POINTS, 2) - LABEL_ORIGIN
    return pd.DataFrame({"name": names, "points": list(pts)})


def list_split(data_dir: str, split: str, part: str) -> list[tuple[str, str, np.ndarray]]:
    """(folder, name, points) for one part of a split.

    split='official': part 'train' is the training folder, 'test' the test folder (no val).
    split='identity': parts 'train', 'val', 'test' from identity_split.csv, across both folders.
    """
    tables = {f: read_keypoints_csv(os.path.join(data_dir, f"{f}_frames_keypoints.csv")) for f in FOLDERS}
    if split == "official":
        folder = {"train": "training", "test": "test"}.get(part)
        if folder is None:
            raise ValueError(f"the official split has parts train and test, not {part!r}")
        t = tables[folder]
        return [(folder, n, p) for n, p in zip(t.name, t.points)]
    if split == "identity":
        ids = pd.read_csv(os.path.join(data_dir, "identity_split.csv"))
        ids = ids[ids.split == part]
        if ids.empty:
            raise ValueError(f"identity_split.csv has no rows for part {part!r}")
        lookup = {(f, n): p for f, t in tables.items() for n, p in zip(t.name, t.points)}
        return [(f, n, lookup[(f, n)]) for f, n in zip(ids.folder, ids.image)]
    raise ValueError(f"unknown split {split!r} (official or identity)")


def load_split(data_dir: str, split: str, part: str, limit: int | None = None) -> list[Sample]:
    """Load images and points for one part of a split into memory (the whole set is ~170 MB gray)."""
    items = list_split(data_dir, split, part)[:limit]
    return [Sample(f, n, read_image_gray(os.path.join(data_dir, f, n)), np.asarray(p, np.float32))
            for f, n, p in items]
