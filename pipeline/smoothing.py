"""Steady tracks: temporal smoothing of finished landmark tracks, with no lag.

Each frame's points are predicted on their own, so on video they shimmer by a pixel or two. This is
a batch job: when a track is smoothed its later frames are already known, so a window centred on
each frame costs no lag at all, which a causal filter (One Euro, Kalman) cannot offer (measured:
docs/smoothing/jitter.json). The filter is a local polynomial fit (Savitzky-Golay style, quadratic,
tricube weights): it reproduces constant-velocity and constant-acceleration motion exactly, so
true motion is neither lagged nor flattened, while frame-to-frame noise is averaged out. Near the
ends of a run the window is cut to the frames that exist (a one-sided fit there, a line rather
than a parabola, so the last frame is not extrapolated from noise).

Head and face move differently, so they are smoothed apart: each frame's points are split into a
pose (the similarity transform, translation, scale and in-plane rotation, that best maps the run's
mean shape onto them) and a shape (what is left, in the face's own frame: expression, and the 2-D
trace of turning the head). The pose, which moves like a body with inertia, gets a wide window
(`radius`); the shape, where blinks and lip movements are fast, a narrow one (`shape_radius`).
Working in the face's frame makes it scale-aware: the same setting fits a face 50 px or 500 px
wide, and a moving face's expression is smoothed as if it stood still.

Each window adapts to motion: where the wide fit departs from a narrow (`min_radius`) one by more
than `tolerance` face units and than `noise_k` times what the track's own noise would explain,
true motion outruns the wide window (a quick nod, a shake, a blink) and the narrow fit is used
there. And as in robust LOWESS, frames far off the fit (the network failed on them) are left out
of a second and third fit and filled in from their neighbours, rather than spread over them.

It works on the whole, finished table (after segments are stitched), per `track_id` over runs of
consecutive `frame_index`: a gap in a track (the face was lost and found again) starts a new run,
and a scene cut ends tracks anyway, so nothing is ever blended across either; segment and batch
boundaries are invisible to it. The box and pose columns (x, y, w, h, yaw, pitch, roll) are
recomputed from the smoothed points by the function `parquet.TableBuilder` derives them with
(`schema.geometry_columns`); `score` and rows without a face are untouched.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

from facetracks.models.landmarks68 import NUM_POINTS, interocular

from .schema import BOX_COLUMNS, POINT_COLUMNS, POSE_COLUMNS, face_column, geometry_columns

METHODS = ("none", "local-poly")


@dataclass(frozen=True)
class SmoothParams:
    """How tracks are smoothed; `to_dict()` goes into the track file's metadata."""
    method: str = "local-poly"   # "none": points as predicted
    radius: int = 8              # pose (translation, scale, in-plane rotation): frames on each side
    shape_radius: int = 4        # shape (expression, head turns) in the face's frame: frames on each side
    order: int = 2               # polynomial order of the local fits (2: constant acceleration is kept)
    min_radius: int = 2          # where the wide fit departs from this narrow one, motion outruns it...
    tolerance: float = 0.015     # ...by more than this (inter-ocular units)...
    noise_k: float = 3.0         # ...and than this many times what the track's own noise explains: blend to it
    outlier: float = 6.0         # a frame this many median residuals off its fit is left out and filled in (0: never)
    robust_rounds: int = 2       # reweighting rounds after the first fit (LOWESS uses 2-3)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown smoothing {self.method!r}: one of {', '.join(METHODS)}")
        bad = [f"{k} {getattr(self, k)} (at least {least})" for k, least in _LEAST.items() if getattr(self, k) < least]
        if bad:
            raise ValueError(f"smoothing parameters out of range: {', '.join(bad)}")

    def to_dict(self) -> dict:
        return {"method": "none"} if self.method == "none" else asdict(self)


_LEAST = {"radius": 1, "shape_radius": 0, "order": 0, "min_radius": 0, "tolerance": 0, "noise_k": 0, "outlier": 0,
          "robust_rounds": 0}          # each parameter's smallest value
NONE = SmoothParams("none")
_FIELDS = tuple(_LEAST)
_FLOATS = ("tolerance", "noise_k", "outlier")


