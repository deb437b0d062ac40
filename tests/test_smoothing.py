"""Temporal smoothing of tracks (pipeline/smoothing.py) and the jitter metric (training/metrics.py),
on small real track tables built the way the pipeline builds them (parquet.TableBuilder)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from facetracks.models.landmarks68 import LEFT_EYE_OUTER, NUM_POINTS, RIGHT_EYE_OUTER
from facetracks.pipeline.parquet import TableBuilder
from facetracks.pipeline.schema import SCHEMA
from facetracks.pipeline.smoothing import NONE, SmoothParams, parse_smooth, smooth_tracks, table_ids, table_points
from facetracks.training.metrics import clip_jitter, jitter

IOD = 60.0


def face_shape(seed: int = 0) -> np.ndarray:
    """A fixed 68-point shape about 100 px wide, outer eye corners IOD apart."""
    pts = np.random.default_rng(seed).uniform(-50, 50, (NUM_POINTS, 2))
    pts[RIGHT_EYE_OUTER], pts[LEFT_EYE_OUTER] = (-IOD / 2, -15), (IOD / 2, -15)   # subject's right on the image left
    pts[[39, 37, 38, 40, 41]] = [(-12, -15), (-24, -20), (-18, -20), (-18, -10), (-24, -10)]   # an open eye
    return pts


def path(n: int, v=(8.0, 3.0), a=(0.0, 0.0), at=(200.0, 150.0)) -> np.ndarray:
    """(n, 68, 2) the face moving with velocity v and acceleration a (px/frame, px/frame^2)."""
    t = np.arange(n, dtype=np.float64)[:, None]
    centre = np.array(at) + t * np.array(v) + 0.5 * t * t * np.array(a)
    return face_shape()[None] + centre[:, None, :]


def build(tracks: dict[int, tuple[list[int], np.ndarray]], frames: int) -> pa.Table:
    """Rows for `frames` frames: track id -> (its frame indices, its points per frame)."""
    b = TableBuilder("v.mp4")
    for f in range(frames):
        faces = [(tid, pts[fr.index(f)].astype(np.float32), 0.9) for tid, (fr, pts) in tracks.items() if f in fr]
        b.add_frame(f, f * 40, f * 0.04, faces)
    return b.table()


def track_jitter(table: pa.Table) -> float:
    tid, fi = table_ids(table)
    return clip_jitter(tid, fi, table_points(table))


def rows_of(table: pa.Table, track: int) -> np.ndarray:
    tid, fi = table_ids(table)
    sel = tid == track
    return table_points(table)[sel][np.argsort(fi[sel])]


def test_jitter_metric_values():
    still = path(10, v=(0, 0))
    assert clip_jitter(np.zeros(10), np.arange(10), still) == 0
    assert clip_jitter(np.zeros(10), np.arange(10), path(10, v=(9, -4))) == pytest.approx(0, abs=1e-9)
    wobble = still + (np.arange(10) % 2)[:, None, None] * np.array([3.0, 0.0])   # +3 px every other frame
    assert clip_jitter(np.zeros(10), np.arange(10), wobble) == pytest.approx(3 / IOD)
    # a gap or another track is never a neighbour; no-face rows (-1) are ignored
    assert len(jitter(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 3, 4, 5, 6]), np.concatenate([still[:6]]))) == 1
    assert len(jitter(np.array([0, -1, 0]), np.array([0, 1, 2]), still[:3])) == 0


def test_jitter_halves_on_noisy_smooth_path():
    n = 120
    truth = path(n, v=(3, 1), a=(0.02, -0.01))
    noisy = truth + np.random.default_rng(1).normal(0, 0.5, truth.shape)
    raw = build({0: (list(range(n)), noisy)}, n)
    out = smooth_tracks(raw, SmoothParams())
    assert track_jitter(out) <= 0.5 * track_jitter(raw)
    err = lambda t: np.linalg.norm(rows_of(t, 0) - truth, axis=-1).mean()
    assert err(out) < err(raw)


def test_no_lag_on_constant_velocity():
    n = 40
    truth = path(n, v=(10, -6))
    exact = smooth_tracks(build({0: (list(range(n)), truth)}, n), SmoothParams())
    # a straight line at constant speed is reproduced exactly, ends included: nothing trails behind
    np.testing.assert_allclose(rows_of(exact, 0), truth, atol=2e-3)
    noisy = truth + np.random.default_rng(2).normal(0, 0.6, truth.shape)
    raw = build({0: (list(range(n)), noisy)}, n)
    out = smooth_tracks(raw, SmoothParams())
    e_raw = np.linalg.norm(rows_of(raw, 0) - truth, axis=-1).mean(axis=-1)
    e_out = np.linalg.norm(rows_of(out, 0) - truth, axis=-1).mean(axis=-1)
    assert e_out.mean() <= e_raw.mean()
    # no systematic offset along the motion (what lag would be)
    along = ((rows_of(out, 0) - truth).mean(axis=1) @ np.array([10, -6]) / np.hypot(10, -6))
    assert abs(along.mean()) < 0.1


def test_constant_acceleration_kept_inside():
    n, r = 30, SmoothParams().radius
    truth = path(n, v=(2, 0), a=(0.5, 0.3))
    out = rows_of(smooth_tracks(build({0: (list(range(n)), truth)}, n), SmoothParams()), 0)
    np.testing.assert_allclose(out[r:n - r], truth[r:n - r], atol=2e-3)


def test_reset_at_track_gap_and_between_tracks():
    a = path(10, v=(0, 0), at=(100, 100))
    b = path(10, v=(0, 0), at=(400, 300))
    # track 0 is lost on frames 10-11 and found again far away; track 1 shares frames with track 0
    frames0 = list(range(10)) + list(range(12, 22))
    table = build({0: (frames0, np.concatenate([a, b])), 1: (list(range(22)), path(22, v=(0, 0), at=(300, 100)))}, 22)
    out = smooth_tracks(table, SmoothParams())
    got = rows_of(out, 0)
    # still points stay exactly where they are: nothing blended across the gap or from track 1
    np.testing.assert_allclose(got[:10], a, atol=1e-3)
    np.testing.assert_allclose(got[10:], b, atol=1e-3)
    np.testing.assert_allclose(rows_of(out, 1), rows_of(table, 1), atol=1e-3)


def test_blink_kept_while_head_shimmer_goes():
    """The pose gets the wide window, the shape (expression) a narrow, motion-adaptive one: a
    2-frame blink survives, where one wide fixed window fills it in, and the shimmer of the whole
    face is still halved."""
    n = 40
    truth = path(n, v=(3, 1))
    truth[19:21, [37, 38, 40, 41], 1] = truth[19:21, [36], 1]     # the eye closes on frames 19-20
    noisy = truth + np.random.default_rng(4).normal(0, 0.6, (n, 1, 2))   # the whole face shimmers
    table = build({0: (list(range(n)), noisy)}, n)
    gap = lambda p: np.abs(p[:, 37, 1] - p[:, 41, 1])
    ours = rows_of(smooth_tracks(table, SmoothParams()), 0)
    wide = rows_of(smooth_tracks(table, SmoothParams(shape_radius=8, tolerance=0)), 0)
    open_gap = gap(truth)[0]
    assert gap(ours)[19:21].max() < 0.35 * open_gap       # the eye still closes (two thirds of the way)
    assert gap(wide)[19:21].max() > 0.6 * open_gap        # one wide window would fill the blink in
    assert track_jitter(smooth_tracks(table, SmoothParams())) <= 0.5 * track_jitter(table)


def test_fast_head_shake_followed():
    """A 2.5 Hz head shake (25 fps), 0.3 face wide, is faster than the wide pose window passes: the fit departs from
    the narrow one by far more than the track's noise, so the narrow one is used there."""
    n = 60
    t = np.arange(n)
    truth = path(n, v=(0, 0)) + (0.3 * IOD * np.sin(2 * np.pi * 2.5 * t / 25))[:, None, None] * np.array([1.0, 0.0])
    noisy = truth + np.random.default_rng(6).normal(0, 0.3, truth.shape)
    table = build({0: (list(range(n)), noisy)}, n)
    err = lambda p: np.linalg.norm(rows_of(smooth_tracks(table, p), 0) - truth, axis=-1).mean()
    raw = np.linalg.norm(rows_of(table, 0) - truth, axis=-1).mean()
    assert err(SmoothParams()) < 1.1 * raw                  # followed: within 10 % of the raw error
    assert err(SmoothParams(tolerance=0)) > 5 * raw          # a fixed wide window flattens the shake


