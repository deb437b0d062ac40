"""Photos as one-frame inputs: EXIF orientation, the five formats, a folder mixing videos and
photos through the real `facetracks annotate` (Ray in-process), renders, reruns, the frames bar."""
import json
import os
import re
import shutil
import struct
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from facetracks.jobs.cli import main
from facetracks.jobs.inputs import VideoItem, expand_inputs
from facetracks.jobs.photos import batches
from facetracks.pipeline.photo import PhotoError, annotate_photo, read_photo
from facetracks.pipeline.profiles import load_profile
from facetracks.pipeline.schema import POINT_COLUMNS, SCHEMA

from .clips import moving_clip, pick_faces
from .conftest import face_canvas

FORMATS = {".jpg": b"\xff\xd8", ".png": b"\x89PNG", ".webp": b"RIFF", ".bmp": b"BM", ".tiff": (b"II*\x00", b"MM\x00*")}


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an EXIF APP1 segment after its SOI holding one tag, Orientation (0x0112),
    as a camera writes it (big-endian TIFF header, one IFD entry of type SHORT)."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + b"MM\x00*" + struct.pack(">I", 8) + ifd
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def test_exif_orientation_is_applied(data_dir, tmp_path):
    """A camera stores the sensor's pixels and a tag saying how to turn them: the points must be
    those of the upright photo a viewer shows."""
    face = pick_faces(data_dir, 1)[0]
    upright, _ = face_canvas(face.gray, face.points, at=(20, 4))
    (tmp_path / "upright.jpg").write_bytes(cv2.imencode(".jpg", upright, [cv2.IMWRITE_JPEG_QUALITY, 98])[1].tobytes())
    # orientation 6: turn the stored pixels 90 degrees clockwise to show them; so store them turned back
    stored = cv2.imencode(".jpg", np.ascontiguousarray(np.rot90(upright, 1)), [cv2.IMWRITE_JPEG_QUALITY, 98])[1]
    (tmp_path / "tagged.jpg").write_bytes(with_exif_orientation(stored.tobytes(), 6))
    (tmp_path / "untagged.jpg").write_bytes(stored.tobytes())
    a, b = read_photo(str(tmp_path / "upright.jpg")), read_photo(str(tmp_path / "tagged.jpg"))
    assert read_photo(str(tmp_path / "untagged.jpg")).bgr.shape == (320, 240, 3)   # no tag: as stored
    assert b.bgr.shape == a.bgr.shape == (240, 320, 3)
    assert (b.info["width"], b.info["height"]) == (320, 240)
    assert np.abs(b.bgr.astype(int) - a.bgr).mean() < 3           # the same picture, up to JPEG noise
    parts = load_profile("fast")
    ra, rb = (annotate_photo(p, "x.jpg", parts.detector, parts.predictor, parts.follow).table.to_pandas()
              for p in (a, b))
    assert ra.track_id.tolist() == rb.track_id.tolist() == [0]
    np.testing.assert_allclose(rb[POINT_COLUMNS].to_numpy(), ra[POINT_COLUMNS].to_numpy(), atol=1.5)


def test_unreadable_photos_are_named_errors(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg" * 20)
    for name, cause in (("empty.png", "empty file"), ("junk.jpg", "not a readable image"), ("nope.png", "no such file")):
        with pytest.raises(PhotoError, match=re.escape(str(tmp_path / name)) + ".*" + cause):
            read_photo(str(tmp_path / name))


def test_photos_are_batched_many_to_a_task():
    items = [VideoItem(f"/p/{k}.jpg", f"{k}.jpg") for k in range(10_000)]
    b = batches(items)
    assert len(b) == 313 and max(len(x.items) for x in b) == 32
    assert [p.name for x in b for p in x.items] == [i.name for i in items]      # every photo once, in order
    assert len(batches(items[:10])) == 5 and len(batches(items[:3])) == 3      # a few still spread out


@pytest.fixture(scope="module")
def mixed(data_dir, tmp_path_factory):
    """A folder of a video and photos in the five formats (one in a subfolder) and a corrupt photo,
    annotated and rendered with the frames bar forced on (stderr here is not a terminal)."""
    src = tmp_path_factory.mktemp("mixed")
    faces = pick_faces(data_dir, 3)
    moving_clip(str(src / "clip.mp4"), faces[:2])              # 10 frames
    img, _ = face_canvas(faces[2].gray, faces[2].points, at=(30, 6))
    img[..., 2] = cv2.add(img[..., 2], 25)                          # a colour photo, not a gray one
    for ext in FORMATS:
        cv2.imwrite(str(src / f"face{ext}"), img)
    os.makedirs(src / "sub")
    cv2.imwrite(str(src / "sub" / "again.png"), img)
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 300)
    out = tmp_path_factory.mktemp("out")
    return src, out, img


