"""Pictures for evaluation, drawn with OpenCV (already a dependency; no plotting library needed)."""
from __future__ import annotations

import cv2
import numpy as np

from facetracks.models.draw import draw_landmarks

COLORS = [(200, 80, 0), (0, 140, 255), (0, 160, 0), (180, 0, 180)]   # BGR, one per series


def ced_plot(curves: dict[str, np.ndarray], path: str, max_nme: float = 0.10, size=(640, 440)) -> None:
    """Cumulative error distribution: share of images (y) with NME below x, one curve per entry."""
    w, h = size
    left, right, top, bottom = 60, 20, 30, 50
    img = np.full((h, w, 3), 255, np.uint8)
    pw, ph = w - left - right, h - top - bottom

    def xy(x, y):
        return int(left + x / max_nme * pw), int(top + (1 - y) * ph)

    for i in range(11):
        cv2.line(img, xy(max_nme * i / 10, 0), xy(max_nme * i / 10, 1), (230, 230, 230), 1)
        cv2.line(img, xy(0, i / 10), xy(max_nme, i / 10), (230, 230, 230), 1)
        cv2.putText(img, f"{100 * max_nme * i / 10:.0f}", (xy(max_nme * i / 10, 0)[0] - 8, h - bottom + 18),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"{i / 10:.1f}", (left - 32, xy(0, i / 10)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, xy(0, 1), xy(max_nme, 0), (0, 0, 0), 1)
    cv2.putText(img, "NME (% of outer-eye-corner distance)", (left + pw // 2 - 130, h - 12),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (label, values) in enumerate(curves.items()):
        v = np.sort(np.asarray(values, np.float64))
        xs = np.linspace(0, max_nme, 200)
        ys = np.searchsorted(v, xs, side="right") / max(1, len(v))
        pts = np.array([xy(x, y) for x, y in zip(xs, ys)], np.int32)
        cv2.polylines(img, [pts], False, COLORS[k % len(COLORS)], 2, cv2.LINE_AA)
        cv2.putText(img, label, (left + 10, top + 20 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    COLORS[k % len(COLORS)], 1, cv2.LINE_AA)
    cv2.imwrite(path, img)


def prediction_grid(grays: list[np.ndarray], preds: np.ndarray, gts: np.ndarray, path: str,
                    cols: int = 6, tile: int = 200) -> None:
    """Tiles of images with ground truth (green) and prediction (red), worst last."""
    tiles = []
    for g, p, t in zip(grays, preds, gts):
        f = tile / max(g.shape)
        img = cv2.cvtColor(cv2.resize(g, (round(g.shape[1] * f), round(g.shape[0] * f))), cv2.COLOR_GRAY2BGR)
        canvas = np.zeros((tile, tile, 3), np.uint8)
        canvas[:img.shape[0], :img.shape[1]] = img
        draw_landmarks(canvas, t * f, (0, 200, 0), lines=False)
        draw_landmarks(canvas, p * f, (0, 0, 255), lines=True)
        tiles.append(canvas)
    while len(tiles) % cols:
        tiles.append(np.zeros((tile, tile, 3), np.uint8))
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    cv2.imwrite(path, np.vstack(rows))


def line_plot(series: dict[str, list[tuple[float, float]]], path: str, xlabel: str = "", ymax: float | None = None,
              size=(640, 400)) -> None:
    """A plain line chart (e.g. validation NME per epoch)."""
    w, h = size
    left, right, top, bottom = 60, 20, 30, 50
    pw, ph = w - left - right, h - top - bottom
    xs = [x for s in series.values() for x, _ in s]
    ys = [y for s in series.values() for _, y in s]
    x0, x1 = min(xs), max(xs)
    y1 = ymax if ymax is not None else max(ys) * 1.05
    img = np.full((h, w, 3), 255, np.uint8)

    def xy(x, y):
        return int(left + (x - x0) / max(x1 - x0, 1e-9) * pw), int(top + (1 - min(y, y1) / y1) * ph)

    for i in range(6):
        yv = y1 * i / 5
        cv2.line(img, xy(x0, yv), xy(x1, yv), (230, 230, 230), 1)
        cv2.putText(img, f"{yv:.1f}", (8, xy(x0, yv)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        xv = x0 + (x1 - x0) * i / 5
        cv2.putText(img, f"{xv:.0f}", (xy(xv, 0)[0] - 8, h - bottom + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, xy(x0, y1), xy(x1, 0), (0, 0, 0), 1)
    cv2.putText(img, xlabel, (left + pw // 2 - 20, h - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (label, pts) in enumerate(series.items()):
        p = np.array([xy(x, y) for x, y in pts], np.int32)
        cv2.polylines(img, [p], False, COLORS[k % len(COLORS)], 2, cv2.LINE_AA)
        cv2.putText(img, label, (left + 10, top + 20 + 18 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45, COLORS[k % len(COLORS)], 1,
                    cv2.LINE_AA)
    cv2.imwrite(path, img)
