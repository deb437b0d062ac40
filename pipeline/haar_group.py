"""OpenCV's grouping of a Haar cascade's raw windows (`groupRectangles` with reject levels, then
`clipObjects`), on the CPU: a frame's survivors are a few hundred rects. The torch detector
(`haar_torch.py`) groups each frame's survivors with it exactly as `detectMultiScale3` does (the
score is the best final-stage sum of a group), clipped to the image, before mapping them back to
the input's pixels.
"""
from __future__ import annotations

import numpy as np


def group_rectangles(rects: np.ndarray, weights: np.ndarray, threshold: int, eps: float,
                     size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """cv::groupRectangles(rects, levels, weights, threshold, eps) then clipObjects(size):
    clusters of similar rects (transitively), averaged, kept with more than `threshold` members
    and not inside a stronger cluster; score = best weight in the cluster."""
    rects = np.asarray(rects, np.int64).reshape(-1, 4)
    n = len(rects)
    if n == 0:
        return np.zeros((0, 4), np.int64), np.zeros(0)
    if threshold <= 0:
        boxes, scores = rects, np.asarray(weights, np.float64)
    else:
        labels = _partition(rects, eps)
        ncls = labels.max() + 1
        sums = np.zeros((ncls, 4), np.int64)
        np.add.at(sums, labels, rects)
        count = np.bincount(labels, minlength=ncls)
        best = np.full(ncls, -np.inf)
        np.maximum.at(best, labels, np.asarray(weights, np.float64))
        s = (np.float32(1) / count.astype(np.float32)).astype(np.float32)
        avg = np.rint(sums.astype(np.float32) * s[:, None]).astype(np.int64)
        keep = []
        for i in range(ncls):
            n1 = count[i]
            if n1 <= threshold:
                continue
            inside = False
            for j in range(ncls):
                n2 = count[j]
                if j == i or n2 <= threshold:
                    continue
                dx, dy = int(np.rint(avg[j, 2] * eps)), int(np.rint(avg[j, 3] * eps))
                r1, r2 = avg[i], avg[j]
                if (r1[0] >= r2[0] - dx and r1[1] >= r2[1] - dy and r1[0] + r1[2] <= r2[0] + r2[2] + dx
                        and r1[1] + r1[3] <= r2[1] + r2[3] + dy and (n2 > max(3, n1) or n1 < 3)):
                    inside = True
                    break
            if not inside:
                keep.append(i)
        boxes, scores = avg[keep], best[keep]
    # clipObjects: intersect with the image, drop empty
    w, h = size
    x0 = np.maximum(boxes[:, 0], 0)
    y0 = np.maximum(boxes[:, 1], 0)
    x1 = np.minimum(boxes[:, 0] + boxes[:, 2], w)
    y1 = np.minimum(boxes[:, 1] + boxes[:, 3], h)
    ok = (x1 > x0) & (y1 > y0)
    out = np.stack([x0, y0, x1 - x0, y1 - y0], 1)[ok]
    return out, np.asarray(scores)[ok]


def _partition(rects: np.ndarray, eps: float) -> np.ndarray:
    """Connected components of OpenCV's SimilarRects relation; labels 0..k-1."""
    x, y, w, h = (rects[:, i].astype(np.float64) for i in range(4))
    delta = eps * (np.minimum(w[:, None], w[None]) + np.minimum(h[:, None], h[None])) * 0.5
    adj = ((np.abs(x[:, None] - x[None]) <= delta) & (np.abs(y[:, None] - y[None]) <= delta)
           & (np.abs(x[:, None] + w[:, None] - x[None] - w[None]) <= delta)
           & (np.abs(y[:, None] + h[:, None] - y[None] - h[None]) <= delta))
    labels = np.arange(len(rects))
    while True:
        nxt = np.where(adj, labels[None], len(rects)).min(1)
        nxt = nxt[nxt]                                  # pointer jumping speeds convergence
        if np.array_equal(nxt, labels):
            break
        labels = nxt
    _, inv = np.unique(labels, return_inverse=True)
    return inv
