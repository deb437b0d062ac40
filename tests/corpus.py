"""A corpus of the files people actually have, each written as a tiny real file with PyAV: phone
clips (rotation + sound), odd sizes, WMV/FLV/AVI with audio MP4 cannot hold, anamorphic PAL,
streams without PTS, duplicate PTS, cover art, empty tracks, two video streams, 10-bit, full
range, mirrored display matrices, truncated long videos. Every file shows one face (a YTF-68
identity-test image on a grey canvas) unless it has no video to show.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import cv2
import numpy as np

from facetracks.pipeline.video import Orientation

FPS = 25


@dataclass
class Case:
    path: str
    frames: int | None              # frames a player shows (None: not a video)
    error: str | None = None        # what the error must name, for files that are not videos
    upright: tuple[int, int] | None = None   # (width, height) as displayed, before sample aspect
    sar: Fraction = Fraction(1)
    audio: bool = False
    pts: list[int] | None = None    # the PTS a player shows, when the file has them
    notes: dict = field(default_factory=dict)


def canvas(face: np.ndarray, size: tuple[int, int], at=(8, 4), bg: int = 110) -> np.ndarray:
    """A BGR frame of `size` (w, h) with the gray face image pasted at `at`."""
    img = np.full((size[1], size[0], 3), bg, np.uint8)
    h, w = face.shape[:2]
    h, w = min(h, size[1] - at[1]), min(w, size[0] - at[0])
    img[at[1]:at[1] + h, at[0]:at[0] + w] = cv2.cvtColor(face[:h, :w], cv2.COLOR_GRAY2BGR)
    img[-6:, : size[0] // 2] = 0           # black and white bars: where gray levels show their range
    img[-6:, size[0] // 2:] = 255
    return img


def _audio_frames(rate: int, seconds: float, layout: str = "mono", start_s: float = 0.0):
    n = int(rate * seconds)
    channels = 2 if layout == "stereo" else 1
    samples = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)
    samples = np.ascontiguousarray(np.repeat(samples[None], channels, 0))
    for k in range(0, n, 1024):
        f = av.AudioFrame.from_ndarray(samples[:, k:k + 1024], format="fltp", layout=layout)
        f.sample_rate, f.pts = rate, round(start_s * rate) + k
        yield f


def _mux_second_of_sound(c, a) -> None:
    for af in _audio_frames(a.rate, 1.0):
        for p in a.encode(af):
            c.mux(p)
    for p in a.encode(None):
        c.mux(p)


def write(path: str, frames: list[np.ndarray], *, fmt: str | None = None, codec: str = "libx264",
          pix_fmt: str = "yuv420p", pts: list[int] | None = None, time_base: Fraction = Fraction(1, 1000),
          matrix: list[int] | None = None, rotation: int = 0, sar: Fraction | None = None,
          audio: tuple[str, int] | tuple[str, int, str] | None = None, audio_first: bool = True,
          options: dict | None = None,
          color_range: int | None = None, container_options: dict | None = None,
          color_tags: tuple[int, int, int] | None = None) -> list[int]:
    """Encode BGR frames; `audio` (codec, rate[, layout]) adds a second of sine, muxed before the
    video when `audio_first` (a header written at the first mux is then written at an audio packet)."""
    h, w = frames[0].shape[:2]
    if codec in ("wmv2", "flv", "mpeg4") or fmt == "avi":   # these count frames: time base 1/fps
        time_base, pts = Fraction(1, FPS), None
    pts = pts if pts is not None else [round(i / FPS / time_base) for i in range(len(frames))]
    with av.open(path, "w", format=fmt, options=container_options or {}) as c:
        s = c.add_stream(codec, rate=FPS)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        s.time_base = time_base
        s.codec_context.time_base = time_base
        if codec == "libx264":
            s.options = {"bf": "0", **(options or {})}
        if sar:
            s.sample_aspect_ratio = sar
            s.codec_context.sample_aspect_ratio = sar
        if color_range is not None:
            s.codec_context.color_range = color_range
        if color_tags is not None:              # (primaries, transfer, matrix), AVCOL_* values
            cc = s.codec_context
            cc.color_primaries, cc.color_trc, cc.colorspace = color_tags
        if matrix is not None:
            s.set_display_matrix(matrix)
        elif rotation:
            s.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream(audio[0], rate=audio[1])
            a.layout = audio[2] if len(audio) > 2 else "mono"
            if audio[0] == "wmav2":
                a.bit_rate = 64000
        packets = []
        if a is not None:            # the sound starts with the pictures
            for af in _audio_frames(audio[1], len(frames) / FPS, a.layout.name, start_s=float(pts[0] * time_base)):
                packets += [("a", p) for p in a.encode(af)]
            packets += [("a", p) for p in a.encode(None)]
        vpk = []
        for i, (img, p) in enumerate(zip(frames, pts)):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            if pix_fmt != "yuv420p":
                f = f.reformat(format=pix_fmt)
            f.pts, f.time_base = p, time_base
            vpk += list(s.encode(f))
        vpk += list(s.encode(None))
        order = ([p for _, p in packets] + vpk) if audio_first else (vpk + [p for _, p in packets])
        for p in order:
            c.mux(p)
    return pts


def _frames(face: np.ndarray, size: tuple[int, int], n: int = 12) -> list[np.ndarray]:
    return [canvas(face, size, at=(8 + i, 4)) for i in range(n)]


def phone(d: str, face: np.ndarray) -> Case:
    """Shot in portrait: stored landscape, a display matrix turning it -90°, AAC sound first."""
    up = _frames(face, (240, 320))
    o = Orientation(3)                      # what set_display_rotation(-90) means to a player
    stored = [np.ascontiguousarray(o.undo(f)) for f in up]
    path = os.path.join(d, "phone_rotated.mp4")
    pts = write(path, stored, rotation=-90, audio=("aac", 16000))
    return Case(path, len(up), upright=(240, 320), audio=True, pts=pts)


def mirrored(d: str, face: np.ndarray) -> Case:
    """A front-camera clip: the display matrix mirrors left-right (a rotation of 180° to a
    reader that only asks av_display_rotation_get)."""
    up = _frames(face, (320, 240))
    stored = [np.ascontiguousarray(f[:, ::-1]) for f in up]
    path = os.path.join(d, "mirrored.mp4")
    pts = write(path, stored, matrix=[-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30])
    return Case(path, len(up), upright=(320, 240), pts=pts)


def odd_size(d: str, face: np.ndarray) -> Case:
    path = os.path.join(d, "odd_321x181.mkv")
    frames = _frames(face, (321, 181))
    pts = write(path, frames, codec="libx264", pix_fmt="yuv444p", audio=("aac", 16000))
    return Case(path, len(frames), upright=(321, 181), audio=True, pts=pts)


def old_formats(d: str, face: np.ndarray) -> list[Case]:
    """Audio that MP4 cannot hold: WMA in ASF, ADPCM in FLV, mu-law in AVI."""
    out = []
    for name, fmt, vcodec, acodec, rate in [("old.wmv", "asf", "wmv2", "wmav2", 22050),
                                            ("old.flv", "flv", "flv", "adpcm_swf", 22050),
                                            ("old.avi", "avi", "mpeg4", "pcm_mulaw", 8000)]:
        path = os.path.join(d, name)
        frames = _frames(face, (320, 240))
        write(path, frames, fmt=fmt, codec=vcodec, audio=(acodec, rate))
        out.append(Case(path, len(frames), upright=(320, 240), audio=True, notes={"audio_codec": acodec}))
    return out


def anamorphic(d: str, face: np.ndarray) -> Case:
    """PAL 16:9 stored as 4:3 pixels: a 64:45 sample aspect (here on a small frame)."""
    path = os.path.join(d, "anamorphic.mp4")
    frames = _frames(face, (352, 288))
    pts = write(path, frames, sar=Fraction(64, 45), audio=("aac", 16000))
    return Case(path, len(frames), upright=(352, 288), sar=Fraction(64, 45), audio=True, pts=pts)


def no_pts(d: str, face: np.ndarray) -> Case:
    """A raw H.264 elementary stream: frames without any timestamp."""
    path = os.path.join(d, "raw.h264")
    frames = _frames(face, (320, 240))
    write(path, frames, fmt="h264", pts=list(range(len(frames))), time_base=Fraction(1, FPS))
    return Case(path, len(frames), upright=(320, 240))


def duplicate_pts(d: str, face: np.ndarray) -> Case:
    """Two frames stamped with the same time (Matroska allows equal timestamps; seen in screen
    recordings and badly cut files)."""
    path = os.path.join(d, "dup_pts.mkv")
    frames = _frames(face, (320, 240), 8)
    stamps = [0, 40, 80, 80, 120, 160, 200, 240]
    with av.open(path, "w") as c:
        s = c.add_stream("mjpeg", rate=FPS)
        s.width, s.height, s.pix_fmt = 320, 240, "yuvj420p"
        s.time_base = Fraction(1, 1000)
        for i, (img, p) in enumerate(zip(frames, stamps)):
            f = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuvj420p")
            f.pts = i
            for pk in s.encode(f):
                pk.pts = pk.dts = p
                pk.time_base = Fraction(1, 1000)
                c.mux(pk)
    return Case(path, len(frames), upright=(320, 240), pts=stamps)


def cover_art(d: str) -> Case:
    """Music with album art: the only video stream is an attached picture."""
    path = os.path.join(d, "song.m4a")
    with av.open(path, "w", format="mp4") as c:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        v = c.add_stream("mjpeg")
        v.width, v.height, v.pix_fmt = 64, 64, "yuvj420p"
        v.disposition = av.stream.Disposition.attached_pic
        f = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="bgr24").reformat(format="yuvj420p")
        f.pts = 0
        for p in list(v.encode(f)) + list(v.encode(None)):
            c.mux(p)
        _mux_second_of_sound(c, a)
    return Case(path, None, error="only cover art")


def empty_track(d: str) -> Case:
    """A video stream with no samples beside real audio."""
    path = os.path.join(d, "empty_track.mkv")
    with av.open(path, "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = 160, 120, "yuv420p"
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        _mux_second_of_sound(c, a)
    return Case(path, None, error="holds no frames")


def two_streams(d: str, face: np.ndarray, flagged: bool = True) -> Case:
    """A small preview stream first, the main stream second and flagged default (`flagged`), or
    neither flagged: the larger is the one shown."""
    path = os.path.join(d, "two_streams.mkv" if flagged else "two_streams_unflagged.mkv")
    main = _frames(face, (320, 240))
    with av.open(path, "w") as c:
        prev = c.add_stream("libx264", rate=FPS)
        prev.width, prev.height, prev.pix_fmt = 96, 64, "yuv420p"
        prev.disposition = 0
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.disposition = av.stream.Disposition.default if flagged else 0
        for st, frames in ((prev, [np.full((64, 96, 3), 30, np.uint8)] * 5), (s, main)):
            st.options = {"bf": "0"}
            _mux_all(c, st, [av.VideoFrame.from_ndarray(img, format="bgr24") for img in frames])
    return Case(path, len(main), upright=(320, 240))


def _mux_all(c, stream, frames) -> None:
    """Encode and mux `frames` (video frames numbered 0, 1, …; audio frames as they are), then flush."""
    for i, f in enumerate(frames):
        if isinstance(f, av.VideoFrame):
            f.pts = i
        for p in stream.encode(f):
            c.mux(p)
    for p in stream.encode(None):
        c.mux(p)


def ten_bit(d: str, face: np.ndarray) -> Case:
    path = os.path.join(d, "ten_bit.mp4")
    frames = _frames(face, (320, 240))
    pts = write(path, frames, pix_fmt="yuv420p10le")
    return Case(path, len(frames), upright=(320, 240), pts=pts)


def full_range(d: str, face: np.ndarray) -> Case:
    """The same picture as a limited-range file, in full range (yuvj420p, as phones write)."""
    path = os.path.join(d, "full_range.mp4")
    frames = _frames(face, (320, 240))
    pts = write(path, frames, pix_fmt="yuvj420p", color_range=2)
    return Case(path, len(frames), upright=(320, 240), pts=pts)


HLG_BT2020 = (9, 18, 9)         # BT.2020 primaries, ARIB STD-B67 (HLG) transfer, BT.2020 matrix


def hdr_tagged(d: str, face: np.ndarray) -> Case:
    """A phone's HLG clip: 10-bit, BT.2020 primaries and matrix, HLG transfer, full of tags a
    player needs to show it right."""
    path = os.path.join(d, "hlg.mp4")
    frames = _frames(face, (320, 240))
    pts = write(path, frames, pix_fmt="yuv420p10le", color_tags=HLG_BT2020)
    return Case(path, len(frames), upright=(320, 240), pts=pts, notes={"color_tags": HLG_BT2020})


def limited_range(d: str, face: np.ndarray) -> Case:
    path = os.path.join(d, "limited_range.mp4")
    frames = _frames(face, (320, 240))
    pts = write(path, frames)
    return Case(path, len(frames), upright=(320, 240), pts=pts)


def gray_limited(d: str, face: np.ndarray, bits: int = 8) -> Case:
    """4:0:0 (monochrome) HEVC of `bits` bits whose luma is limited range (16..235 at 8 bits) and
    tagged so: IR and thermal cameras, scanned film (x264 stores gray as 4:2:0; x265 keeps 4:0:0)."""
    path = os.path.join(d, f"gray{bits}_limited.mkv")
    fmt, dtype, k = ("gray", np.uint8, 1) if bits == 8 else (f"gray{bits}le", np.uint16, 2 ** (bits - 8))
    frames = [np.round((16 + cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) * (219 / 255)) * k).astype(dtype)
              for f in _frames(face, (320, 240))]
    with av.open(path, "w") as c:
        s = c.add_stream("libx265", rate=FPS, options={"preset": "ultrafast", "x265-params": "log-level=error"})
        s.width, s.height, s.pix_fmt = 320, 240, fmt
        s.codec_context.color_range = 1          # AVCOL_RANGE_MPEG
        _mux_all(c, s, [av.VideoFrame.from_ndarray(g, format=fmt) for g in frames])
    return Case(path, len(frames), upright=(320, 240))


def long_video(d: str, face: np.ndarray, seconds: int = 4, name: str = "long.mp4", start_s: float = 0.0) -> str:
    """A few seconds with a keyframe every 10 frames (25 in MPEG-TS): long enough to split into 1 s segments. The
    index comes first (faststart), so a copy cut short still opens and still lists every frame.
    `start_s`: the first frame's time (an MPEG-TS starts where its recording did)."""
    path = os.path.join(d, name)
    frames = [canvas(face, (320, 240), at=(8 + (i % 20), 4)) for i in range(seconds * FPS)]
    ts = name.endswith(".ts")
    tb = Fraction(1, 90000) if ts else Fraction(1, 1000)
    k = "25" if ts else "10"              # TS as broadcast: B-frames, a keyframe a second
    gop = {"g": k, "keyint_min": k, "sc_threshold": "0", **({"bf": "3"} if ts else {})}
    write(path, frames, options=gop, time_base=tb,
          pts=[round((start_s + i / FPS) / tb) for i in range(len(frames))], audio=("aac", 16000) if ts else None,
          container_options={} if ts else {"movflags": "faststart"})
    return path


