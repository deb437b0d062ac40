"""Real-world files (tests/corpus.py) through annotate and render, checked as a user would check
them: the render as displayed (orientation, aspect, every frame and its time, sound), the
tracks (a row set per frame, distinct frame indices, times), and a named error for what is not a
video. The whole job runs once over the corpus, on Ray, with --render."""
from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction

import av
import cv2
import numpy as np
import pandas as pd
import pytest

from facetracks.jobs.bench_paths import SAMPLE
from facetracks.jobs.cli import main
from facetracks.models.inference import LandmarkPredictor
from facetracks.pipeline.annotate import annotate_video
from facetracks.pipeline.detect import HaarDetector
from facetracks.pipeline.filters import get_filter, load_overlay
from facetracks.pipeline.follow import FollowParams
from facetracks.pipeline.render import faces_by_frame, render_video
from facetracks.pipeline.video import VideoError, display_matrix, iter_frames, orientation_from_matrix, pick_video_stream

from . import corpus
from .clips import damaged_copy, pick_faces, truncated_copy

VIDEO_KINDS = ["phone", "mirrored", "odd", "anamorphic", "no_pts", "dup_pts", "two_streams", "ten_bit",
               "full_range", "limited_range", "hlg", "wmv", "flv", "avi", "gif", "trimmed", "broadcast", "ts_wrap",
               "camera_avi", "dubbed", "two_streams_unflagged", "screen_avi"]


@pytest.fixture(scope="module")
def face(data_dir):
    return pick_faces(data_dir, 1, max_w=300, max_h=170)[0].gray


@pytest.fixture(scope="module")
def cases(face, tmp_path_factory):
    return corpus.build(str(tmp_path_factory.mktemp("corpus")), face)


@pytest.fixture(scope="module")
def annotated(cases, predictor):
    det = HaarDetector()
    return {k: annotate_video(cases[k].path, k, det, predictor) for k in VIDEO_KINDS}