def parse_smooth(text: str) -> SmoothParams:
    """`none`, `local-poly`, or `local-poly:radius=6,shape_radius=2` (the CLI's `--smooth`);
    ValueError naming what is wrong (the filter, the parameter or its value) and what is allowed."""
    method, _, rest = (x.strip() for x in text.partition(":"))
    if method not in METHODS:
        raise ValueError(f"unknown smoothing filter {method!r}: one of {', '.join(METHODS)} "
                         f"(parameters as local-poly:radius=8,shape_radius=4)")
    if method == "none" and rest:
        raise ValueError(f"{text!r}: 'none' takes no parameters")
    kw = {}
    for item in filter(None, (x.strip() for x in rest.split(","))):
        k, eq, v = (x.strip() for x in item.partition("="))
        if k not in _FIELDS:
            raise ValueError(f"unknown {method} parameter {k!r}: one of {', '.join(_FIELDS)}")
        kind = float if k in _FLOATS else int
        try:
            kw[k] = kind(v)
        except ValueError:
            kw[k] = math.nan
        if not eq or not math.isfinite(kw[k]):
            raise ValueError(f"{item!r}: {k} takes {'a finite number' if kind is float else 'an integer'}, "
                             f"as {k}={getattr(SmoothParams(), k)}")
        if kw[k] < _LEAST[k]:
            raise ValueError(f"{item!r}: {k} is at least {_LEAST[k]}")
    return SmoothParams(method, **kw)


@lru_cache(maxsize=512)
def _kernel(before: int, after: int, radius: int, order: int) -> np.ndarray:
    """Weights that give the fitted value at offset 0 of a weighted polynomial fit over offsets
    -before..after. Tricube weights: a smoother frequency response than a flat window."""
    off = np.arange(-before, after + 1, dtype=np.float64)
    w = (1 - (np.abs(off) / (radius + 1)) ** 3) ** 3
    # a one-sided window extrapolates: drop to a line there (a parabola would amplify the noise)
    k = min(order if before == after else min(order, 1), len(off) - 1)
    X = off[:, None] ** np.arange(k + 1)
    sw = np.sqrt(w)
    return np.linalg.pinv(sw[:, None] * X)[0] * sw


def _weighted_fit(flat: np.ndarray, radius: int, order: int, weights: np.ndarray) -> np.ndarray:
    """`local_fit` with a weight per frame (0: the frame is left out and the fit fills it in)."""
    T, C = flat.shape
    r = min(radius, T - 1)
    off = np.arange(-r, r + 1, dtype=np.float64)
    tri = (1 - (np.abs(off) / (radius + 1)) ** 3) ** 3
    view = np.lib.stride_tricks.sliding_window_view
    w = view(np.pad(weights, r), 2 * r + 1) * tri                                   # (T, 2r+1)
    y = view(np.pad(flat, ((r, r), (0, 0))), 2 * r + 1, axis=0)                     # (T, C, 2r+1)
    t = np.arange(T)
    inner = np.minimum(t, r) == np.minimum(T - 1 - t, r)     # a centred window, as in `_kernel`
    # the order each frame can afford: a line at the run's ends, less where few frames are weighted
    want = np.minimum(np.where(inner, order, min(order, 1)), (w > 0).sum(axis=1) - 1).clip(0)
    out = np.empty_like(flat)
    for k in np.unique(want):
        rows = np.flatnonzero(want == k)
        X = off[:, None] ** np.arange(k + 1)                                        # (2r+1, k+1)
        A = np.einsum("tj,jp,jq->tpq", w[rows], X, X) + 1e-9 * np.eye(k + 1)
        # the fit's value at offset 0 is a weighted sum of the window: weights w * (X A^-1 e0),
        # one small solve per frame instead of one per coordinate
        e0 = np.zeros((len(rows), k + 1, 1))
        e0[:, 0] = 1
        h = w[rows] * (X @ np.linalg.solve(A, e0))[..., 0]                          # (rows, 2r+1)
        out[rows] = np.einsum("tj,tcj->tc", h, y[rows])
    return out