def test_failed_frame_filled_in_not_spread():
    """A frame where the network failed (every point 40 % of a face off) is left out of the fit and
    filled in from its neighbours; without the robust rounds it drags its neighbours along."""
    n = 30
    truth = path(n, v=(5, 2))
    noisy = truth + np.random.default_rng(7).normal(0, 0.3, truth.shape)
    noisy[15] += 0.4 * IOD
    table = build({0: (list(range(n)), noisy)}, n)
    err = lambda p: np.linalg.norm(rows_of(smooth_tracks(table, p), 0) - truth, axis=-1).mean(axis=-1)
    robust, plain = err(SmoothParams()), err(SmoothParams(outlier=0))
    assert robust.max() < 0.02 * IOD
    assert plain[[13, 14, 16, 17]].max() > 0.05 * IOD


def test_scale_aware():
    """The same face, noise and motion at 5x the size: the same result, scaled (face units)."""
    n = 30
    small = path(n, v=(2, 1), a=(0.1, 0)) + np.random.default_rng(5).normal(0, 0.3, (n, NUM_POINTS, 2))
    a = rows_of(smooth_tracks(build({0: (list(range(n)), small)}, n), SmoothParams()), 0)
    b = rows_of(smooth_tracks(build({0: (list(range(n)), 5 * small)}, n), SmoothParams()), 0)
    np.testing.assert_allclose(b, 5 * a, atol=5e-3)