PTS_WRAP_S = 2 ** 33 / 90000          # MPEG-TS clocks count 33 bits of 90 kHz: they wrap every 26.5 h


def trimmed(d: str, face: np.ndarray) -> Case:
    """A lossless trim (LosslessCut, `ffmpeg -ss … -c copy`): the packets from the keyframe before
    the cut point, the first 4 hidden by the MP4 edit list (negative times). 8 frames show."""
    path = os.path.join(d, "trimmed.mp4")
    frames = _frames(face, (320, 240))
    pts = write(path, frames, pts=[(i - 4) * 40 for i in range(12)], audio=("aac", 16000))
    return Case(path, 8, upright=(320, 240), audio=True, pts=pts[4:])


def broadcast(d: str, face: np.ndarray) -> Case:
    """A TV recording: MPEG-TS whose clock reads 5 hours at its first frame, with sound."""
    path = os.path.join(d, "broadcast.ts")
    frames = _frames(face, (320, 240))
    tb = Fraction(1, 90000)
    write(path, frames, fmt="mpegts", time_base=tb, pts=[round((5 * 3600 + i / FPS) / tb) for i in range(12)],
          audio=("aac", 16000))
    return Case(path, len(frames), upright=(320, 240), audio=True)


def ts_wrap(d: str, face: np.ndarray) -> Case:
    """MPEG-TS whose 33-bit clock wraps after its fourth frame: FFmpeg gives the frames before the
    wrap negative times."""
    path = os.path.join(d, "ts_wrap.ts")
    frames = _frames(face, (320, 240))
    tb = Fraction(1, 90000)
    write(path, frames, fmt="mpegts", time_base=tb,
          pts=[round((PTS_WRAP_S + (i - 4) / FPS) / tb) for i in range(12)])      # the muxer writes 33 bits
    return Case(path, len(frames), upright=(320, 240))


