"""Rendering on real and PyAV-made videos: timing, audio, pixels, rotation, bad input."""
import os

import av
import cv2
import numpy as np
import pytest

from facetracks.jobs.cli import main
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.detect import HaarDetector
from facetracks.pipeline.filters import face_mask, get_filter
from facetracks.pipeline.parquet import track_meta, write_tracks
from facetracks.pipeline.render import TracksMismatch, faces_by_frame, load_tracks_for, render_video

from .clips import moving_clip, pick_faces, rotated_clip
from .conftest import write_video


def annotate_to(video, out, predictor):
    r = annotate_video(video, os.path.basename(video), HaarDetector(), predictor)
    write_tracks(r.table, out, track_meta(r.info.to_dict(), os.path.basename(video), r.stats.frames, "m", {}))
    return r


def decoded(path):
    with av.open(path) as c:
        v = c.streams.video[0]
        frames = [(float(f.pts * v.time_base), f.to_ndarray(format="bgr24"), f.rotation) for f in c.decode(v)]
    return frames


def audio_packets(path):
    with av.open(path) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


@pytest.fixture(scope="module")
def made(data_dir, tmp_path_factory, predictor):
    d = tmp_path_factory.mktemp("render")
    faces = pick_faces(data_dir, 2)
    clip = moving_clip(str(d / "talk.mp4"), faces[:2], frames_each=6, audio_seconds=1.0)
    r = annotate_to(clip.path, str(d / "talk.parquet"), predictor)
    return d, clip, r


@pytest.mark.parametrize("name", ["sunglasses", "moustache", "party_hat", "landmarks"])
def test_overlay_keeps_timing_audio_and_changes_only_the_face(made, name):
    d, clip, r = made
    out = str(d / f"talk.{name}.mp4")
    assert main(["render", clip.path, "--tracks", str(d / "talk.parquet"), "--filter", name, "--out", out,
                 "--crf", "10"]) == 0
    src, dst = decoded(clip.path), decoded(out)
    assert [t for t, _, _ in dst] == [t for t, _, _ in src]
    assert audio_packets(out) == audio_packets(clip.path) != []
    faces = faces_by_frame(r.table)
    for i, ((_, a, _), (_, b, _)) in enumerate(zip(src, dst)):
        diff = np.abs(a.astype(int) - b.astype(int)).max(axis=2)
        pts = faces[i][0]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        size = hi - lo
        region = np.zeros(diff.shape, bool)   # generous: hats sit above the brows
        y0, y1 = int(max(0, lo[1] - 1.6 * size[1])), int(hi[1] + 0.2 * size[1])
        x0, x1 = int(max(0, lo[0] - 0.3 * size[0])), int(hi[0] + 0.3 * size[0])
        region[y0:y1, x0:x1] = True
        assert (diff[region] > 40).sum() > 50          # the filter is there
        assert np.percentile(diff[~region], 99) <= 12   # the rest is the input, up to encoding noise


def test_blur_leaves_no_face_unchanged(made):
    d, clip, r = made
    out = str(d / "talk.blur.mp4")
    assert main(["render", clip.path, "--tracks", str(d / "talk.parquet"), "--filter", "blur", "--out", out]) == 0
    faces = faces_by_frame(r.table)
    for i, ((_, a, _), (_, b, _)) in enumerate(zip(decoded(clip.path), decoded(out))):
        mask = face_mask(a.shape, faces[i][0]) > 0
        change = np.abs(a.astype(int) - b.astype(int)).mean(axis=2)[mask]
        assert change.mean() > 8 and (change > 3).mean() > 0.6


def test_real_clip_with_sound(videos_dir, tmp_path, predictor):
    video = os.path.join(videos_dir, "pyfeat_single_face.mp4")
    annotate_to(video, str(tmp_path / "t.parquet"), predictor)
    out = str(tmp_path / "out.mp4")
    assert main(["render", video, "--tracks", str(tmp_path / "t.parquet"), "--filter", "pixelate", "--out", out]) == 0
    assert [t for t, _, _ in decoded(out)] == [t for t, _, _ in decoded(video)]
    assert audio_packets(out) == audio_packets(video) != []


def test_rotated_input_keeps_its_display_matrix(data_dir, tmp_path, predictor):
    face = pick_faces(data_dir, 1)[0]
    clip = rotated_clip(str(tmp_path / "rot.mp4"), face)
    annotate_to(clip.path, str(tmp_path / "rot.parquet"), predictor)
    out = str(tmp_path / "rot.out.mp4")
    assert main(["render", clip.path, "--tracks", str(tmp_path / "rot.parquet"), "--filter", "sunglasses",
                 "--out", out]) == 0
    src, dst = decoded(clip.path), decoded(out)
    assert all(rot == 90 for _, _, rot in dst)
    assert dst[0][1].shape == src[0][1].shape == (320, 240, 3)      # stored sideways, like the input


def test_user_overlay_png_with_alpha(made, tmp_path):
    d, clip, _ = made
    png = np.zeros((40, 80, 4), np.uint8)
    cv2.circle(png, (40, 20), 15, (0, 0, 255, 255), -1)
    cv2.imwrite(str(tmp_path / "dot.png"), png)
    out = str(tmp_path / "o.mp4")
    assert main(["render", clip.path, "--tracks", str(d / "talk.parquet"), "--overlay", str(tmp_path / "dot.png"),
                 "--anchor", "nose", "--out", out]) == 0
    assert len(decoded(out)) == len(decoded(clip.path))