def test_boxes_consistent_and_non_face_rows_untouched():
    n = 16
    noisy = path(n, v=(4, 2)) + np.random.default_rng(3).normal(0, 1.0, (n, NUM_POINTS, 2))
    frames = list(range(3, 13))          # frames 0-2 and 13-15 have no face
    table = build({5: (frames, noisy[3:13])}, n)
    out = smooth_tracks(table, SmoothParams())
    assert out.schema.equals(SCHEMA) and out.num_rows == table.num_rows
    df, before = out.to_pandas(), table.to_pandas()
    faces = df.track_id.notna()
    pts = table_points(out)[faces.to_numpy()]
    np.testing.assert_allclose(df.x[faces], pts[:, :, 0].min(axis=1), atol=1e-4)
    np.testing.assert_allclose(df.y[faces], pts[:, :, 1].min(axis=1), atol=1e-4)
    np.testing.assert_allclose(df.w[faces], np.ptp(pts[:, :, 0], axis=1), atol=1e-4)
    np.testing.assert_allclose(df.h[faces], np.ptp(pts[:, :, 1], axis=1), atol=1e-4)
    assert not np.allclose(table_points(out)[faces.to_numpy()], table_points(table)[faces.to_numpy()])
    # rows without a face: every face column still null; ids, times and score as they were
    assert df[~faces].drop(columns=["video", "frame_index", "pts", "time_s"]).isna().all().all()
    for c in ("video", "frame_index", "pts", "time_s", "track_id", "score"):
        assert df[c].equals(before[c]), c


def test_none_returns_table_unchanged():
    table = build({0: (list(range(8)), path(8))}, 10)
    assert smooth_tracks(table, NONE) is table
    assert smooth_tracks(table, parse_smooth("none")).equals(table)
    assert NONE.to_dict() == {"method": "none"}


def test_metadata_kept_and_params_parse():
    table = build({0: (list(range(8)), path(8))}, 8).replace_schema_metadata({b"facetracks": b"{}"})
    assert smooth_tracks(table, SmoothParams()).schema.metadata == {b"facetracks": b"{}"}
    p = parse_smooth("local-poly:radius=6,shape_radius=2")
    assert (p.radius, p.shape_radius, p.order) == (6, 2, 2) and p.to_dict()["method"] == "local-poly"
    assert parse_smooth("local-poly") == SmoothParams()
    with pytest.raises(ValueError):
        parse_smooth("median")
    with pytest.raises(ValueError):
        parse_smooth("local-poly:width=3")


@pytest.mark.parametrize("given, said", [
    ("local_poly", "unknown smoothing filter 'local_poly': one of none, local-poly"),
    ("local-poly:radiuss=3", "unknown local-poly parameter 'radiuss': one of radius, shape_radius,"),
    ("local-poly:radius=x", "'radius=x': radius takes an integer"),
    ("local-poly:radius", "'radius': radius takes an integer"),
    ("local-poly:tolerance=nan", "'tolerance=nan': tolerance takes a finite number"),
    ("local-poly:radius=0", "'radius=0': radius is at least 1"),
    ("none:radius=3", "'none' takes no parameters"),
])
def test_a_bad_smooth_option_names_what_is_wrong_and_the_choices(given, said, capsys):
    """`--smooth local_poly` said "invalid parse_smooth value: 'local_poly'": the function's name,
    no choices, not which key or value was wrong."""
    from facetracks.jobs.cli import build_parser
    for command in (["annotate", "x", "--out", "o"], ["bench"], ["evaluate", "--data", "d"]):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([*command, "--smooth", given])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_.value.code == 2 and said in err and "parse_smooth" not in err, err
        assert err.startswith(f"facetracks {command[0]}: error: argument --smooth: ")


def test_short_runs_and_empty_table():
    one = build({0: ([0], path(1)), 1: ([0, 1], path(2, at=(400, 300)))}, 2)
    out = smooth_tracks(one, SmoothParams())
    np.testing.assert_allclose(table_points(out), table_points(one), atol=1e-4)
    empty = TableBuilder("v.mp4").table()
    assert smooth_tracks(empty, SmoothParams()).num_rows == 0