def local_fit(x: np.ndarray, radius: int, order: int = 2, weights: np.ndarray | None = None) -> np.ndarray:
    """Local polynomial fit of a (T, ...) run along its first axis (radius 0: x as it is), each
    frame optionally weighted."""
    T = len(x)
    flat = x.reshape(T, -1).astype(np.float64)
    r = min(radius, T - 1)
    if r < 1:
        return flat.reshape(x.shape)
    if weights is not None:
        return _weighted_fit(flat, radius, order, weights).reshape(x.shape)
    out = np.empty_like(flat)
    if T > 2 * r:           # the interior: one kernel, a correlation along time
        win = np.lib.stride_tricks.sliding_window_view(flat, 2 * r + 1, axis=0)   # (T-2r, C, 2r+1)
        out[r:T - r] = win @ _kernel(r, r, radius, order)
        edges = list(range(r)) + list(range(T - r, T))
    else:
        edges = range(T)
    for t in edges:
        lo, hi = max(0, t - r), min(T - 1, t + r)
        out[t] = _kernel(t - lo, hi - t, radius, order) @ flat[lo:hi + 1]
    return out.reshape(x.shape)


def _rotate(ab: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Apply [[a, -b], [b, a]] per frame: ab (T, 2), v (T, N, 2) or (N, 2)."""
    a, b = ab[:, 0, None], ab[:, 1, None]
    return np.stack([a * v[..., 0] - b * v[..., 1], b * v[..., 0] + a * v[..., 1]], axis=-1)


def pose_shape(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split (T, 68, 2) points into a reference shape M (centred), per-frame similarity (ab: scale
    and rotation as a = s cos, b = s sin; t: translation) and the shape left over in the face's
    frame, so that points == rotate(ab, M + shape) + t exactly."""
    p = points.astype(np.float64)
    t = p.mean(axis=1)
    q = p - t[:, None]
    ref = q.mean(axis=0)
    for _ in range(2):      # the mean of the frames brought onto the reference (Procrustes, 2 rounds)
        n = (ref ** 2).sum()
        a = (q[..., 0] * ref[:, 0] + q[..., 1] * ref[:, 1]).sum(-1) / n
        b = (q[..., 1] * ref[:, 0] - q[..., 0] * ref[:, 1]).sum(-1) / n
        inv = np.stack([a, -b], axis=1) / (a * a + b * b)[:, None]
        ref = _rotate(inv, q).mean(axis=0)
    n = (ref ** 2).sum()
    a = (q[..., 0] * ref[:, 0] + q[..., 1] * ref[:, 1]).sum(-1) / n
    b = (q[..., 1] * ref[:, 0] - q[..., 0] * ref[:, 1]).sum(-1) / n
    ab = np.stack([a, b], axis=1)
    inv = np.stack([a, -b], axis=1) / (a * a + b * b)[:, None]
    return ref, ab, t, _rotate(inv, q) - ref


def _noise_gain(radius: int, narrow: int, order: int) -> float:
    """For white noise: spread of (wide - narrow fit) over spread of (raw - narrow fit), interior."""
    r = max(radius, narrow)
    pad = lambda h, k: np.pad(h, r - k)
    hw, hn = pad(_kernel(radius, radius, radius, order), radius), pad(_kernel(narrow, narrow, narrow, order), narrow)
    delta = np.zeros_like(hn)
    delta[r] = 1
    return float(np.sqrt(((hw - hn) ** 2).sum() / ((delta - hn) ** 2).sum()))


def _adaptive(x: np.ndarray, radius: int, p: SmoothParams, size, unit: float,
              weights: np.ndarray | None = None) -> np.ndarray:
    """The wide fit where it agrees with the narrow one (`min_radius`), sliding to the narrow fit
    where it departs by more than noise would explain: there true motion (a quick nod, a blink)
    is faster than the wide window follows. "Noise would explain" is measured on the run itself:
    `noise_k` times the departure white noise of the run's own level would give (that level: the
    median size of raw - narrow fit, so a noisy track is not mistaken for a moving one), and never
    less than `tolerance` face units. `size(diff)` is a departure per frame (and point)."""
    wide = local_fit(x, radius, p.order, weights)
    if not p.tolerance or p.min_radius >= radius:
        return wide
    narrow = local_fit(x, p.min_radius, p.order, weights)
    if 2 * p.min_radius > p.order:      # else the narrow fit is the raw track: no noise estimate from it
        keep = slice(None) if weights is None else weights > 0
        level = np.median(size(x - narrow)[keep], axis=0) * _noise_gain(radius, p.min_radius, p.order)
    else:
        level = np.zeros(1)
    limit = np.maximum(p.noise_k * level, p.tolerance * unit)
    a = np.clip(size(wide - narrow) / limit - 1, 0, 1)
    return wide + a[..., None] * (narrow - wide)


def smooth_run(points: np.ndarray, params: SmoothParams) -> np.ndarray:
    """(T, 68, 2) points of one run of consecutive frames of one track -> smoothed, same shape.

    Two passes, as robust LOWESS does: the second leaves out (bisquare weights) the frames the
    first found far from their neighbours, beyond `outlier` times the run's median residual
    and `tolerance`: a frame where the network failed (measured: single frames 30-75 % off on
    fast-moving faces) is then filled in from its neighbours instead of being spread over them."""
    if params.method == "none" or len(points) < 3:
        return points.copy()
    fit = _smooth_once(points, params, None)
    for _ in range(params.robust_rounds if params.outlier else 0):
        e = np.linalg.norm(points - fit, axis=-1).mean(axis=-1) / np.maximum(interocular(fit), 1e-6)
        limit = max(params.outlier * float(np.median(e)), params.tolerance)
        fit = _smooth_once(points, params, np.clip(1 - (e / limit) ** 2, 0, 1) ** 2)
    return fit


def _smooth_once(points: np.ndarray, params: SmoothParams, weights: np.ndarray | None) -> np.ndarray:
    ref, ab, t, shape = pose_shape(points)
    unit = float(interocular(ref)) or 1.0   # face units in ref pixels
    spread = float(np.sqrt((ref ** 2).sum(axis=1).mean()))      # how far a scale/rotation change moves points
    scale = np.hypot(ab[:, 0], ab[:, 1])[:, None]
    # pose departure: translation in ref pixels (divided by the frame's scale) plus what the
    # scale/rotation change does to a point at the face's typical radius
    pose_size = lambda d: np.linalg.norm(d[:, 2:], axis=1) / scale[:, 0] + np.linalg.norm(d[:, :2], axis=1) / scale[:, 0] * spread
    pose = _adaptive(np.concatenate([ab, t], axis=1), params.radius, params, pose_size, unit, weights)
    shape = _adaptive(shape, params.shape_radius, params, lambda d: np.linalg.norm(d, axis=-1), unit, weights)
    return (_rotate(pose[:, :2], ref + shape) + pose[:, None, 2:]).astype(points.dtype)


def runs(track_id: np.ndarray, frame_index: np.ndarray) -> list[np.ndarray]:
    """Row indices of each run: one track, consecutive frames, in frame order. `track_id` holds
    -1 where there is no face; those rows belong to no run."""
    face = np.flatnonzero(track_id >= 0)
    order = face[np.lexsort((frame_index[face], track_id[face]))]
    if not len(order):
        return []
    tid, fi = track_id[order], frame_index[order]
    breaks = np.flatnonzero((np.diff(tid) != 0) | (np.diff(fi) != 1)) + 1
    return np.split(order, breaks)


def table_points(table: pa.Table) -> np.ndarray:
    """(N, 68, 2) float32 points of every row (NaN where there is no face)."""
    cols = [table.column(c).to_numpy(zero_copy_only=False) for c in POINT_COLUMNS]
    flat = np.stack(cols, axis=1).astype(np.float32) if len(cols[0]) else np.zeros((0, 2 * NUM_POINTS), np.float32)
    return np.stack([flat[:, :NUM_POINTS], flat[:, NUM_POINTS:]], axis=-1)


def table_ids(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """track_id (-1 where null) and frame_index of every row."""
    tid = table.column("track_id").fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return tid, table.column("frame_index").to_numpy(zero_copy_only=False).astype(np.int64)


def smooth_tracks(table: pa.Table, params: SmoothParams, frame_size: tuple[int, int] | None = None) -> pa.Table:
    """The same table with each track's points smoothed (per run of consecutive frames) and its
    box and pose columns recomputed from them; "none" returns the table itself. `frame_size`
    (width, height of the upright frame) is the head pose's camera, as in `TableBuilder` (None:
    the pose columns become null, as they no longer describe the points)."""
    if params.method == "none" or table.num_rows == 0:
        return table
    tid, fi = table_ids(table)
    pts = table_points(table)
    out = pts.copy()
    for idx in runs(tid, fi):
        out[idx] = smooth_run(pts[idx], params)
    face = tid >= 0
    values = geometry_columns(out, frame_size)
    for name in BOX_COLUMNS + POSE_COLUMNS + POINT_COLUMNS:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i), face_column(values[name], face))
    return table