def test_bad_inputs_fail_clearly_and_write_nothing(made, tmp_path, capsys):
    d, clip, _ = made
    other = str(tmp_path / "other.mp4")
    write_video(other, [np.zeros((64, 64, 3), np.uint8)] * 3)
    out = tmp_path / "x.mp4"
    rgb = tmp_path / "rgb.png"
    cv2.imwrite(str(rgb), np.zeros((10, 10, 3), np.uint8))
    (tmp_path / "a_folder.mp4").mkdir()
    (tmp_path / "a_file").write_text("")
    tracks = ["--tracks", str(d / "talk.parquet")]
    cases = [      # exit 2: refused before anything is read; 1: found wrong on reading
        ([other, *tracks], "not from", 1, out),
        ([clip.path, "--tracks", str(tmp_path / "missing.parquet")], "no such tracks file", 1, out),
        ([clip.path, *tracks, "--filter", "bunny_ears"], "unknown filter", 2, out),
        ([clip.path, *tracks, "--filter", "overlay"], "the overlay filter needs --overlay PNG", 2, out),
        ([clip.path, *tracks, "--overlay", str(rgb)], "alpha", 2, out),
        ([clip.path, *tracks, "--overlay", str(tmp_path / "nope.png")], "no such overlay", 2, out),
        ([clip.path, *tracks, "--crf", "60"], "crf 60: libx264 takes 0..51", 2, out),
        # output paths that cannot be written: a traceback after the whole render, or the input blamed
        ([clip.path, *tracks], "a_folder.mp4 is a folder", 2, tmp_path / "a_folder.mp4"),
        ([clip.path, *tracks], f"cannot write {tmp_path / 'a_file' / 'x.mp4'} (", 2, tmp_path / "a_file" / "x.mp4"),
    ]
    for args, msg, code, dest in cases:
        assert main(["render", *args, "--out", str(dest)]) == code, args
        assert msg in capsys.readouterr().err
        assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    with pytest.raises(TracksMismatch, match="tracks describe"):
        faces, _ = load_tracks_for(clip.path, str(d / "talk.parquet"))
        render_video(clip.path, str(out), faces, get_filter("landmarks"), expected_frames=999)
    assert not out.exists()


def test_the_input_itself_is_never_the_output(made, tmp_path, capsys):
    """`--out` naming the input (the same path, another spelling of it, a symbolic or a hard link)
    overwrote the source video with its render: refused before anything is read, by the CLI (exit
    2) and the API (ValueError), the source untouched."""
    import facetracks
    d, clip, _ = made
    src = tmp_path / "mine.mp4"
    src.write_bytes(open(clip.path, "rb").read())        # same size: the tracks take it for theirs
    before = src.read_bytes()
    os.symlink(src, tmp_path / "link.mp4")
    os.link(src, tmp_path / "hard.mp4")
    (tmp_path / "sub").mkdir()
    for dest in [src, tmp_path / "sub" / ".." / "mine.mp4", tmp_path / "link.mp4", tmp_path / "hard.mp4",
                 f"file://{src}"]:
        assert main(["render", str(src), "--tracks", str(d / "talk.parquet"), "--filter", "blur",
                     "--out", str(dest)]) == 2, dest
        err = capsys.readouterr().err
        assert "is the input itself" in err and err.count("\n") == 1, err
        with pytest.raises(ValueError, match="is the input itself"):
            facetracks.render_video(src, d / "talk.parquet", dest, "blur")
    assert src.read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_file_uris_are_local_paths(made, tmp_path, monkeypatch):
    """`--out file:///…` wrote into a folder named `file:` under the working directory, and
    `--tracks file://…` was "no such tracks file": both are the local paths they name, in the CLI
    and the API."""
    import facetracks
    d, clip, _ = made
    monkeypatch.chdir(tmp_path)
    tracks = f"file://{d / 'talk.parquet'}"
    out = tmp_path / "x" / "y.mp4"
    assert main(["render", clip.path, "--tracks", tracks, "--filter", "landmarks", "--out", f"file://{out}",
                 "--preset", "ultrafast"]) == 0
    assert len(decoded(str(out))) == len(decoded(clip.path))
    api_out = tmp_path / "x" / "api.mp4"
    assert facetracks.render_video(clip.path, tracks, f"file://{api_out}", "landmarks", preset="ultrafast").frames \
        == len(decoded(clip.path))
    assert api_out.exists() and os.listdir(tmp_path) == ["x"]          # no ./file:/…


def test_a_render_says_it_is_alive_after_every_frame(made, tmp_path):
    """`alive` is what keeps a long render from looking stuck to the job's watchdog
    (`annotate --stall-seconds`): it must be heard once per frame written."""
    d, clip, _ = made
    beats = []
    faces, _ = load_tracks_for(clip.path, str(d / "talk.parquet"))
    st = render_video(clip.path, str(tmp_path / "alive.mp4"), faces, get_filter("landmarks"),
                      alive=lambda: beats.append(1))
    assert st.frames > 0 and len(beats) == st.frames