def test_a_folder_mixing_videos_and_photos(mixed, capsys):
    src, out, img = mixed
    code = main(["annotate", str(src), "--out", str(out) + "//", "--render", "landmarks", "--progress", "always"])
    stdout, stderr = capsys.readouterr()
    assert code == 1                                                # the corrupt photo
    summary = json.loads((out / "_summary.json").read_text())["videos"]
    photos = [f"face{ext}" for ext in FORMATS] + ["sub/again.png"]
    assert sorted(summary) == sorted(photos + ["clip.mp4", "corrupt.jpg"])
    assert summary["clip.mp4"]["status"] == "ok" and summary["clip.mp4"]["frames"] == 10
    bad = summary["corrupt.jpg"]
    assert bad["status"] == "failed" and "not a readable image" in bad["error"] and "corrupt.jpg" in bad["error"]
    tables = {}
    for name in photos:
        e = summary[name]
        assert e["status"] == "ok" and e["frames"] == 1 and e["kind"] == "photo" and "//" not in e["output"]
        t = pq.read_table(out / f"{name}.parquet")
        assert t.schema.remove_metadata().equals(SCHEMA)
        df = tables[name] = t.to_pandas()
        assert df.video.tolist() == [name] and df.track_id.tolist() == [0]
        assert (df.frame_index.tolist(), df.pts.tolist(), df.time_s.tolist()) == ([0], [0], [0.0])
        ext = os.path.splitext(name)[1]
        rendered = out / f"{name}.landmarks{ext}"
        head = rendered.read_bytes()[:4]
        assert head.startswith(FORMATS[ext]) if isinstance(FORMATS[ext], bytes) else head in FORMATS[ext]
        drawn = cv2.imread(str(rendered))
        assert drawn.shape == img.shape and np.abs(drawn.astype(int) - img).max() > 100    # points drawn
    lossless = [tables[n][POINT_COLUMNS].to_numpy() for n in ("face.png", "face.bmp", "face.tiff", "sub/again.png")]
    assert all(np.array_equal(lossless[0], x) for x in lossless[1:])
    for lossy in ("face.jpg", "face.webp"):
        np.testing.assert_allclose(tables[lossy][POINT_COLUMNS].to_numpy(), lossless[0], atol=2.0)
    # the bar counted frames to the real total (10 + 6 photos; the corrupt one counts none)
    counts = [(int(a), int(b)) for a, b in re.findall(r"frames:.*?\b(\d+)/(\d+) \[", stderr)]
    assert counts and counts[-1] == (16, 16) and "frame/s" in stderr and "8/8 files" in stderr
    assert f"summary in {out}/_summary.json" in stdout and "//" not in stdout


def test_a_rerun_skips_current_photos_and_never_shows_no_bar(mixed, capsys):
    src, out, _ = mixed
    before = {p: os.path.getmtime(out / p) for p in ("face.png.parquet", "face.png.landmarks.png", "clip.mp4.parquet")}
    assert main(["annotate", str(src), "--out", str(out), "--render", "landmarks", "--progress", "never"]) == 1
    stdout, stderr = capsys.readouterr()
    summary = json.loads((out / "_summary.json").read_text())["videos"]
    assert [n for n, e in summary.items() if e["status"] != "skipped"] == ["corrupt.jpg"]
    assert summary["face.png"]["render"]["status"] == "ok" and summary["face.png"]["kind"] == "photo"
    assert {p: os.path.getmtime(out / p) for p in before} == before
    assert "frame/s" not in stderr and "frames:" not in stderr
    assert "0 ok, 7 skipped (current), 1 failed" in stdout
    # a different filter: the photo's tracks are redone with it (cheap), the old render stays
    assert main(["annotate", str(src / "face.png"), "--out", str(out), "--render", "blur", "--progress", "never"]) == 0
    assert (out / "face.png.blur.png").exists() and (out / "face.png.landmarks.png").exists()
    assert not pd.read_parquet(out / "face.png.parquet").empty