def camera_avi(d: str, face: np.ndarray) -> Case:
    """A camera's or screen recorder's AVI: MJPEG with stereo PCM, whose channels have no layout
    (AVI stores a count only)."""
    path = os.path.join(d, "camera.avi")
    write(path, _frames(face, (320, 240)), fmt="avi", codec="mjpeg", pix_fmt="yuvj420p",
          audio=("pcm_s16le", 16000, "stereo"))
    return Case(path, 12, upright=(320, 240), audio=True)


def screen_avi(d: str, face: np.ndarray) -> Case:
    """A screen recorder's AVI: a constant 25 fps in name, an empty chunk for every frame where
    nothing changed, up to the end, where the screen stood still (the header counts 91 frames, 12
    show, the index's last entry is frame 62)."""
    path = os.path.join(d, "screen.avi")
    shown = [0, 1, 2, 10, 11, 20, 30, 31, 45, 60, 61, 62]
    with av.open(path, "w") as c:
        s = c.add_stream("mpeg4", rate=FPS)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.time_base = Fraction(1, FPS)
        for img, pts in zip(_frames(face, (320, 240), len(shown)), shown):
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts = pts
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
        still = av.Packet(b"")               # frame 90: nothing changed since 62 (the muxer fills the gap)
        still.stream, still.pts, still.dts, still.time_base = s, 90, 90, Fraction(1, FPS)
        c.mux(still)
    return Case(path, len(shown), upright=(320, 240), pts=shown)


