"""Profiles: following faces gives the landmarks that detecting on every frame gives, on a real
clip with head turns and strong expressions; each profile's settings reach the output."""
import os
from dataclasses import replace

import numpy as np
import pytest

from facetracks.models.landmarks68 import LEFT_EYE_OUTER, RIGHT_EYE_OUTER
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.parquet import read_meta
from facetracks.pipeline.profiles import PROFILES, load_profile
from facetracks.pipeline.schema import points_from_columns

CLIP = "liveportrait_driving_d0.mp4"


def _points(df):
    df = df[df.track_id.notna()].drop_duplicates("frame_index").set_index("frame_index")
    return df, points_from_columns(df)


@pytest.mark.parametrize("name, mean_tol", [("accurate", 0.01), ("fast", 0.02)])
def test_followed_landmarks_match_per_frame_detection(videos_dir, name, mean_tol):
    """Measured: mean difference 0.1 % (accurate) and 0.6 % (fast) of the inter-ocular distance."""
    p = load_profile(name)
    path = os.path.join(videos_dir, CLIP)
    followed = annotate_video(path, CLIP, p.detector, p.predictor, p.follow, end_s=4.0)
    per_frame = annotate_video(path, CLIP, p.detector, p.predictor,
                               replace(p.follow, detect_every=1, batch_size=1, max_detect_every=0), end_s=4.0)
    assert followed.stats.detections < per_frame.stats.detections / 4
    fa, a = _points(followed.table.to_pandas())
    fb, b = _points(per_frame.table.to_pandas())
    assert len(fa) >= len(fb) - 2 and len(fb) >= 0.9 * per_frame.stats.frames
    both = fa.index.intersection(fb.index)
    a, b = a[fa.index.get_indexer(both)], b[fb.index.get_indexer(both)]
    iod = np.linalg.norm(b[:, LEFT_EYE_OUTER] - b[:, RIGHT_EYE_OUTER], axis=-1)
    diff = np.linalg.norm(a - b, axis=-1).mean(-1) / iod
    assert diff.mean() <= mean_tol and diff.max() <= 0.05


def test_every_profile_names_a_shipped_model():
    for name in PROFILES:
        assert load_profile(name).predictor.cfg.name == PROFILES[name].model


def test_profile_values_are_defaults_and_options_override_them(data_dir, tmp_path):
    from facetracks.jobs.cli import main
    from .clips import moving_clip, pick_faces
    moving_clip(str(tmp_path / "one.mp4"), pick_faces(data_dir, 1), frames_each=4)
    out = tmp_path / "out"
    assert main(["annotate", str(tmp_path / "one.mp4"), "--out", str(out), "--profile", "fast",
                 "--detect-every", "5"]) == 0
    meta = read_meta(str(out / "one.mp4.parquet"))
    assert meta["model"].startswith("ft68-resnet-xs-hm@")
    params = meta["params"]
    assert params["follow"]["detect_every"] == 5                          # the option
    assert params["follow"]["batch_size"] == PROFILES["fast"].follow["batch_size"]   # the profile
    assert params["detector"]["detect_side"] == 320 and params["predictor"] == {"refine": 1, "flip": False, "flip_last": True, "settled_move": 0.0, "settled_score": 1.0, "threads": 1, "half": None}
    assert params["detector"]["min_face"] == 24                           # the dataclass default
    assert params["detector"]["min_neighbors"] == 3                       # the profile
    assert params["follow"]["look_near"] is True and params["follow"]["hold_lost"] is True     # spelled out


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_the_cli_runs_every_setting_a_profile_makes(name):
    """What `evaluate` measured for a profile is what `annotate --profile` runs: no profile key
    may be dropped on the way (fast's flip_last once was, leaving its score uncalibrated)."""
    from facetracks.jobs.annotate_cmd import run_params
    from facetracks.jobs.cli import build_parser
    prof = PROFILES[name]
    detector, follow, predictor = run_params(build_parser().parse_args(["annotate", "x", "--out", "o",
                                                                        "--profile", name]), prof)
    for given, wanted in ((detector, prof.detector), (follow, prof.follow), (predictor, prof.predictor)):
        assert {k: given.get(k) for k in wanted} == wanted
    no_flip = run_params(build_parser().parse_args(["annotate", "x", "--out", "o", "--profile", name, "--no-flip"]),
                         prof)[2]
    assert no_flip["flip"] is False and no_flip["flip_last"] is False
    every_thread = run_params(build_parser().parse_args(["annotate", "x", "--out", "o", "--profile", name,
                                                         "--net-threads", "0"]), prof)[2]
    assert every_thread["threads"] == 0
    follow_of = lambda *o: run_params(build_parser().parse_args(["annotate", "x", "--out", "o", "--profile", name, *o]), prof)[1]
    assert follow["oversize"] is True and follow_of("--no-oversize")["oversize"] is False
    assert follow["turned_every"] == 96 and follow_of("--turned-every", "0")["turned_every"] == 0


def test_a_cadence_given_on_the_command_line_is_not_stretched():
    """`--detect-every 1` means every frame: the profile's stretching (max_detect_every) does not
    apply to a cadence given alone, only to one given with --max-detect-every."""
    from facetracks.jobs.annotate_cmd import run_params
    from facetracks.jobs.cli import build_parser

    def follow(*opts):
        return run_params(build_parser().parse_args(["annotate", "x", "--out", "o", *opts]), PROFILES["accurate"])[1]
    assert follow()["max_detect_every"] == PROFILES["accurate"].follow["max_detect_every"] > 8
    assert follow("--detect-every", "1")["max_detect_every"] == 0
    assert follow("--detect-every", "4", "--max-detect-every", "12")["max_detect_every"] == 12
