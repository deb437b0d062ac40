"""Track tables from runs that differ only in how the work was spread (actors, torch threads).

Rows, times, track ids and the no-face rows come from decoding, detection and the tracker's
decisions and must be equal. The points and scores are float32 sums whose order depends on the
thread count and on the kernels torch picks for the CPU's instruction set, so they agree to
rounding, not to the bit: on one x86 machine the score is 1e-5 apart, on an AVX-512 EPYC one point
of frame 179 of the 2 s-segmented sadtalker clip is 1.7e-3 px apart between torch on 1 and on 2
threads (a re-crop pass carries the difference on). The bounds, a hundredth of a pixel and 1e-4
of score, are far below anything a user could see and well above rounding.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

EXACT = ["video", "frame_index", "pts", "time_s", "track_id"]
POINTS_PX = 1e-2        # points and their bounding box (x, y, w, h), pixels
SCORE = 1e-4


def assert_tracks_match(a: pd.DataFrame, b: pd.DataFrame, points_px: float = POINTS_PX, score: float = SCORE) -> None:
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b), f"{len(a)} rows != {len(b)} rows"
    for c in EXACT:
        pd.testing.assert_series_equal(a[c].reset_index(drop=True), b[c].reset_index(drop=True),
                                       check_exact=True, obj=c)
    floats = [c for c in a.columns if c not in EXACT]
    face = a["track_id"].notna().to_numpy()          # the same in b: track_id is compared exactly
    for df in (a, b):   # a frame without a face is one row with every face column null
        assert df.loc[~face, floats].isna().all().all()
    worst = {}
    for c in floats:
        x, y = a.loc[face, c].to_numpy(np.float64), b.loc[face, c].to_numpy(np.float64)
        assert (np.isnan(x) == np.isnan(y)).all(), f"{c}: null in one table only"
        d = np.abs(x - y)
        worst[c] = float(np.nanmax(d)) if d.size and not np.isnan(d).all() else 0.0
    far = {c: d for c, d in worst.items() if d > (score if c == "score" else points_px)}
    assert not far, f"differ beyond {points_px} px / score {score}: {far}"