def unknown_codec(d: str, face: np.ndarray) -> Case:
    """An AVI whose video fourcc FFmpeg knows no decoder for (a camera maker's own)."""
    path = os.path.join(d, "unknown_codec.avi")
    write(path, _frames(face, (320, 240)), fmt="avi", codec="mjpeg", pix_fmt="yuvj420p")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data.replace(b"MJPG", b"QQQQ"))
    return Case(path, None, error="no decoder for its video codec")


def dubbed(d: str, face: np.ndarray) -> Case:
    """Two sound tracks in Matroska, English then German, German the default: a player plays German."""
    path = os.path.join(d, "dubbed.mkv")
    frames = _frames(face, (320, 240))
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt, s.options = 320, 240, "yuv420p", {"bf": "0"}
        tracks = []
        for lang, title, flag in (("eng", "English", 0), ("deu", "Deutsch", av.stream.Disposition.default)):
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
            a.metadata["language"], a.metadata["title"] = lang, title
            a.disposition = flag
            tracks.append(a)
        s.disposition = av.stream.Disposition.default
        for a in tracks:
            _mux_all(c, a, _audio_frames(16000, len(frames) / FPS))
        _mux_all(c, s, [av.VideoFrame.from_ndarray(img, format="bgr24") for img in frames])
    return Case(path, len(frames), upright=(320, 240), audio=True)


