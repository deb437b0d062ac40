"""Measure smoothers on raw track files: jitter per real clip before/after, and against ground
truth, NME and jitter raw vs smoothed on the moving stills (smooth paths) and on the head-shake
clip (fast true motion). Writes jitter.json.

    python docs/smoothing/measure.py RAW_DIR [--out docs/smoothing/jitter.json]

RAW_DIR holds points as predicted, unsmoothed (`python docs/smoothing/make_raw.py RAW_DIR` builds it):
- RAW_DIR/<profile>/*.parquet: `facetracks annotate <the 8 single-face clips of ../shared/videos>
  --out RAW_DIR/<profile> --profile <profile> --smooth none`;
- RAW_DIR/moving/{truth.npz, <profile>.parquet}: `facetracks.jobs.steady.moving_stills` on 10 identity-test
  stills (`jobs.clips.pick_faces(DATA, 10, max_h=260)`, 32 frames each), annotated by `facetracks.pipeline.annotate.annotate_video`;
- RAW_DIR/shake/{truth.npz, <profile>.parquet}: the same with 8 stills, `frames_each=40, seed=1,
  shake=True` (optional).
Besides the shipped filter and its variants it runs causal filters (One Euro, constant-velocity
Kalman) and a Kalman RTS smoother, for comparison only.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from facetracks.jobs.steady import MovingClip, score_table  # noqa: E402
from facetracks.models.landmarks68 import interocular  # noqa: E402
from facetracks.pipeline import smoothing as sm  # noqa: E402
from facetracks.training.metrics import clip_jitter  # noqa: E402


def one_euro(x: np.ndarray, scale: float, min_cutoff: float = 1.0, beta: float = 0.5, fps: float = 25.0,
             d_cutoff: float = 1.0) -> np.ndarray:
    """Causal One Euro filter (Casiez et al. 2012) along axis 0, speed measured in face units/s."""
    def alpha(c):
        tau = 1 / (2 * np.pi * c)
        return 1 / (1 + tau * fps)
    out = np.empty_like(x)
    out[0], dx = x[0], np.zeros_like(x[0])
    for t in range(1, len(x)):
        d = (x[t] - out[t - 1]) * fps
        dx = dx + alpha(d_cutoff) * (d - dx)
        c = min_cutoff + beta * np.abs(dx) / scale
        a = alpha(c)
        out[t] = out[t - 1] + a * (x[t] - out[t - 1])
    return out


def kalman(x: np.ndarray, q: float, r: float, rts: bool) -> np.ndarray:
    """Constant-velocity Kalman per coordinate (state: position, velocity); `rts`: the
    Rauch-Tung-Striebel backward pass too (uses later frames: no lag, like a centred window)."""
    T = len(x)
    F = np.array([[1.0, 1.0], [0.0, 1.0]])
    Q = q * np.array([[0.25, 0.5], [0.5, 1.0]])
    flat = x.reshape(T, -1)
    m = np.zeros((T, 2, flat.shape[1]))
    P = np.zeros((T, 2, 2))
    mp = np.zeros_like(m)
    Pp = np.zeros_like(P)
    m[0, 0], P[0] = flat[0], np.diag([r, 1e3])
    for t in range(1, T):
        mp[t] = F @ m[t - 1]
        Pp[t] = F @ P[t - 1] @ F.T + Q
        k = Pp[t][:, 0] / (Pp[t][0, 0] + r)
        m[t] = mp[t] + k[:, None] * (flat[t] - mp[t][0])[None]
        P[t] = Pp[t] - np.outer(k, Pp[t][0])
    if rts:
        for t in range(T - 2, -1, -1):
            G = P[t] @ F.T @ np.linalg.inv(Pp[t + 1])
            m[t] = m[t] + G @ (m[t + 1] - mp[t + 1])
            P[t] = P[t] + G @ (P[t + 1] - Pp[t + 1]) @ G.T
    return m[:, 0].reshape(x.shape)


def apply(table: pa.Table, name: str, spec) -> pa.Table:
    """Any filter over the runs of a table (the shipped one through `smooth_tracks`)."""
    if isinstance(spec, sm.SmoothParams):
        return sm.smooth_tracks(table, spec)
    tid, fi = sm.table_ids(table)
    pts = sm.table_points(table)
    out = pts.copy()
    fps = 25.0
    for idx in sm.runs(tid, fi):
        p = pts[idx].astype(np.float64)
        if len(p) < 3:
            continue
        scale = float(np.median(interocular(p)))
        out[idx] = spec(p, scale, fps)
    cols = {c: out[:, k % 68, k // 68] for k, c in enumerate(sm.POINT_COLUMNS)}
    face = tid >= 0
    for c, v in cols.items():
        i = table.schema.get_field_index(c)
        table = table.set_column(i, table.schema.field(i), pa.array(v.astype(np.float32), mask=~face))
    return table


CANDIDATES = {
    "shipped: pose r8 / shape r4, adaptive to r2 beyond 1.5 % and 3x noise, robust": sm.SmoothParams(),
    "shipped without the robust rounds": sm.SmoothParams(outlier=0),
    "pose r8 / shape r4, adaptive 0.5 %": sm.SmoothParams(tolerance=0.005),
    "pose r8 / shape r4, adaptive 1 %": sm.SmoothParams(tolerance=0.01),
    "pose r8 / shape r4, adaptive 2 %": sm.SmoothParams(tolerance=0.02),
    "pose r8 / shape r4, adaptive 1.5 % to r3": sm.SmoothParams(min_radius=3),
    "pose r8 / shape r3, adaptive 1.5 %": sm.SmoothParams(shape_radius=3),
    "pose r8 / shape r6, adaptive 1.5 %": sm.SmoothParams(shape_radius=6),
    "pose r6 / shape r4, adaptive 1.5 %": sm.SmoothParams(radius=6),
    "pose r8 / shape r4, fixed, robust": sm.SmoothParams(tolerance=0),
    "pose r8 / shape r4, fixed": sm.SmoothParams(tolerance=0, outlier=0),
    "one window r4, fixed": sm.SmoothParams(radius=4, shape_radius=4, tolerance=0, outlier=0),
    "one window r6, fixed": sm.SmoothParams(radius=6, shape_radius=6, tolerance=0, outlier=0),
    "pose only r8, fixed": sm.SmoothParams(shape_radius=0, tolerance=0, outlier=0),
    "one-euro mc1 b0.5 (causal)": lambda p, s, fps: one_euro(p, s, 1.0, 0.5, fps),
    "one-euro mc2 b2 (causal)": lambda p, s, fps: one_euro(p, s, 2.0, 2.0, fps),
    "kalman cv (causal)": lambda p, s, fps: kalman(p, (0.002 * s) ** 2, (0.004 * s) ** 2, False),
    "kalman cv rts": lambda p, s, fps: kalman(p, (0.002 * s) ** 2, (0.004 * s) ** 2, True),
}


def real_jitter(table: pa.Table) -> float:
    tid, fi = sm.table_ids(table)
    return clip_jitter(tid, fi, sm.table_points(table))


def expression(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Eye opening (mean lid gap of both eyes) and mouth opening (inner lips), in face units, per face row."""
    tid, _ = sm.table_ids(table)
    p = sm.table_points(table)[tid >= 0].astype(np.float64)
    iod = interocular(p)
    gap = lambda a, b: np.linalg.norm(p[:, a] - p[:, b], axis=-1)
    eye = (gap(37, 41) + gap(38, 40) + gap(43, 47) + gap(44, 46)) / 4 / iod
    return eye, gap(62, 66) / iod


