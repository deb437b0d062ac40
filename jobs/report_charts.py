"""The report's two charts, drawn with OpenCV (no plotting dependency): which track is on screen
when, and the landmark score over time. Each pixel column holds every frame that falls in it, so
a two-hour video draws in the same time and size as a two-second one."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

WIDTH = 900
MAX_LANES = 12              # tracks drawn on lanes of their own; the rest share one "other" lane
LEFT, RIGHT, TOP, BOTTOM = 70, 16, 10, 28
BG, INK, GRID = (255, 255, 255), (60, 60, 60), (225, 225, 225)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per track id (golden-ratio hues), shared by both charts."""
    hue = int(((0.33 + track_id * 0.618034) % 1.0) * 180)        # track 0 green, as the landmarks filter
    hsv = np.uint8([[[hue, 200, 210]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _columns(times: np.ndarray, duration_s: float, plot_w: int) -> np.ndarray:
    return np.clip((times / max(duration_s, 1e-9) * (plot_w - 1)).round().astype(int), 0, plot_w - 1)


def frame_step_px(faces: pd.DataFrame, duration_s: float, plot_w: int) -> float:
    """How many pixel columns one frame spans (the median frame interval): a short video's frames
    are drawn as spans that touch, not as a comb of ticks."""
    t = np.unique(faces.time_s.to_numpy())
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    return dt / max(duration_s, 1e-9) * (plot_w - 1)


def _spans(cols: np.ndarray, step_px: float, plot_w: int) -> np.ndarray:
    """Columns covered by frames starting at `cols`, each `step_px` wide (a difference array: one
    pass whatever the number of frames)."""
    width = max(1, int(np.ceil(step_px)))
    mark = np.zeros(plot_w + width + 1, np.int64)
    np.add.at(mark, cols, 1)
    np.add.at(mark, cols + width, -1)
    return np.flatnonzero(np.cumsum(mark)[:plot_w] > 0)


def _nice_step(span: float, ticks: int = 8) -> float:
    raw = span / ticks
    mag = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1.0
    return float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))


def _text(img: np.ndarray, s: str, x: int, y: int, color=INK, scale: float = 0.4) -> None:
    cv2.putText(img, s, (x, y), FONT, scale, color, 1, cv2.LINE_AA)


def _time_axis(img: np.ndarray, duration_s: float, plot_w: int, y0: int, y1: int) -> None:
    """Vertical grid lines and second labels under the plot."""
    step = _nice_step(max(duration_s, 1e-3))
    for t in np.arange(0, duration_s + 1e-9, step):
        x = LEFT + int(round(t / max(duration_s, 1e-9) * (plot_w - 1)))
        cv2.line(img, (x, y0), (x, y1), GRID, 1)
        label = f"{t:g} s"
        (tw, _), _ = cv2.getTextSize(label, FONT, 0.4, 1)
        _text(img, label, min(max(x - tw // 2, 0), img.shape[1] - tw), y1 + 16)


def _canvas(plot_h: int, width: int) -> tuple[np.ndarray, int]:
    img = np.full((TOP + plot_h + BOTTOM, width, 3), BG, np.uint8)
    return img, width - LEFT - RIGHT


def timeline_chart(faces: pd.DataFrame, duration_s: float, width: int = WIDTH, lane_h: int = 14) -> np.ndarray:
    """One lane per track (longest tracks first), filled where the track has a face."""
    ids = faces.track_id.value_counts().index.astype(int).tolist() if len(faces) else []
    own = ids if len(ids) <= MAX_LANES + 1 else ids[:MAX_LANES]     # never a lane of "1 more"
    others = [t for t in ids if t not in own]
    lanes = len(own) + (1 if others else 0)
    img, plot_w = _canvas(max(lanes, 1) * lane_h, width)
    _time_axis(img, duration_s, plot_w, TOP, TOP + max(lanes, 1) * lane_h)
    if not ids:
        _text(img, "no face in any frame", LEFT + 8, TOP + lane_h - 3, (0, 0, 200))
        return img
    tid = faces.track_id.to_numpy().astype(int)
    cols = _columns(faces.time_s.to_numpy(), duration_s, plot_w)
    step = frame_step_px(faces, duration_s, plot_w)
    for lane, group in enumerate([[t] for t in own] + ([others] if others else [])):
        y = TOP + lane * lane_h
        mask = np.isin(tid, group)
        filled = _spans(cols[mask], step, plot_w)
        color = track_color(group[0]) if len(group) == 1 else (150, 150, 150)
        img[y + 2:y + lane_h - 2, LEFT + filled] = color
        label = f"track {group[0]}" if len(group) == 1 else f"{len(group)} more"
        _text(img, label, 4, y + lane_h - 3)
    return img


def score_chart(faces: pd.DataFrame, duration_s: float, min_score: float | None = None,
                width: int = WIDTH, plot_h: int = 120) -> np.ndarray:
    """The score of each track (its colour) against time, 0 at the bottom, 1 at the top; per pixel
    column the lowest score of the frames in it, so a brief drop stays visible; `min_score` (the
    run's threshold below which a face is dropped) as a dashed red line."""
    img, plot_w = _canvas(plot_h, width)
    _time_axis(img, duration_s, plot_w, TOP, TOP + plot_h)
    for v in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = TOP + int(round((1 - v) * (plot_h - 1)))
        cv2.line(img, (LEFT, y), (LEFT + plot_w - 1, y), GRID, 1)
        _text(img, f"{v:.2f}", 20, y + 4)
    scored = faces[faces.score.notna()]
    if min_score is not None:
        y = TOP + int(round((1 - min_score) * (plot_h - 1)))
        for x in range(LEFT, LEFT + plot_w, 8):
            cv2.line(img, (x, y), (min(x + 4, LEFT + plot_w - 1), y), (40, 40, 220), 1)
    if not len(scored):
        _text(img, "no score measured", LEFT + 8, TOP + plot_h // 2, (0, 0, 200))
        return img
    cols = _columns(scored.time_s.to_numpy(), duration_s, plot_w)
    gap = max(2.0, 1.5 * frame_step_px(scored, duration_s, plot_w))
    frame = pd.DataFrame({"track": scored.track_id.to_numpy().astype(int), "col": cols,
                          "score": scored.score.to_numpy(np.float64)})
    for track, g in frame.groupby("track"):
        per_col = g.groupby("col").score.min()
        xs = LEFT + per_col.index.to_numpy()
        ys = TOP + np.round((1 - np.clip(per_col.to_numpy(), 0, 1)) * (plot_h - 1)).astype(int)
        # a line only between neighbouring frames: a gap in the track stays a gap
        breaks = np.flatnonzero(np.diff(xs) > gap) + 1
        for seg_x, seg_y in zip(np.split(xs, breaks), np.split(ys, breaks)):
            pts = np.stack([seg_x, seg_y], axis=1).astype(np.int32)
            if len(pts) == 1:
                cv2.circle(img, tuple(int(v) for v in pts[0]), 1, track_color(int(track)), -1)
            else:
                cv2.polylines(img, [pts], False, track_color(int(track)), 1, cv2.LINE_AA)
    return img