def gif(d: str, face: np.ndarray) -> Case:
    """An animated GIF: palette or gray frames, a 1/100 s time base, no audio."""
    path = os.path.join(d, "clip.gif")
    frames = _frames(face, (320, 240))
    pts = write(path, frames, codec="gif", pix_fmt="gray", pts=[4 * i for i in range(len(frames))],
                time_base=Fraction(1, 100))
    return Case(path, len(frames), upright=(320, 240), pts=pts)


def size_change(d: str, face: np.ndarray) -> Case:
    """A stream that grows midway, 320x240 then the same pictures at 480x360: two MPEG-TS files
    joined byte for byte, as recorded adaptive-bitrate streams and `cat`-joined clips are. Its
    PTS run on across the join."""
    first = _frames(face, (320, 240), 16)
    halves = [first[:8], [cv2.resize(f, (480, 360), interpolation=cv2.INTER_LINEAR) for f in first[8:]]]
    path, stamps = os.path.join(d, "size_change.ts"), []
    with open(path, "wb") as out:
        for k, frames in enumerate(halves):
            part = os.path.join(d, f"size_change_{k}.ts")
            stamps += write(part, frames, fmt="mpegts", pts=[(8 * k + i) * 40 for i in range(8)])
            with open(part, "rb") as f:
                out.write(f.read())
    return Case(path, 16, upright=(320, 240), notes={"grows_at": 8})


def build(d: str, face: np.ndarray) -> dict[str, Case]:
    """Every kind, by a short name."""
    cases = {"phone": phone(d, face), "mirrored": mirrored(d, face), "odd": odd_size(d, face),
             "anamorphic": anamorphic(d, face), "no_pts": no_pts(d, face), "dup_pts": duplicate_pts(d, face),
             "cover_art": cover_art(d), "empty_track": empty_track(d), "two_streams": two_streams(d, face),
             "ten_bit": ten_bit(d, face), "full_range": full_range(d, face), "limited_range": limited_range(d, face),
             "hlg": hdr_tagged(d, face), "gif": gif(d, face), "trimmed": trimmed(d, face),
             "broadcast": broadcast(d, face), "ts_wrap": ts_wrap(d, face), "camera_avi": camera_avi(d, face),
             "dubbed": dubbed(d, face), "two_streams_unflagged": two_streams(d, face, flagged=False),
             "unknown_codec": unknown_codec(d, face), "screen_avi": screen_avi(d, face)}
    for c in old_formats(d, face):
        cases[os.path.splitext(os.path.basename(c.path))[1][1:]] = c
    return cases