def test_render_draws_a_photo_from_its_track_file(mixed, tmp_path, capsys):
    """`facetracks render` on a photo: the image annotate --render drew, from the tracks alone;
    an output that is not an image, and another photo's tracks, are refused by name."""
    src, out, _ = mixed
    dst = tmp_path / "face.drawn.png"
    assert main(["render", str(src / "face.png"), "--tracks", str(out / "face.png.parquet"), "--filter", "landmarks",
                 "--out", str(dst)]) == 0
    assert "render: photo, 1 faces" in capsys.readouterr().out
    assert np.array_equal(cv2.imread(str(dst)), cv2.imread(str(out / "face.png.landmarks.png")))
    assert main(["render", str(src / "face.png"), "--tracks", str(out / "face.png.parquet"), "--out",
                 str(tmp_path / "face.mp4")]) == 2
    assert "a photo renders to an image" in capsys.readouterr().err
    assert main(["render", str(src / "face.png"), "--tracks", str(out / "face.jpg.parquet"), "--out",
                 str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "face.jpg.parquet" in err and "face.png" in err and not (tmp_path / "x.png").exists()


def test_a_photo_that_kills_its_worker_costs_only_itself(data_dir, tmp_path):
    """Ten photos go two to a task; the worker dies (SIGKILL, as a decoder segfault would) on
    one: its batch is split, each photo retried alone, and only that one is quarantined."""
    from facetracks.jobs.worker import KILL_HOOK
    from .raycluster import sandbox_env, short_tempdir, stop_sessions
    src = tmp_path / "in"
    src.mkdir()
    face = pick_faces(data_dir, 1)[0]
    img, _ = face_canvas(face.gray, face.points, at=(30, 6))
    for k in range(9):
        cv2.imwrite(str(src / f"p{k}.png"), img)
    cv2.imwrite(str(src / "poison.png"), img)
    assert [it.name for it in batches(expand_inputs([str(src)]))[-1].items] == ["p8.png", "poison.png"]
    root = short_tempdir()
    env = {**sandbox_env(root), KILL_HOOK: "poison"}
    cmd = [sys.executable, "-m", "facetracks.jobs.cli", "annotate", str(src), "--out", str(tmp_path / "out"),
           "--actors", "1", "--profile", "fast", "--progress", "never"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        text, _ = p.communicate(timeout=600)
    finally:
        stop_sessions([p.pid], env["RAY_AUTH_TOKEN"])          # what it started, and only that
        shutil.rmtree(root, ignore_errors=True)
    assert p.returncode == 1, text
    v = json.loads((tmp_path / "out" / "_summary.json").read_text())["videos"]
    assert v["poison.png"]["status"] == "failed" and "quarantined" in v["poison.png"]["error"]
    assert sorted(n for n, e in v.items() if e["status"] == "ok") == [f"p{k}.png" for k in range(9)]


def test_an_upside_down_photo_whose_upright_scan_finds_a_false_box_is_found(tmp_path):
    """Frame 30 of the bundled sample turned a half: the upright cascade finds a box on it that is
    no face, which the network rejects. A photo has one round, and that round scanned turned only
    where it found nothing upright, so the face was lost. Now the input's last frame is detected
    once more, turned scans included (`follow.Schedule.try_turned_last`): her face, read as the
    upright photo reads it (the same crop turned a half), one turned scan; the upright photo is
    read in one round, none turned."""
    import av
    from dataclasses import replace
    from facetracks.jobs.bench_paths import SAMPLE
    from facetracks.models.landmarks68 import interocular
    from facetracks.pipeline.smoothing import table_ids, table_points
    with av.open(SAMPLE) as c:
        img = next(f.to_ndarray(format="bgr24") for k, f in enumerate(c.decode(video=0)) if k == 30)
    h, w = img.shape[:2]
    parts = load_profile("fast")
    read = {}
    for name, pic in (("up", img), ("half", cv2.rotate(img, cv2.ROTATE_180))):
        path = str(tmp_path / f"{name}.png")
        cv2.imwrite(path, pic)
        for follow in (parts.follow, replace(parts.follow, turned_every=0)):
            r = annotate_photo(read_photo(path), name, parts.detector, parts.predictor, follow)
            read[name, follow.turned_every] = (table_points(r.table)[table_ids(r.table)[0] >= 0], r.stats)
    up, st = read["up", parts.follow.turned_every]
    assert len(up) == 1 and st.detections == 1 and st.turned_scans == 0
    assert len(read["half", 0][0]) == 0 and parts.detector.detect(cv2.cvtColor(cv2.rotate(img, cv2.ROTATE_180),
                                                                             cv2.COLOR_BGR2GRAY)).shape[0] >= 1
    half, st = read["half", parts.follow.turned_every]
    assert len(half) == 1 and st.detections == 2 and st.turned_scans == 1
    want = np.stack([w - 1 - up[0][:, 0], h - 1 - up[0][:, 1]], -1)
    assert np.linalg.norm(half[0] - want, axis=-1).mean() / interocular(want[None])[0] < 0.005


@pytest.mark.parametrize("ext", [".png", ".webp"])
def test_an_animation_is_every_frame_at_its_own_time_and_renders_as_one(data_dir, tmp_path, capsys, ext):
    """An APNG or animated WebP (a sticker, a screen capture) read as a still lost every frame
    after the first without a word."""
    face = pick_faces(data_dir, 1)[0]
    anim = cv2.Animation()
    anim.frames = [face_canvas(face.gray, face.points, at=(10 + 4 * i, 4))[0] for i in range(6)]
    anim.durations = [100, 100, 200, 100, 100, 300]
    (tmp_path / "in").mkdir()
    assert cv2.imwriteanimation(str(tmp_path / "in" / f"sticker{ext}"), anim)
    out = tmp_path / "out"
    assert main(["annotate", str(tmp_path / "in"), "--out", str(out), "--render", "landmarks"]) == 0
    df = pd.read_parquet(out / f"sticker{ext}.parquet")
    assert sorted(df.frame_index.unique()) == list(range(6))
    per_frame = df.groupby("frame_index").first()
    assert per_frame.pts.tolist() == [0, 100, 200, 400, 500, 600]
    assert per_frame.time_s.tolist() == pytest.approx([0, 0.1, 0.2, 0.4, 0.5, 0.6])
    assert df.track_id.notna().sum() >= 5 and df.track_id.dropna().nunique() == 1
    summary = json.loads((out / "_summary.json").read_text())["videos"][f"sticker{ext}"]
    assert (summary["frames"], summary["render"]["frames"]) == (6, 6)
    ok, drawn = cv2.imdecodeanimation(np.fromfile(out / f"sticker{ext}.landmarks{ext}", np.uint8).reshape(1, -1))
    assert ok and len(drawn.frames) == 6 and [int(d) for d in drawn.durations] == [int(d) for d in anim.durations]
    for i in range(6):          # each frame drawn where its own face is
        diff = np.abs(drawn.frames[i][..., :3].astype(int) - anim.frames[i]).max(axis=2) > 100
        ys, xs = np.nonzero(diff)
        assert len(xs) and abs(xs.mean() - (face.points[:, 0].mean() + 10 + 4 * i)) < 12


def test_an_animation_keeps_its_loop_and_transparency_and_too_large_or_cut_short_is_said(tmp_path, monkeypatch):
    """A sticker that plays once, on a transparent ground, renders as one (it looped for ever, on
    black); an animation too large to hold decoded is refused, naming the way out; an APNG cut short
    is its first frame, a still (as before animations were read)."""
    from facetracks.pipeline import photo as photo_mod
    from facetracks.pipeline.filters import get_filter
    from facetracks.pipeline.photo import render_photo
    frames = []
    for i in range(4):
        f = np.zeros((60, 80, 4), np.uint8)
        f[10:50, 10 + 5 * i:40 + 5 * i] = (40 * i, 200, 90, 255)         # an opaque block moving on a clear ground
        frames.append(f)
    anim = cv2.Animation()
    anim.frames, anim.durations, anim.loop_count = frames, [50] * 4, 1
    path = str(tmp_path / "sticker.png")
    assert cv2.imwriteanimation(path, anim)
    photo = read_photo(path)
    assert len(photo.frames) == 4 and photo.loop_count == 1 and len(photo.alphas) == 4
    out = tmp_path / "drawn.png"
    out.write_bytes(render_photo(photo, {}, get_filter("landmarks"), ".png"))
    ok, drawn = cv2.imdecodeanimation(np.fromfile(out, np.uint8).reshape(1, -1))
    assert ok and drawn.loop_count == 1 and drawn.frames[2].shape[2] == 4
    assert np.array_equal(drawn.frames[2][..., 3], frames[2][..., 3])           # clear where it was clear
    monkeypatch.setattr(photo_mod, "ANIMATION_BYTES", 80 * 60 * 3 * 3)          # room for 3 frames
    with pytest.raises(PhotoError, match="an animation of more than 3 frames of 80x60.*convert it to a video"):
        read_photo(path)
    monkeypatch.undo()
    data = open(path, "rb").read()
    (tmp_path / "cut.png").write_bytes(data[: int(len(data) * 0.7)])
    cut = read_photo(str(tmp_path / "cut.png"))
    assert cut.frames == [] and cut.bgr.shape == (60, 80, 3)
