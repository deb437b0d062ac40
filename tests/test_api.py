"""The Python API, used as a user would: from a folder holding its own models.py, pipeline.py, jobs.py."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq

from facetracks.training.metrics import nme

from .clips import moving_clip, pick_faces

SHADOWS = ("models", "pipeline", "jobs", "training")


def test_import_facetracks_from_a_folder_with_its_own_models_pipeline_jobs(tmp_path, data_dir):
    clip = moving_clip(str(tmp_path / "clip.mp4"), pick_faces(data_dir, 2), frames_each=4)
    work = tmp_path / "project"
    work.mkdir()
    for name in SHADOWS:   # a user's own modules: importing any of them is the bug
        (work / f"{name}.py").write_text(f"raise ImportError('the user\\'s {name}.py was imported')\n")
    script = textwrap.dedent(f"""
        import json, facetracks
        tracks = facetracks.annotate_video({clip.path!r}, "fast")
        tracks.to_parquet("tracks.parquet")
        st = facetracks.render_video({clip.path!r}, tracks, "clip.sunglasses.mp4")
        back = facetracks.read_tracks("tracks.parquet")
        print(json.dumps({{"rows": len(back), "frames": st.frames, "with_faces": st.frames_with_faces,
                          "api": sorted(dir(facetracks))}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"annotate_video", "load_profile", "render_video", "read_tracks"} <= set(out["api"])
    assert out["frames"] == len(clip.truth) == out["rows"]          # one row per frame: one face each
    assert out["with_faces"] == len(clip.truth)
    df = pq.read_table(work / "tracks.parquet").to_pandas().sort_values("frame_index")
    assert df["frame_index"].tolist() == list(range(len(clip.truth)))
    pts = np.stack([df[[f"x_{i}", f"y_{i}"]].to_numpy(np.float32) for i in range(68)], axis=1)
    errs = [nme(p, t[0]) for p, t in zip(pts, clip.truth)]
    assert max(errs) < 0.10, errs


def test_the_installed_packages_are_under_one_name():
    import facetracks.jobs.cli
    import facetracks.models.registry
    for top in SHADOWS:
        assert top not in sys.modules, f"a top-level {top!r} module was imported"
    assert facetracks.models.registry.default_weights().endswith(".pt")


def test_a_photo_is_one_frame_and_renders_as_a_photo(tmp_path, data_dir):
    import cv2

    import facetracks
    from .conftest import face_canvas
    face = pick_faces(data_dir, 1)[0]
    img, truth = face_canvas(face.gray, face.points, at=(10, 6))
    cv2.imwrite(str(tmp_path / "still.png"), img)
    tracks = facetracks.annotate_video(tmp_path / "still.png")
    assert tracks["frame_index"].tolist() == [0] and tracks["time_s"].tolist() == [0.0]
    pts = np.stack([tracks[[f"x_{i}", f"y_{i}"]].to_numpy(np.float32)[0] for i in range(68)])
    assert nme(pts, truth) < 0.10
    st = facetracks.render_video(tmp_path / "still.png", tracks, tmp_path / "still.sunglasses.jpg")
    out = cv2.imread(str(tmp_path / "still.sunglasses.jpg"))
    assert (st.frames, st.frames_with_faces) == (1, 1) and out.shape == img.shape
    eyes = pts[36:48].mean(axis=0).astype(int)      # sunglasses drawn over the eyes, not elsewhere
    assert np.abs(out[eyes[1], eyes[0]].astype(int) - img[eyes[1], eyes[0]]).max() > 40
    assert np.abs(out[-3:, -3:].astype(int) - img[-3:, -3:]).max() < 8


def test_render_from_a_dataframe_checks_its_source_and_draws_every_frame(tmp_path, data_dir):
    """A DataFrame from annotate_video or read_tracks carries its source and frame count
    (`df.attrs`): drawn on another video it is refused, as a track file's path is (it drew off the
    faces); filtered by score it still draws every frame (it was refused: "20 frames decode, the
    tracks describe 10"). A DataFrame made by hand is drawn as it is."""
    import pandas as pd
    import pytest

    import facetracks
    from facetracks.pipeline.render import TracksMismatch
    faces = pick_faces(data_dir, 2)
    one, other = str(tmp_path / "one.mp4"), str(tmp_path / "other.mp4")
    moving_clip(one, faces[:1], frames_each=20)
    moving_clip(other, faces[1:], frames_each=20)
    profile = facetracks.load_profile("fast")
    tracks = facetracks.annotate_video(one, profile)
    assert tracks.attrs["facetracks"]["frame_count"] == 20
    with pytest.raises(TracksMismatch, match=f"made from .*one.mp4 .*not from {other}"):
        facetracks.render_video(other, tracks, tmp_path / "wrong.mp4")
    best = tracks[tracks.score > tracks.score.median()]
    assert best.frame_index.nunique() < 20
    st = facetracks.render_video(one, best, tmp_path / "best.mp4", "landmarks")
    assert (st.frames, st.frames_with_faces) == (20, best.frame_index.nunique())
    by_hand = pd.DataFrame(best.to_dict("list"))           # no attrs: drawn as given
    assert facetracks.render_video(other, by_hand, tmp_path / "hand.mp4").frames == 20


def test_an_overlay_never_replaces_the_filter_asked_for(tmp_path, data_dir, capsys):
    """blur (or any filter) with an overlay drew the overlay alone: the faces blur was to hide
    stayed sharp. Refused, in the API and the CLI; the overlay alone is the overlay filter."""
    import cv2
    import pytest

    import facetracks
    from facetracks.jobs.cli import main
    clip = str(tmp_path / "one.mp4")
    moving_clip(clip, pick_faces(data_dir, 1), frames_each=3)
    png = np.zeros((8, 8, 4), np.uint8)
    png[..., 3] = 255
    cv2.imwrite(str(tmp_path / "mark.png"), png)
    tracks = facetracks.annotate_video(clip, "fast")
    with pytest.raises(ValueError, match="the blur filter would not be drawn"):
        facetracks.render_video(clip, tracks, tmp_path / "x.mp4", "blur", overlay=str(tmp_path / "mark.png"))
    assert facetracks.render_video(clip, tracks, tmp_path / "o.mp4", overlay=str(tmp_path / "mark.png")).frames == 3
    # the CLI: the same refusal, before anything is read
    assert main(["render", clip, "--tracks", str(tmp_path / "none.parquet"), "--filter", "pixelate",
                 "--overlay", str(tmp_path / "mark.png"), "--out", str(tmp_path / "p.mp4")]) == 2
    assert "the pixelate filter would not be drawn" in capsys.readouterr().err
    assert not (tmp_path / "p.mp4").exists()


def test_a_photo_rendered_to_a_video_name_is_one_clear_error(tmp_path, data_dir):
    import cv2
    import pytest

    import facetracks
    from .conftest import face_canvas
    face = pick_faces(data_dir, 1)[0]
    cv2.imwrite(str(tmp_path / "still.png"), face_canvas(face.gray, face.points, at=(10, 6))[0])
    tracks = facetracks.annotate_video(tmp_path / "still.png", "fast")
    with pytest.raises(ValueError, match="a photo renders to an image"):
        facetracks.render_video(tmp_path / "still.png", tracks, tmp_path / "still.mp4")


def test_encoder_options_are_checked_as_the_cli_checks_them(tmp_path, data_dir):
    """preset="medum" failed at frame 0 with x264's error, crf="20" was a TypeError and crf=20.7
    was taken: each is a ValueError naming what it takes, before anything is read, as the CLI's
    parser refuses them."""
    import pytest

    import facetracks
    clip = str(tmp_path / "one.mp4")
    moving_clip(clip, pick_faces(data_dir, 1), frames_each=3)
    tracks = facetracks.annotate_video(clip, "fast")
    for kw, msg in [({"preset": "medum"}, "preset 'medum': x264 takes ultrafast, "),
                    ({"crf": "20"}, "crf '20': an integer"), ({"crf": 20.7}, "crf 20.7: an integer"),
                    ({"crf": 60}, "crf 60: libx264 takes 0..51")]:
        with pytest.raises(ValueError, match=msg):
            facetracks.render_video(clip, tracks, tmp_path / "x.mp4", "blur", **kw)
        assert not (tmp_path / "x.mp4").exists()
    st = facetracks.render_video(clip, tracks, tmp_path / "x.webm", "blur", crf=np.int64(40), preset="fast")
    assert st.frames == 3          # VP9's scale goes to 63; a numpy integer is an integer


def test_one_loaded_profile_serves_threads_one_video_at_a_time(tmp_path, data_dir):
    """Threads sharing one loaded profile (as the README's "load once" invites) failed inside
    OpenCV's cascade or moved points by up to 1.4 px without a word; they take turns now, and
    each gets the rows a lone call gets."""
    from concurrent.futures import ThreadPoolExecutor

    import facetracks
    from .compare import assert_tracks_match
    clip = str(tmp_path / "clip.mp4")
    moving_clip(clip, pick_faces(data_dir, 2), frames_each=12)
    profile = facetracks.load_profile("fast")
    alone = facetracks.annotate_video(clip, profile)
    with ThreadPoolExecutor(4) as pool:
        shared = list(pool.map(lambda _: facetracks.annotate_video(clip, profile), range(4)))
    for df in shared:
        assert_tracks_match(alone, df)


def test_api_arguments_are_read_as_the_cli_reads_them(tmp_path, data_dir):
    """`smooth` takes the CLI's text (it was an AttributeError); a device beside a loaded profile is
    refused (it was ignored); a folder is not one track file (pyarrow read every file in it as one
    table, and a render drew every video's faces on one); rows of several videos are refused."""
    import pandas as pd
    import pytest

    import facetracks
    faces = pick_faces(data_dir, 2)
    (tmp_path / "in").mkdir()
    for k in range(2):
        moving_clip(str(tmp_path / "in" / f"v{k}.mp4"), faces[k:k + 1], frames_each=6)
    clip = str(tmp_path / "in" / "v0.mp4")
    profile = facetracks.load_profile("fast")
    raw = facetracks.annotate_video(clip, profile, smooth="none")
    assert raw.equals(facetracks.annotate_video(clip, profile, smooth=False))
    with pytest.raises(ValueError, match="unknown smoothing filter 'local_poly'"):
        facetracks.annotate_video(clip, profile, smooth="local_poly")
    with pytest.raises(ValueError, match="device='cuda' with a loaded profile"):
        facetracks.annotate_video(clip, profile, device="cuda")
    from facetracks.jobs.cli import main
    assert main(["annotate", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--profile", "fast"]) == 0
    with pytest.raises(ValueError, match="is a folder: read_tracks reads one track file"):
        facetracks.read_tracks(tmp_path / "out")
    both = pd.concat([facetracks.read_tracks(tmp_path / "out" / f"v{k}.mp4.parquet") for k in range(2)])
    both.attrs = facetracks.read_tracks(tmp_path / "out" / "v0.mp4.parquet").attrs
    with pytest.raises(ValueError, match="hold the rows of 2 videos"):
        facetracks.render_video(clip, both, tmp_path / "x.mp4")