def fidelity(raw: pa.Table, smoothed: pa.Table) -> dict:
    """What smoothing does to true non-rigid motion, which the moving stills cannot show: how much
    of the raw range (2nd-98th percentile) of eye opening (blinks) and mouth opening is kept, and
    how far points move from the raw ones (mean and 99th percentile over faces, face units)."""
    (e0, m0), (e1, m1) = expression(raw), expression(smoothed)
    rng = lambda x: np.percentile(x, 98) - np.percentile(x, 2) if len(x) else np.nan
    tid, _ = sm.table_ids(raw)
    a, b = sm.table_points(raw)[tid >= 0], sm.table_points(smoothed)[tid >= 0]
    dev = np.linalg.norm(a - b, axis=-1).mean(axis=-1) / interocular(a) if len(a) else np.zeros(1)
    return {"eye_range_kept": float(rng(e1) / rng(e0)), "mouth_range_kept": float(rng(m1) / rng(m0)),
            "moved_mean": float(dev.mean()), "moved_p99": float(np.percentile(dev, 99))}


def _rounded(x):
    """Floats to 4 significant digits: the file is for reading and diffing."""
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return float(f"{x:.4g}") if isinstance(x, float) else x


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("raw_dir")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "jitter.json"))
    ap.add_argument("--profiles", nargs="+", default=["accurate", "fast"])
    ap.add_argument("--only", nargs="*", default=None, help="candidate names to run (default: all)")
    args = ap.parse_args()
    truth = np.load(os.path.join(args.raw_dir, "moving", "truth.npz"))
    clip = MovingClip("", truth["truth"], truth["shot"])
    shake_dir = os.path.join(args.raw_dir, "shake")
    shake = None
    if os.path.exists(os.path.join(shake_dir, "truth.npz")):
        st = np.load(os.path.join(shake_dir, "truth.npz"))
        shake = MovingClip("", st["truth"], st["shot"])
    res = {"metric": "jitter: median over frames of |p_t - (p_{t-1}+p_{t+1})/2| averaged over 68 points / "
                     "outer-eye-corner distance; 'clips' and 'median_over_clips' in %, 'moving', 'shake' and "
                     "'fidelity' as fractions; moving stills: 10 identity-test stills x 32 frames, 2-10 px/frame; "
                     "shake: 8 stills x 40 frames at 1.5-3 Hz",
           "profiles": {}}
    names = args.only or list(CANDIDATES)
    for prof in args.profiles:
        files = sorted(glob.glob(os.path.join(args.raw_dir, prof, "**", "*.parquet"), recursive=True))
        moving = pq.read_table(os.path.join(args.raw_dir, "moving", f"{prof}.parquet"))
        raw_tables = {os.path.basename(f)[:-len(".parquet")]: pq.read_table(f) for f in files}
        raw_j = {k: real_jitter(t) for k, t in raw_tables.items()}
        mv_raw = score_table(moving, clip)
        sk_path = os.path.join(shake_dir, f"{prof}.parquet")
        shaking = pq.read_table(sk_path) if shake is not None and os.path.exists(sk_path) else None
        sk_raw = score_table(shaking, shake) if shaking is not None else None
        out = res["profiles"][prof] = {"raw": {"clips": {k: 100 * v for k, v in raw_j.items()},
                                               "median_over_clips": 100 * float(np.nanmedian(list(raw_j.values()))),
                                               "moving": {k: v for k, v in mv_raw.items() if k != "nme_per_frame"},
                                               "shake": sk_raw and {k: v for k, v in sk_raw.items() if k != "nme_per_frame"}},
                                       "filters": {}}
        print(f"\n{prof}: raw median over clips {out['raw']['median_over_clips']:.3f} %, moving NME "
              f"{100 * mv_raw['nme_mean']:.3f} % jitter {100 * mv_raw['jitter_median']:.3f} % "
              f"(truth {100 * mv_raw['truth_jitter_median']:.4f} %)"
              + (f"; shake NME {100 * sk_raw['nme_mean']:.3f} %" if sk_raw else ""))
        for name in names:
            spec = CANDIDATES[name]
            sm_tables = {k: apply(t, name, spec) for k, t in raw_tables.items()}
            js = {k: real_jitter(t) for k, t in sm_tables.items()}
            fid = {k: fidelity(raw_tables[k], t) for k, t in sm_tables.items()}
            fmed = {q: float(np.nanmedian([f[q] for f in fid.values()])) for q in next(iter(fid.values()))}
            mv = score_table(apply(moving, name, spec), clip)
            ratio = {k: js[k] / raw_j[k] for k in js if np.isfinite(raw_j[k])}
            med = float(np.nanmedian(list(js.values())))
            out["filters"][name] = {
                "params": spec.to_dict() if isinstance(spec, sm.SmoothParams) else name,
                "clips": {k: 100 * v for k, v in js.items()}, "ratio": ratio, "fidelity": fid,
                "fidelity_median": fmed,
                "median_over_clips": 100 * med,
                "median_ratio": med / float(np.nanmedian(list(raw_j.values()))),
                "moving": {"nme_mean": mv["nme_mean"], "nme_median": mv["nme_median"], "jitter_median": mv["jitter_median"],
                           "nme_delta": mv["nme_mean"] - mv_raw["nme_mean"],
                           "jitter_ratio": mv["jitter_median"] / mv_raw["jitter_median"]}}
            f = out["filters"][name]
            if shaking is not None:
                sk = score_table(apply(shaking, name, spec), shake)
                f["shake"] = {"nme_mean": sk["nme_mean"], "nme_delta": sk["nme_mean"] - sk_raw["nme_mean"],
                              "jitter_median": sk["jitter_median"]}
            print(f"  {name:38} real median {f['median_over_clips']:.3f} % (x{f['median_ratio']:.2f}, worst clip "
                  f"x{max(ratio.values()):.2f}) eye {fmed['eye_range_kept']:.2f} mouth {fmed['mouth_range_kept']:.2f} "
                  f"moved {100 * fmed['moved_mean']:.2f}/{100 * fmed['moved_p99']:.2f}%  moving NME {100 * mv['nme_mean']:.3f} % "
                  f"({100 * f['moving']['nme_delta']:+.3f})  jitter x{f['moving']['jitter_ratio']:.2f}"
                  + (f"  shake NME {100 * f['shake']['nme_delta']:+.3f}" if "shake" in f else ""))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(_rounded(res), fh, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
