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


# every `annotate` option a profile can set, and where run_params puts its value
PROFILE_OPTIONS = {
    "--scale-factor": (0, "scale_factor"), "--min-neighbors": (0, "min_neighbors"), "--min-face": (0, "min_face"),
    "--detect-side": (0, "detect_side"), "--batch-size": (1, "batch_size"), "--detect-every": (1, "detect_every"),
    "--max-detect-every": (1, "max_detect_every"), "--idle-detect-every": (1, "idle_detect_every"),
    "--min-score": (1, "min_score"), "--max-faces": (1, "max_faces"), "--cut-threshold": (1, "cut_threshold"),
    "--hold-lost": (1, "hold_lost"), "--look-near": (1, "look_near"), "--rescan-changed": (1, "rescan_changed"),
    "--oversize": (1, "oversize"), "--turned-every": (1, "turned_every"), "--full-scan-every": (1, "full_scan_every"),
    "--refine": (2, "refine"), "--settled-move": (2, "settled_move"), "--settled-score": (2, "settled_score"),
    "--net-threads": (2, "threads"),
}


def _help_entries(monkeypatch, command: str) -> dict[str, str]:
    """`facetracks COMMAND --help` as printed, each option's help text under its first flag."""
    import contextlib
    import io
    import re
    from facetracks.jobs.cli import build_parser
    monkeypatch.setenv("COLUMNS", "2000")           # one line per option: no word cut at a hyphen
    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    entries, flag = {}, None
    for line in text.getvalue().splitlines():
        if m := re.match(r"  (-[-\w]+)", line):
            flag = m.group(1)
            entries[flag] = line
        elif flag and line.startswith("   "):
            entries[flag] += " " + line.strip()
        else:
            flag = None
    return entries


def _stated(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}"


def test_annotate_help_states_the_defaults_each_profile_runs(monkeypatch):
    """`annotate --help` said "default 1.1" for --scale-factor and "default 5" for --min-neighbors
    (HaarDetector's), which neither profile runs, and accurate's values for fast's (--detect-side
    640, --min-score 0.45). Each stated default is now what `annotate --profile P` runs."""
    import re
    from facetracks.jobs.annotate_cmd import run_params
    from facetracks.jobs.cli import build_parser
    runs = {name: run_params(build_parser().parse_args(["annotate", "x", "--out", "o", "--profile", name]), prof)
            for name, prof in PROFILES.items()}
    entries = _help_entries(monkeypatch, "annotate")
    for option, (part, key) in PROFILE_OPTIONS.items():
        text = entries[option]
        ran = {name: _stated(run[part][key]) for name, run in runs.items()}
        if m := re.search(r"default: the profile's \(([^)]*)\)", text):
            stated = dict(pair.split(" ") for pair in m.group(1).split(", "))
            assert stated == ran, (option, text)
        else:
            m = re.search(r"default (\S+?)\)", text)
            assert m, (option, text)
            assert set(ran.values()) == {m.group(1)}, (option, text)
    assert "accurate 1.15, fast 1.2" in entries["--scale-factor"]
    assert "accurate 0.45, fast 0.35" in entries["--min-score"]


def test_bench_and_evaluate_help_state_their_defaults(monkeypatch):
    bench = _help_entries(monkeypatch, "bench")
    for option in ("--frames", "--naive-frames", "--dlib-frames", "--segment-seconds"):
        assert "default" in bench[option], bench[option]
    evaluate = _help_entries(monkeypatch, "evaluate")
    assert "default identity" in evaluate["--split"]
    assert "default test" in evaluate["--part"]
    assert "default haar" in evaluate["--boxes"]