@pytest.fixture(scope="module")
def rendered(cases, annotated, tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus_out")
    out = {}
    for k in VIDEO_KINDS:
        dst = str(d / f"{k}.mp4")
        st = render_video(cases[k].path, dst, faces_by_frame(annotated[k].table), get_filter("sunglasses"),
                          annotated[k].stats.frames)
        out[k] = (dst, st)
    return out


def shown(path: str) -> tuple[list[np.ndarray], list[float], Fraction, bool]:
    """What a player shows: upright BGR frames (display matrix applied), their times, the
    sample aspect, whether there is sound."""
    with av.open(path) as c:
        v = pick_video_stream(c)
        frames, times = [], []
        for f in c.decode(v):
            o = orientation_from_matrix(display_matrix(f))
            frames.append(np.ascontiguousarray(o.apply(f.to_ndarray(format="bgr24"))))
            times.append(float(f.pts * v.time_base) if f.pts is not None else float("nan"))
        sar = v.sample_aspect_ratio or Fraction(1)
        return frames, times, Fraction(sar), bool(c.streams.audio)


@pytest.mark.parametrize("kind", ["cover_art", "empty_track", "unknown_codec"])
def test_files_without_a_video_to_show_are_named_errors(cases, predictor, kind):
    c = cases[kind]
    with pytest.raises(VideoError) as e:
        annotate_video(c.path, kind, HaarDetector(), predictor)
    assert c.path in str(e.value) and c.error in str(e.value)


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_tracks_have_a_row_set_per_frame_and_faces(cases, annotated, kind):
    c, r = cases[kind], annotated[kind]
    df = r.table.to_pandas()
    per_frame = df.groupby("frame_index")
    assert sorted(per_frame.groups) == list(range(c.frames))          # every frame, each index once
    assert not df.time_s.isna().any()
    assert df[df.track_id.notna()].frame_index.nunique() >= 0.75 * c.frames   # the face is found
    assert (r.info.width, r.info.height) == c.upright
    if c.pts is not None:
        got = per_frame.pts.first().tolist()
        assert got == sorted(got) and (kind not in ("dup_pts", "screen_avi") or got == c.pts)


def test_frames_without_pts_get_frame_rate_times(annotated):
    r = annotated["no_pts"]
    df = r.table.to_pandas().groupby("frame_index").first()
    assert r.info.timing == "frame_rate" and df.pts.isna().all()
    assert np.allclose(df.time_s.to_numpy(), np.arange(len(df)) / corpus.FPS)


def test_duplicate_pts_keep_distinct_frame_indices(annotated):
    df = annotated["dup_pts"].table.to_pandas().groupby("frame_index").first()
    assert df.time_s.tolist()[2:4] == [0.08, 0.08] and list(df.index) == list(range(8))


def test_the_default_stream_is_the_one_annotated(annotated):
    assert annotated["two_streams"].info.stream_index == 1
    assert annotated["two_streams_unflagged"].info.stream_index == 1      # none flagged: the larger


def test_a_lossless_trim_is_the_frames_it_shows_not_truncated(cases, annotated):
    """The edit list hides 4 of its 12 packets: 8 frames, not "truncated: 12 indexed, 8 decode"."""
    r = annotated["trimmed"]
    assert r.stats.frames == 8 and r.info.header_frames == 8
    assert r.table.to_pandas().groupby("frame_index").time_s.first().tolist() == pytest.approx(
        [i / corpus.FPS for i in range(8)])


def test_times_before_a_ts_clock_wrap_are_negative_and_in_order(annotated):
    times = annotated["ts_wrap"].table.to_pandas().groupby("frame_index").time_s.first().to_numpy()
    assert times == pytest.approx([(i - 4) / corpus.FPS for i in range(12)], abs=1e-4)


def test_gray_is_full_range_whatever_the_pixel_format(cases, face, tmp_path):
    """The bars at the bottom are black and white in every file: gray 0 and 255 for every pixel
    format, as the training images are (limited-range luma would read 16 and 235), monochrome
    video tagged limited range too."""
    grays = {k: next(iter_frames(cases[k].path)).gray.astype(int) for k in ("limited_range", "full_range", "ten_bit")}
    for bits in (8, 10, 12):
        grays[f"gray{bits}_limited"] = next(iter_frames(corpus.gray_limited(str(tmp_path), face, bits).path)
                                            ).gray.astype(int)
    for k, g in grays.items():
        bar = g[-4:-2]
        assert bar[:, :100].mean() <= 3 and bar[:, -100:].mean() >= 252, k
    assert np.abs(grays["limited_range"] - grays["full_range"]).mean() < 2.5


@pytest.mark.parametrize("kind", VIDEO_KINDS)
def test_render_keeps_what_the_input_has(cases, rendered, kind):
    c = cases[kind]
    dst, st = rendered[kind]
    src_frames, src_times, src_sar, _ = shown(c.path)
    out_frames, out_times, out_sar, out_audio = shown(dst)
    assert len(out_frames) == c.frames == st.frames
    h, w = out_frames[0].shape[:2]
    uw, uh = c.upright
    assert (w, h) == (uw + uw % 2, uh + uh % 2)            # upright as shown; odd sizes padded by one
    assert out_sar == c.sar
    assert out_audio == c.audio and (st.audio != "none") == c.audio
    with av.open(c.path) as src, av.open(dst) as out:
        origin = (src.start_time or 0) / 1e6             # the output starts at 0, as ffmpeg's does
        last = max((t for t in src_times if t == t), default=0.0) - origin      # (NaN: no PTS)
        assert out.duration / 1e6 < max(c.frames / corpus.FPS, last) + 0.5    # no empty lead-in (5 h of it)
    if kind == "no_pts":
        assert np.allclose(out_times, np.arange(c.frames) / corpus.FPS, atol=1e-3)
    else:
        assert np.all(np.diff(out_times) > 0) and np.allclose(out_times, np.array(src_times) - origin, atol=2e-3)
    # as displayed, away from the face (bottom bars), the output is the input: right way up, not mirrored
    for a, b in zip(src_frames, out_frames):
        b = b[:a.shape[0], :a.shape[1]]
        assert np.abs(a[-4:].astype(int) - b[-4:].astype(int)).mean() < 6
        assert np.abs(a[:, -40:].astype(int) - b[:, -40:].astype(int)).mean() < 6


def _tags(path: str) -> tuple[int, int, int, int]:
    with av.open(path) as c:
        cc = pick_video_stream(c).codec_context
        return cc.color_primaries, cc.color_trc, cc.colorspace, cc.color_range


def test_render_keeps_colour_tags_and_range(cases, rendered):
    assert _tags(rendered["hlg"][0])[:3] == corpus.HLG_BT2020          # HLG stays HLG, BT.2020 stays BT.2020
    assert _tags(rendered["full_range"][0])[3] == 2                    # full range stays full range
    assert _tags(rendered["limited_range"][0])[3] != 2


def test_audio_that_mp4_cannot_hold_is_transcoded(rendered):
    assert rendered["wmv"][1].audio == "transcoded wmav2 -> aac"
    assert rendered["flv"][1].audio == "transcoded adpcm_swf -> aac"
    assert rendered["avi"][1].audio == "transcoded pcm_mulaw -> aac"
    assert rendered["phone"][1].audio == "copied aac"
    # PCM whose channels have no layout (AVI): copied, the MP4 muxer took its header and failed at
    # the trailer ("unsupported channel layout"), and players play little PCM from an MP4
    assert rendered["camera_avi"][1].audio == "transcoded pcm_s16le -> aac"


def test_each_sound_track_keeps_its_language_and_the_default_stays_where_it_was(rendered):
    with av.open(rendered["dubbed"][0]) as c:
        tracks = [(a.metadata.get("language"), bool(a.disposition & av.stream.Disposition.default))
                  for a in c.streams.audio]
    assert tracks == [("eng", False), ("deu", True)]


@pytest.mark.parametrize("ext", [".mkv", ".webm", ".mov"])
def test_render_to_other_containers(cases, annotated, tmp_path, ext):
    c = cases["phone"]
    dst = str(tmp_path / f"phone{ext}")
    assert main(["render", c.path, "--tracks", _tracks(annotated["phone"], tmp_path), "--out", dst,
                 "--preset", "ultrafast"]) == 0
    frames, _, _, audio = shown(dst)
    assert len(frames) == c.frames and frames[0].shape[:2] == (320, 240) and audio


def test_render_refuses_a_container_it_cannot_write(cases, annotated, tmp_path, capsys):
    assert main(["render", cases["phone"].path, "--tracks", _tracks(annotated["phone"], tmp_path),
                 "--out", str(tmp_path / "x.avi")]) == 2
    err = capsys.readouterr().err
    assert "x.avi" in err and ".mkv" in err and ".webm" in err
    assert not os.path.exists(tmp_path / "x.avi")


def _tracks(r, d) -> str:
    from facetracks.pipeline.parquet import track_meta, write_tracks
    path = str(d / "tracks.parquet")
    write_tracks(r.table, path, track_meta(r.info.to_dict(), "phone", r.stats.frames, "m", {}))
    return path


def test_one_pass_without_mirror_keeps_faces_with_a_null_score(cases):
    p = LandmarkPredictor.load(refine=0, flip=False)
    r = annotate_video(cases["limited_range"].path, "x", HaarDetector(), p, FollowParams(min_score=0.9))
    df = r.table.to_pandas()
    faces = df[df.track_id.notna()]
    assert len(faces) == cases["limited_range"].frames and faces.score.isna().all()


def test_sixteen_bit_overlay_is_scaled_not_wrapped(tmp_path):
    img = np.zeros((20, 40, 4), np.uint16)
    img[..., 2] = 65535          # opaque red (BGRA)
    img[..., 3] = 65535
    path = str(tmp_path / "red16.png")
    cv2.imwrite(path, img)
    sprite = load_overlay(path, "eyes")
    assert sprite.rgba.dtype == np.uint8 and (sprite.rgba[0, 0] == [0, 0, 255, 255]).all()


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--detect-side", "0"), ("--min-score", "2"),
                                        ("--scale-factor", "1"), ("--detect-every", "-1"), ("--crf", "64"), ("--gpus-per-actor", "inf"),
                                        ("--preset", "warp"), ("--segment-seconds", "-5")])
