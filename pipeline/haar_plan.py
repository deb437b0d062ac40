"""The torch Haar detector's scan plan (`haar_torch.py`): scales, packing and window grid, which
depend only on the image size and the parameters, so each is made once (`_plan`, cached).

- the same scale pyramid as OpenCV 4.x's `detectMultiScaleNoGrouping`: scales are
  `scale_factor**k` stored as float32, each scale's image is the frame resized to
  `round(size / scale)` with OpenCV's bit-exact fixed-point bilinear resize (`haar_resize.py`),
  windows step 2 px below scale 2 and 1 px from scale 2 up;
- all scales' integral images are packed into one buffer of one row stride, so a feature's corner
  offsets are the same for every window of every scale and frame, and the resize to every scale
  is one set of tables into that packed layout (`_resize_tables`).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .haar_resize import _exact_tab


@dataclass(frozen=True)
class _Layer:
    scale: np.float32
    size: tuple[int, int]          # (w, h) of the resized image
    step: int                      # window step in that image
    origin: int                    # flat offset of its integral image in the packed frame buffer
    grid: tuple[int, int]          # (nx, ny) window positions
    first: int                     # index of its first window in the frame's window list


@dataclass(frozen=True)
class _Plan:
    """Every scale's integral image sits in one buffer per frame, the scales' blocks one under the
    other (each `lh + 1` rows of `stride` = the largest width + 1), so that a window's corners are
    at the same offsets at every scale and every stage gathers from one flat tensor, and so that
    all scales are resized, summed and normalised by a few tensor operations, not a few per scale."""
    layers: tuple[_Layer, ...]
    stride: int                    # row stride of the packed buffer
    rows: int                      # rows of the packed buffer (every block's, its zero row included)
    frame_elems: int               # elements of one frame's packed buffer
    n_windows: int
    win_offset: np.ndarray         # (Nw,) flat offset of each window's top-left in the frame buffer
    row_start: np.ndarray          # (Nw,) index of the first window of the same row
    rect: np.ndarray               # (Nw, 4) int32 x, y, w, h the window reports (OpenCV's rounding)
    resize: tuple[np.ndarray, ...] # INTER_LINEAR_EXACT tables into the packed layout (see `_resize_tables`)


def opencv_scales(size: tuple[int, int], window: tuple[int, int], scale_factor: float,
                  min_size: tuple[int, int]) -> list[np.float32]:
    """The scales `detectMultiScaleNoGrouping` scans (maxSize = image size), as float32."""
    w, h = size
    out, factor = [], 1.0
    while True:
        ww, wh = int(np.rint(window[0] * factor)), int(np.rint(window[1] * factor))
        if ww > w or wh > h:
            break
        if ww >= min_size[0] and wh >= min_size[1]:
            out.append(np.float32(factor))
        factor *= scale_factor
    return out


@lru_cache(maxsize=64)
def _plan(size: tuple[int, int], window: tuple[int, int], scale_factor: float, min_side: int) -> _Plan | None:
    w, h = size
    scales = opencv_scales(size, window, scale_factor, (min_side, min_side))
    if not scales:
        return None
    sizes = [(int(np.rint(np.float32(w) / s)), int(np.rint(np.float32(h) / s))) for s in scales]
    stride = max(lw for lw, _ in sizes) + 1
    layers, top, first = [], 0, 0
    offs, starts, rects = [], [], []
    for s, (lw, lh) in zip(scales, sizes):
        iw, ih = lw + 1, lh + 1                     # integral image size
        step = 1 if s >= 2 else 2
        xs = np.arange(0, max(iw - window[0], 0), step)
        ys = np.arange(0, max(ih - window[1], 0), step)
        origin = top * stride
        layers.append(_Layer(s, (lw, lh), step, origin, (len(xs), len(ys)), first))
        gy, gx = np.meshgrid(ys, xs, indexing="ij")
        offs.append((origin + gy * stride + gx).ravel())
        starts.append((first + np.arange(len(ys))[:, None] * len(xs) + np.zeros_like(gx)).ravel())
        win = (int(np.rint(np.float32(window[0]) * s)), int(np.rint(np.float32(window[1]) * s)))
        rx = np.rint(gx.astype(np.float32) * s).astype(np.int32).ravel()
        ry = np.rint(gy.astype(np.float32) * s).astype(np.int32).ravel()
        rects.append(np.stack([rx, ry, np.full_like(rx, win[0]), np.full_like(rx, win[1])], 1))
        first += len(xs) * len(ys)
        top += ih
    return _Plan(tuple(layers), stride, top, top * stride, first, np.concatenate(offs).astype(np.int64),
                 np.concatenate(starts).astype(np.int64), np.concatenate(rects),
                 _resize_tables(size, tuple(layers), stride, top))


def _resize_tables(size: tuple[int, int], layers: tuple[_Layer, ...], stride: int, rows: int
                   ) -> tuple[np.ndarray, ...]:
    """`resize_linear_exact` to every layer at once, into the packed layout with a zero first row
    and column per block: columns (L, stride) source index and weight pairs per layer, rows (R,)
    source index and weight pairs and each packed row's layer and first row. Pads get weight 0
    (the result there is (0 + 2^15) >> 16 = 0)."""
    w, h = size
    n = len(layers)
    x0, x1 = np.zeros((n, stride), np.int64), np.zeros((n, stride), np.int64)
    a0, a1 = np.zeros((n, stride), np.int32), np.zeros((n, stride), np.int32)
    y0, y1 = np.zeros(rows, np.int64), np.zeros(rows, np.int64)
    b0, b1 = np.zeros(rows, np.int32), np.zeros(rows, np.int32)
    layer_of, block_of = np.zeros(rows, np.int64), np.zeros(rows, np.int64)
    for k, L in enumerate(layers):
        lw, lh = L.size
        top = L.origin // stride
        x0[k, 1:lw + 1], x1[k, 1:lw + 1], a0[k, 1:lw + 1], a1[k, 1:lw + 1] = _exact_tab(w, lw)
        r = slice(top + 1, top + 1 + lh)
        y0[r], y1[r], b0[r], b1[r] = _exact_tab(h, lh)
        layer_of[top:top + lh + 1], block_of[top:top + lh + 1] = k, top
    return x0, x1, a0, a1, y0, y1, b0, b1, layer_of, block_of