def test_impossible_option_values_are_refused_by_the_parser(flag, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["annotate", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
    assert e.value.code == 2 and flag in capsys.readouterr().err


@pytest.fixture(scope="module")
def job(cases, face, tmp_path_factory):
    """The whole job once over the corpus, as a user runs it: --render, --out inside the input
    folder, long videos split into 1 s segments; one of them truncated."""
    d = os.path.dirname(cases["phone"].path)
    long = corpus.long_video(d, face)
    os.makedirs(os.path.join(d, "cut"))
    truncated_copy(long, os.path.join(d, "cut", "long_cut.mp4"), share=0.5)
    shutil.copy(cases["cover_art"].path, os.path.join(d, "song.mp4"))     # music with art, named like a video
    out = os.path.join(d, "out")
    os.makedirs(os.path.join(out, "limited_range.mp4.sunglasses.mp4"))    # a render that cannot be moved into place
    args = ["annotate", d, "--out", out, "--render", "sunglasses", "--segment-seconds", "1", "--preset", "ultrafast"]
    code = main(args)
    with open(os.path.join(out, "_summary.json")) as f:
        return d, out, args, code, json.load(f)


def test_job_over_the_corpus_reports_each_file(job):
    d, out, args, code, summary = job
    v = summary["videos"]
    assert code == 1                                            # something failed, and said so
    assert "truncated" in v["cut/long_cut.mp4"]["error"]
    assert "only cover art" in v["song.mp4"]["error"]
    assert "no decoder for its video codec" in v["unknown_codec.avi"]["error"]    # one file's, not the job's
    long = v["long.mp4"]
    assert long["status"] == "ok" and long["frames"] == 100 and long["segments"] == 1   # rendering: whole
    for name in ("phone_rotated.mp4", "old.wmv", "raw.h264", "odd_321x181.mkv", "clip.gif"):
        assert v[name]["status"] == "ok" and v[name]["render"]["status"] == "ok", name
    assert v["raw.h264"]["timing"] == "frame_rate"
    assert v["old.avi"]["render"]["audio"] == "transcoded pcm_mulaw -> aac"
    # the render failed, the tracks did not
    assert v["limited_range.mp4"]["status"] == "ok" and v["limited_range.mp4"]["render"]["status"] == "failed"
    assert os.path.exists(os.path.join(out, "limited_range.mp4.parquet"))


def test_rerun_redoes_only_the_failed_render_and_never_reads_outputs(job):
    d, out, args, code, first = job
    os.rmdir(os.path.join(out, "limited_range.mp4.sunglasses.mp4"))
    stale, fresh = (os.path.join(out, f"x.mp4.parquet.{h}.tmp") for h in ("0badf00d", "5eedbeef"))
    for p in (stale, fresh):
        with open(p, "wb") as f:
            f.write(b"half a file")
    os.utime(stale, (1e9, 1e9))                                  # left by a run killed long ago
    phone_render = os.path.join(out, "phone_rotated.mp4.sunglasses.mp4")
    before = os.stat(phone_render).st_mtime_ns
    assert main(args) == 1                                       # the truncated and cover-art files still fail
    assert not os.path.exists(stale) and os.path.exists(fresh)   # a running job's temp file is not ours to take
    with open(os.path.join(out, "_summary.json")) as f:
        summary = json.load(f)
    v = summary["videos"]
    assert summary["stale_temp_files_removed"] == 1
    # skipped videos keep what the run that wrote them said, and which run that was
    assert v["old.wmv"]["frames"] == first["videos"]["old.wmv"]["frames"]
    assert v["old.wmv"]["written_by"] == first["run"] != summary["run"]
    assert not any(".sunglasses." in name for name in v)        # outputs are never inputs
    assert v["limited_range.mp4"]["status"] == "skipped" and v["limited_range.mp4"]["render"]["status"] == "ok"
    assert v["phone_rotated.mp4"]["status"] == "skipped" and os.stat(phone_render).st_mtime_ns == before
    # a render setting changes the render key: renders are redone, tracks stay
    assert main(args[:-2] + ["--preset", "superfast", "--crf", "30"]) == 1
    with open(os.path.join(out, "_summary.json")) as f:
        v = json.load(f)["videos"]
    assert v["phone_rotated.mp4"]["status"] == "skipped" and v["phone_rotated.mp4"]["render"]["status"] == "ok"
    assert os.stat(phone_render).st_mtime_ns != before


def test_segmented_videos_keep_every_frame_and_are_checked_whole(face, tmp_path):
    """Without --render long videos are split; the stitched tracks hold each decoded frame once,
    and a copy cut short is reported although no single segment can tell."""
    d = tmp_path / "in"
    d.mkdir()
    long = corpus.long_video(str(d), face, seconds=3)
    truncated_copy(long, str(d / "cut.mp4"), share=0.5)
    # an MPEG-TS whose clock wraps 2 s in: its second segment's times are negative (they were read
    # from 0, and lost), and seeking in it lands a keyframe late (the overlap was lost: one id a segment)
    corpus.long_video(str(d), face, seconds=3, name="wrap.ts", start_s=corpus.PTS_WRAP_S - 2.0)
    out = tmp_path / "out"
    assert main(["annotate", str(d), "--out", str(out), "--segment-seconds", "1"]) == 1
    with open(out / "_summary.json") as f:
        v = json.load(f)["videos"]
    for name in ("long.mp4", "wrap.ts"):
        df = pd.read_parquet(out / f"{name}.parquet")
        frames = df.groupby("frame_index").time_s.first()
        assert list(frames.index) == list(range(75)) and frames.is_monotonic_increasing, name
        assert df.track_id.dropna().unique().tolist() == [0], name        # stitched: one face, one id
        assert v[name]["segments"] == 3, name
    assert frames.iloc[0] == pytest.approx(-2.0)
    assert "truncated" in v["cut.mp4"]["error"] and not (out / "cut.mp4.parquet").exists()


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_a_truncated_file_is_named_truncated_whatever_the_decoders_threads(tmp_path, threads):
    """FFmpeg on its own thread count ends a file cut short at the cut; on 1 or 2 threads (each
    stream of a multi-stream actor) it fails there with invalid data. Either way the frames before
    the cut decode, and the file is reported as truncated, not as a decoding failure."""
    cut = str(tmp_path / "cut.mp4")
    truncated_copy(SAMPLE, cut)
    seen = []
    with pytest.raises(VideoError, match="truncated or corrupt: the container indexes 472 frames"):
        for f in iter_frames(cut, threads=threads):
            seen.append(f.index)
    assert len(seen) > 100 and seen == list(range(len(seen)))
    segment = [f.index for f in iter_frames(cut, start_s=1.0, end_s=30.0, threads=threads)]   # a segment ends at the cut
    assert 50 < len(segment) < len(seen)


@pytest.mark.parametrize("ext", ["nut", "ogv"])
def test_a_duration_tag_outside_matroska_is_not_read(face, tmp_path, ext):
    """NUT and Ogg keep whatever DURATION tag they are given, and ffmpeg copies an MKV input's into
    them: `-t 2` of a 10-minute MKV said 10 minutes, and the 2 s file failed as truncated."""
    path = str(tmp_path / f"short.{ext}")
    frames = [corpus.canvas(face, (320, 240)) for _ in range(10)]
    with av.open(path, "w") as c:
        s = c.add_stream("libvpx" if ext == "ogv" else "mpeg4", rate=corpus.FPS)      # VP8 in Ogg
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.metadata["DURATION"] = "00:10:00.000000000"
        corpus._mux_all(c, s, [av.VideoFrame.from_ndarray(f, format="bgr24") for f in frames])
    with av.open(path) as c:
        assert c.streams.video[0].metadata.get("DURATION", "").startswith("00:10:00")   # kept, stale
    assert len(list(iter_frames(path))) == 10


@pytest.mark.parametrize("ext", ["mkv", "webm"])
def test_a_matroska_file_cut_short_is_truncated_whole_and_in_its_last_segment(face, tmp_path, ext):
    """Matroska states no frame count, only each track's DURATION: a clip cut in half read as a
    whole shorter one, `ok`."""
    whole = str(tmp_path / f"whole.{ext}")
    codec = {"mkv": "libx264", "webm": "libvpx-vp9"}[ext]
    corpus.write(whole, [corpus.canvas(face, (320, 240), at=(8 + i % 20, 4)) for i in range(100)], codec=codec,
                 options={"g": "10"} if ext == "mkv" else None, audio=("libopus" if ext == "webm" else "aac", 48000))
    assert len(list(iter_frames(whole))) == 100 and len(list(iter_frames(whole, start_s=1.0))) == 75
    cut = str(tmp_path / f"cut.{ext}")
    truncated_copy(whole, cut, share=0.5)
    with pytest.raises(VideoError, match=r"truncated or corrupt: the container says the video lasts 4.00 s"):
        list(iter_frames(cut))
    with pytest.raises(VideoError, match="truncated or corrupt"):
        list(iter_frames(cut, start_s=1.0))
    assert len(list(iter_frames(cut, start_s=0.4, end_s=1.0))) == 15      # a segment before the cut is whole


def test_a_sound_track_no_decoder_reads_is_left_out_of_the_render_and_said(face, predictor, tmp_path):
    """A codec id FFmpeg does not know (AC-4 or MPEG-H in MP4, say): the render failed on it."""
    pcm = str(tmp_path / "pcm.mkv")
    corpus.write(pcm, corpus._frames(face, (320, 240)), audio=("pcm_s16le", 16000))
    src = str(tmp_path / "unknown_audio.mkv")
    with open(pcm, "rb") as f, open(src, "wb") as g:
        g.write(f.read().replace(b"A_PCM/INT/LIT", b"A_QQQ/INT/LIT"))
    r = annotate_video(src, "unknown_audio.mkv", HaarDetector(), predictor)
    dst = str(tmp_path / "out.mp4")
    st = render_video(src, dst, faces_by_frame(r.table), get_filter("sunglasses"), r.stats.frames)
    frames, _, _, sound = shown(dst)
    assert (len(frames), st.frames, sound) == (12, 12, False)
    assert st.audio == "1 left out (no decoder for its codec)"


def test_an_avi_cut_short_is_truncated_and_one_with_empty_chunks_is_not(face, tmp_path):
    """AVI counts a screen recorder's empty chunks (frames that did not change) in its header, and
    keeps its index at the end: the index tells a variable frame rate from a file cut short."""
    whole = str(tmp_path / "whole.avi")
    corpus.write(whole, [corpus.canvas(face, (320, 240), at=(8 + i % 20, 4)) for i in range(60)], fmt="avi", codec="mpeg4")
    cut = str(tmp_path / "cut.avi")
    truncated_copy(whole, cut, share=0.5)
    with pytest.raises(VideoError, match="truncated or corrupt: the container indexes 60 frames"):
        list(iter_frames(cut))
    screen = corpus.screen_avi(str(tmp_path), face)
    assert [f.pts for f in iter_frames(screen.path)] == screen.pts
    # past 1 GB an AVI goes on in RIFF 'AVIX' chunks: one cut short is not whole, its first chunk whole or not
    from facetracks.pipeline.video import _riff_fits
    big = tmp_path / "big.avi"
    big.write_bytes(open(whole, "rb").read() + b"RIFF" + (10 ** 6).to_bytes(4, "little") + b"AVIX" + bytes(100))
    assert _riff_fits(whole) and not _riff_fits(str(big)) and not _riff_fits(cut)


def test_a_stream_that_changes_size_is_read_and_rendered_at_its_first_size(face, predictor, tmp_path):
    """A stream that grows from 320x240 to 480x360 midway: every frame is read at the stream's size,
    so the face keeps one track and one coordinate frame across the change (it moves 1 px a frame
    here; read at its own size the second half would jump 1.5x away), and the render, which used
    to fail on the first larger frame, shows every frame at that size with the overlay on the face."""
    c = corpus.size_change(str(tmp_path), face)
    r = annotate_video(c.path, "x", HaarDetector(), predictor)
    df = r.table.to_pandas()
    assert (r.info.width, r.info.height) == c.upright
    assert sorted(df.frame_index.unique()) == list(range(c.frames))
    faces = df[df.track_id.notna()].set_index("frame_index")
    assert faces.index.is_unique and set(range(c.frames)) <= set(faces.index)
    assert faces.track_id.nunique() == 1
    at = c.notes["grows_at"]
    nose = faces.x_30.to_numpy()
    assert abs(nose[at] - nose[at - 1] - 1) < 3                # across the change, as between any two frames
    dst = str(tmp_path / "out.mp4")
    st = render_video(c.path, dst, faces_by_frame(r.table), get_filter("sunglasses"), r.stats.frames)
    out, _, _, _ = shown(dst)
    assert st.frames == len(out) == c.frames and {f.shape[:2] for f in out} == {(240, 320)}
    src, _, _, _ = shown(c.path)
    for k in (at - 1, at + 4):          # the lenses over the eyes in both halves; the bars untouched
        a = cv2.resize(src[k], (320, 240), interpolation=cv2.INTER_AREA).astype(int)
        b = out[k].astype(int)
        eye = faces.loc[k, [f"{ax}_{i}" for ax in "xy" for i in range(36, 42)]].to_numpy(float).reshape(2, 6).mean(1)
        x, y = np.round(eye).astype(int)
        assert np.abs(a[y - 2:y + 3, x - 2:x + 3] - b[y - 2:y + 3, x - 2:x + 3]).mean() > 20
        assert np.abs(a[-4:] - b[-4:]).mean() < 6


def test_a_damaged_packet_costs_its_frames_not_the_rest(tmp_path):
    """3 kB of noise midway through the sample: the decoder rejects the packets there, which are
    skipped, as players skip them; every other frame decodes (it used to stop at the damage and
    fail the video as truncated, 226 of 472 frames), the same frames whatever the decoder's threads."""
    bad = str(tmp_path / "bad.mp4")
    damaged_copy(SAMPLE, bad)
    runs = {}
    for threads in (0, 1, 2):
        damaged: list = []
        runs[threads] = [f.pts for f in iter_frames(bad, threads=threads, damaged=damaged)]
        assert damaged and all(8.0 < t < 11.0 for t in damaged)          # where the noise is
    assert runs[1] == runs[2] == runs[0] and runs[0] == sorted(runs[0])
    assert 462 <= len(runs[0]) < 472


def test_the_job_annotates_and_renders_a_damaged_video_and_says_so(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    damaged_copy(SAMPLE, str(src / "bad.mp4"))
    assert main(["annotate", str(src), "--out", str(out), "--profile", "fast", "--render", "sunglasses",
                 "--preset", "ultrafast", "--progress", "never"]) == 0
    e = json.loads((out / "_summary.json").read_text())["videos"]["bad.mp4"]
    assert e["status"] == "ok" and 462 <= e["frames"] < 472
    assert e["damaged"]["packets"] >= 1 and all(8.0 < t < 11.0 for t in e["damaged"]["at_s"])
    assert e["render"]["status"] == "ok" and e["render"]["frames"] == e["frames"]   # the frames the tracks describe
    df = pd.read_parquet(out / "bad.mp4.parquet")
    assert sorted(df.frame_index.unique()) == list(range(e["frames"]))
    assert "damaged: bad.mp4: the decoder rejected" in capsys.readouterr().err


def test_segments_never_seek_before_the_first_packet(face, tmp_path):
    """Half-second segments with the one-second overlap: the second segment would decode from
    before 0, and AVI refuses that seek (EPERM: "decoding failed at frame 0"); it decodes from the
    first keyframe. Every frame is owned by exactly one segment."""
    from facetracks.pipeline.segments import segments_of
    path = str(tmp_path / "cam.avi")
    corpus.write(path, [corpus.canvas(face, (320, 240), at=(8 + i % 20, 4)) for i in range(50)], fmt="avi",
                 codec="mjpeg", pix_fmt="yuvj420p")
    segs = segments_of(path, 0.5, 1.0)
    assert len(segs) > 3 and min(s.decode_from_s for s in segs[1:]) == 0.0
    owned = []
    for s in segs:
        times = [f.time_s for f in iter_frames(path, start_s=s.decode_from_s, end_s=s.end_s)]
        owned += [t for t in times if s.start_s is None or t >= s.start_s - 1e-6]
    assert owned == pytest.approx([i / corpus.FPS for i in range(50)])


def test_an_edit_list_that_ends_early_is_the_frames_it_shows(face, tmp_path):
    """An editor's trim of the end: the edit list shows the first 9 of 24 samples, and the whole
    GOPs after it are left out of the index while the stream's count keeps them (it read as
    truncated: 24 indexed, 9 decode)."""
    import struct
    path = str(tmp_path / "tail.mp4")
    corpus.write(path, corpus._frames(face, (320, 240), 24), options={"g": "4"},
                 container_options={"use_editlist": "1"})
    data = bytearray(open(path, "rb").read())
    at = data.find(b"elst") + 12                 # version 0: 32-bit segment duration, first entry
    (duration,) = struct.unpack(">I", data[at:at + 4])
    data[at:at + 4] = struct.pack(">I", duration * 9 // 24)
    open(path, "wb").write(bytes(data))
    assert [f.index for f in iter_frames(path)] == list(range(9))
