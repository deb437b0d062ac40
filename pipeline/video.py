"""Decoding with PyAV: the stream a player would show, its metadata, and frames as upright,
full-range grayscale straight from the Y plane.

Timestamps are each frame's PTS times the stream time base (right for variable frame rate, B-frame
reordering and 1 ms WMV time bases); a frame without a PTS (raw .h264, some AVIs) gets the time
the frame rate gives it, and the video's `timing` says so. The frame count is what decodes, never
the header. The display matrix (rotation and mirroring) is applied, so every coordinate downstream
is in the upright frame a viewer sees, at the stream's size even where the stream changes size
midway (such frames are scaled to it, as ffmpeg does). Gray levels are full range (0..255)
whatever the pixel format, as the training images are: limited-range luma (16..235, nearly every
H.264 file) is stretched through a 256-entry table. Packets the decoder rejects as invalid data
(a damaged file) are skipped, as players skip them, and counted.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Iterator

import av
import cv2
import numpy as np

from . import sources

# Formats whose first plane is 8-bit luma: the gray image is a view of it (or one table lookup).
_Y8_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21",
               "yuv411p", "yuv410p", "yuv440p", "yuvj440p", "gray", "yuva420p"}
# gray (4:0:0) is full range unless tagged limited (an IR camera's HEVC): GIFs and PNGs say nothing
_FULL_RANGE_Y8 = {"yuvj420p", "yuvj422p", "yuvj444p", "yuvj440p"}
_MPEG_RANGE = 1          # AVCOL_RANGE_MPEG: the frame says its luma is limited range (16..235)
_JPEG_RANGE = 2          # AVCOL_RANGE_JPEG: the frame says its luma is full range
# limited-range luma 16..235 -> 0..255, clipped: what swscale does for the other formats
_LIMITED_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255.0 / 219.0), 0, 255).astype(np.uint8)

# Headers over-count by a few frames in real files (95 of 98 decode in one of ours); a file where far
# fewer decode than its index lists has lost data.
TRUNCATED_SHARE = 0.9
DEFAULT_FPS = 25.0       # for streams that state no rate at all


@dataclass(frozen=True)
class Orientation:
    """How a stored frame becomes the upright one a player shows: mirror left-right (`flip`)
    first, then `k` quarter turns counter-clockwise. The eight cases of a display matrix."""
    k: int = 0
    flip: bool = False

    def apply(self, img: np.ndarray) -> np.ndarray:
        img = img[:, ::-1] if self.flip else img
        return np.rot90(img, self.k) if self.k else img

    def undo(self, img: np.ndarray) -> np.ndarray:
        img = np.rot90(img, -self.k) if self.k else img
        return img[:, ::-1] if self.flip else img

    @property
    def identity(self) -> bool:
        return not self.k and not self.flip


def orientation_from_matrix(m: np.ndarray | None) -> Orientation:
    """FFmpeg's display matrix (9 int32, AV_FRAME_DATA_DISPLAYMATRIX) -> what a player does with
    it, case by case as ffmpeg's own autorotate does (fftools/ffmpeg_filter.c): a mirrored matrix
    reads as a rotation to av_display_rotation_get, which alone would turn a mirror into 180°."""
    if m is None:
        return Orientation()
    a, b, c, d = (float(v) / 65536 for v in (m[0], m[1], m[3], m[4]))
    # counter-clockwise angle, as av_display_rotation_get computes it
    scale0, scale1 = np.hypot(a, c), np.hypot(b, d)
    if scale0 == 0 or scale1 == 0:
        return Orientation()
    ccw = -np.degrees(np.arctan2(b / scale1, a / scale0))
    theta = (-round(ccw)) % 360          # clockwise, as fftools' get_rotation
    if abs(theta - 90) < 1:
        return Orientation(1, True) if m[3] > 0 else Orientation(3, False)      # transpose / clockwise
    if abs(theta - 180) < 1:
        h, v = m[0] < 0, m[4] < 0
        return {(True, True): Orientation(2), (True, False): Orientation(0, True),
                (False, True): Orientation(2, True), (False, False): Orientation()}[(h, v)]
    if abs(theta - 270) < 1:
        return Orientation(3, True) if m[3] < 0 else Orientation(1, False)      # anti-transpose / ccw
    if abs(theta) < 1 or abs(theta - 360) < 1:
        return Orientation(2, True) if m[4] < 0 else Orientation()              # vertical flip
    return Orientation(int(round(-theta / 90)) % 4)   # odd angles: the nearest quarter turn


def display_matrix(frame: av.VideoFrame) -> np.ndarray | None:
    for sd in frame.side_data:
        if sd.type.name == "DISPLAYMATRIX":
            return np.frombuffer(bytes(sd), np.int32).copy()
    return None


@dataclass
class VideoInfo:
    path: str             # absolute; a name's non-UTF-8 bytes kept (JSON metadata escapes them, \udcXX)
    size_bytes: int
    mtime: float
    width: int            # upright (after rotation)
    height: int
    rotation: int         # degrees counter-clockwise applied to stored frames for display
    codec: str
    time_base: str
    avg_fps: float
    header_frames: int    # what the container claims; may be wrong
    stream_index: int = 0         # which stream of the file (the one a player shows)
    flip: bool = False            # the display matrix mirrors left-right (before `rotation`)
    sample_aspect: str = "1/1"    # pixel aspect ratio of the stored frames
    pix_fmt: str = ""
    timing: str = "pts"           # "pts"; "frame_rate" when frames carry no PTS (times from the rate)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Frame:
    index: int            # position in decode-output (presentation) order, from 0
    pts: int | None
    time_s: float
    gray: np.ndarray      # (H, W) uint8, upright, full range
    bgr: np.ndarray | None = None


class VideoError(RuntimeError):
    """A file that cannot be decoded as video: message names the file and the cause."""


def _is_cover_art(s: av.stream.Stream) -> bool:
    return bool(s.disposition & av.stream.Disposition.attached_pic)


def pick_video_stream(container: av.container.InputContainer, path: str = "") -> av.video.stream.VideoStream:
    """The stream a player shows: the default-flagged video stream, else the largest (as ffmpeg
    picks: a file with a 160x90 preview stream first and no flags shows its 640x360 one), the
    first of equals; never cover art (an `attached_pic` is one still image, as MP3s and M4As carry
    album art)."""
    real = [s for s in container.streams.video if not _is_cover_art(s)]
    if not real:
        what = "only cover art, no video" if container.streams.video else "no video stream"
        raise VideoError(f"{path or container.name}: {what} (audio-only or data file)")
    default = [s for s in real if s.disposition & av.stream.Disposition.default]
    if default:
        return default[0]
    return max(real, key=lambda s: (s.codec_context.width or 0) * (s.codec_context.height or 0)
               if s.codec_context else -1)       # no decoder for it: its own error, when it is the one


def open_video(path: str) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open a file (a path or a URI: pipeline/sources.py) for reading and pick its video stream;
    every failure is a VideoError naming the file."""
    try:
        found = sources.info(path)
        if found.kind == "missing":
            raise VideoError(f"{path}: no such file")
        if found.size == 0 and found.kind == "file":
            raise VideoError(f"{path}: empty file (0 bytes)")
        args, kwargs = sources.open_input(path)
        container = av.open(*args, **kwargs)
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: not a readable video ({e.strerror or e})") from e
    except (OSError, ValueError) as e:   # a store that cannot be read (credentials, network), a bad URI
        raise VideoError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from e
    try:
        s = pick_video_stream(container, path)
        if s.codec_context is None:        # FFmpeg has no decoder for it (an unknown fourcc)
            raise VideoError(f"{path}: no decoder for its video codec ({getattr(s, 'codec_tag', '') or 'unknown'})")
        return container, s
    except VideoError:
        container.close()
        raise


def frame_rate(s: av.video.stream.VideoStream) -> float:
    rate = s.average_rate or s.guessed_rate or s.base_rate
    return float(rate) if rate else DEFAULT_FPS


def indexed_frames(s: av.video.stream.VideoStream) -> int:
    """Frames the container says will be shown. In MP4/MOV, the index's samples less those its edit
    list hides: a lossless trim (LosslessCut, `ffmpeg -ss … -c copy`) keeps the packets from the
    keyframe before the cut and hides those before the cut point (they decode, the frames after
    need them, and are dropped), and leaves the samples after its end out of the index, while the
    stream's count has them all: a trimmed file looked truncated (60 of 120). A file cut short
    keeps its whole index (at its front, else it does not open), so truncation is still seen.
    In AVI, the index's entries too when the file is whole: a screen recorder's variable frame
    rate is a constant rate with empty chunks where nothing changed, which the header counts and
    no decoder shows (13 frames shown, 91 counted). An AVI cut short loses its index (at the end;
    FFmpeg's then holds the packets read so far), and the count stands. Whole: its RIFF chunk fits
    in the file (a local one), or its index reaches the last frame counted (the screen may have
    stood still at the end: the index's last entry is then earlier).
    Elsewhere the stream's count (an index there may list keyframes only)."""
    n = int(s.frames or 0)
    entries = s.index_entries if n else []
    if len(entries):
        kinds = set(s.container.format.name.split(","))
        whole = "mp4" in kinds or ("avi" in kinds and (entries[-1].timestamp >= TRUNCATED_SHARE * n - 2
                                                        or _riff_fits(s.container.name)))
        if whole:
            n = min(n, len(entries) - sum(1 for e in entries if e.is_discard))
    return max(n, 0)


def _riff_fits(path: str) -> bool:
    """Whether a local AVI's RIFF chunks all end within the file: written to its end and closed
    (each size is written last), not cut short. Every chunk: past 1 GB an AVI is a RIFF 'AVI '
    chunk and RIFF 'AVIX' ones after it, and a copy cut at 2.5 GB still holds the first whole.
    False where it cannot be read (a URI)."""
    try:
        with open(path, "rb") as f:
            size, pos, chunks = os.fstat(f.fileno()).st_size, 0, 0
            while pos + 8 <= size:
                f.seek(pos)
                head = f.read(8)
                if head[:4] != b"RIFF":
                    break                 # what follows the last RIFF chunk (padding, junk) is not counted
                n = int.from_bytes(head[4:8], "little")
                pos += 8 + n + (n & 1)
                if n == 0 or pos > size:
                    return False
                chunks += 1
    except (OSError, TypeError, ValueError):
        return False
    return chunks > 0


def header_length(path: str) -> tuple[int, float, float]:
    """(frames, seconds, frames per second) as the container's header states them, nothing decoded
    (0 frames or 0 seconds where it states nothing): estimates, which decoding may correct."""
    container, s = open_video(path)
    with container:
        return indexed_frames(s), _header_seconds(container, s), frame_rate(s)


def _header_seconds(container: av.container.InputContainer, s: av.video.stream.VideoStream) -> float:
    return float(s.duration * s.time_base) if s.duration else (container.duration or 0) / 1e6


def first_frame(container: av.container.InputContainer, s: av.video.stream.VideoStream, path: str) -> av.VideoFrame:
    """The stream's first decoded frame; a VideoError naming the file when there is none."""
    try:
        first = next(container.decode(s), None)
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: cannot decode the first frame ({e})") from e
    if first is None:
        raise VideoError(f"{path}: the video stream holds no frames")
    return first


def probe(path: str) -> VideoInfo:
    container, s = open_video(path)
    with container:
        first = first_frame(container, s, path)
        o = orientation_from_matrix(display_matrix(first))
        w, h = s.codec_context.width, s.codec_context.height
        if o.k % 2:
            w, h = h, w
        st = sources.info(path)
        sar = s.sample_aspect_ratio or s.codec_context.sample_aspect_ratio
        return VideoInfo(path=sources.absolute(path), size_bytes=st.size, mtime=st.mtime, width=w, height=h,
                         rotation=o.k * 90, codec=s.codec_context.name, time_base=str(s.time_base),
                         avg_fps=frame_rate(s), header_frames=indexed_frames(s), stream_index=s.index,
                         flip=o.flip, sample_aspect=f"{sar.numerator}/{sar.denominator}" if sar else "1/1", pix_fmt=first.format.name,
                         timing="pts" if first.pts is not None else "frame_rate")


def keyframe_times(path: str, alive: Callable[[], None] | None = None, shorter_than_s: float = 0.0) -> list[float]:
    """Times of the video's keyframes, from packets alone (no decoding): where segments may start.
    Empty for a stream without PTS (it cannot be cut by time and runs whole), and, without a
    packet read, for one whose header says it lasts less than `shorter_than_s`. `alive()` is
    called for every packet read: whoever watches for a stuck read hears that this one is not."""
    container, s = open_video(path)
    times = set()
    with container:
        if 0 < _header_seconds(container, s) < shorter_than_s:
            return []
        try:
            for p in container.demux(s):
                if alive is not None:
                    alive()
                if p.is_keyframe and p.pts is not None:
                    times.add(float(p.pts * s.time_base))
            return sorted(times)
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: cannot read packets ({e})") from e


def check_complete(path: str, decoded: int, indexed: int) -> None:
    """Raise when far fewer frames decoded than the container indexes: the file lost data."""
    if indexed and decoded < TRUNCATED_SHARE * indexed - 2:
        raise VideoError(f"{path}: truncated or corrupt: the container indexes {indexed} frames, "
                         f"only {decoded} decode")


def stated_seconds(s: av.video.stream.VideoStream) -> float:
    """How long the stream says it lasts, where only its own tag says so (Matroska and WebM write a
    DURATION tag per track, `HH:MM:SS.nnnnnnnnn`, and state no frame count); 0 where none does.
    The container's duration is not this stream's: a sound track may run on after the pictures.
    Matroska only: NUT and Ogg keep whatever DURATION tag they were given, and ffmpeg copies an
    MKV input's into them (`-t 2` of a 10-minute MKV to .ogv says 10 minutes)."""
    if "matroska" not in s.container.format.name.split(","):
        return 0.0
    try:
        h, m, sec = (s.metadata.get("DURATION") or "").split(":")
        return max(0.0, int(h) * 3600 + int(m) * 60 + float(sec))
    except ValueError:
        return 0.0


def check_reaches_end(path: str, end_s: float, stated_s: float) -> None:
    """Raise when the frames end far before the time the stream states: a Matroska file cut short
    keeps its header (a 6 s clip cut in half read as a whole 2.8 s one). Frames that end later
    than stated, or a stream that starts late (times then pass the stated length), never raise."""
    if stated_s and end_s < TRUNCATED_SHARE * stated_s - 0.1:
        raise VideoError(f"{path}: truncated or corrupt: the container says the video lasts {stated_s:.2f} s, "
                         f"its frames end at {end_s:.2f} s")


def _gray(frame: av.VideoFrame) -> np.ndarray:
    name = frame.format.name
    if name in _Y8_FORMATS:
        plane = frame.planes[0]
        # planes may be padded: view rows of line_size, then cut to width
        y = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]
        limited = frame.color_range == _MPEG_RANGE if name == "gray" else \
            name not in _FULL_RANGE_Y8 and frame.color_range != _JPEG_RANGE
        if not limited:
            return y
        return cv2.LUT(y, _LIMITED_TO_FULL)      # ~0.07 ms at 640x480 (numpy indexing: 0.6)
    gray = frame.to_ndarray(format="gray")     # swscale gives full range for every other format ...
    if name.startswith("gray") and frame.color_range == _MPEG_RANGE:
        gray = cv2.LUT(gray, _LIMITED_TO_FULL)     # ... but takes 10- and 12-bit gray as full range
    return gray


def _resized(img: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """A frame of a stream that changed size midway (adaptive-bitrate recordings, joined clips)
    brought back to the stream's size, stretched as ffmpeg's own scaler does when it converts
    such a file: every coordinate of a video is then in one frame size, the one its tracks,
    pose and render use."""
    if img is None:
        return None
    shrink = size[0] * size[1] < img.shape[0] * img.shape[1]
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def decode_packet(packet: av.Packet) -> list | None:
    """A packet's frames, or None where the decoder rejects it as invalid data: such a packet is
    skipped and decoding goes on, as ffmpeg and players do, so a few damaged bytes (bit rot, a
    broken download) cost the frames near them, not the rest of the video (on the bundled sample
    with 3 kB overwritten midway, 470 of 472 frames instead of the 226 before the damage). One
    rule for reading and rendering, so a render's frames stay the ones the tracks describe."""
    try:
        return packet.decode()
    except av.error.InvalidDataError:
        return None


def _decoded(container: av.container.InputContainer, s: av.video.stream.VideoStream,
             damaged: list[float | None]) -> Iterator[av.VideoFrame]:
    """The stream's frames as `container.decode` gives them, but the packets `decode_packet`
    skips, their times noted in `damaged` (None without a PTS)."""
    for packet in container.demux(s):
        frames = decode_packet(packet)
        if frames is None:
            damaged.append(float(packet.pts * s.time_base) if packet.pts is not None else None)
            continue
        yield from frames


SEEK_BACK_S = (1.0, 4.0, 16.0, 64.0)     # how much earlier to seek again when a seek landed past its target


def _sought(container: av.container.InputContainer, s: av.video.stream.VideoStream, start_s: float,
            damaged: list[float | None]) -> Iterator[av.VideoFrame]:
    """The frames from the keyframe before `start_s` on. A seek may land past its target: in
    MPEG-TS the first frame decoded after seeking to a keyframe was the next keyframe's, a GOP
    late, so a segment lost the overlap its tracks are stitched by (a 192-frame broadcast clip in
    1 s segments: 8 track ids for one face). Then seek again, further back, until the first frame
    is at or before `start_s` or is the stream's first; frames before `start_s` are the caller's
    to drop."""
    tb = s.time_base
    origin = float(s.start_time * tb) if s.start_time is not None else None
    for back in (0.0, *SEEK_BACK_S):
        target, last = start_s - back, back == SEEK_BACK_S[-1]
        try:
            container.seek(int(target / tb), stream=s, backward=True)
        except av.error.FFmpegError:
            if not back:
                raise
            # before the first packet: AVI and FLV refuse that seek (EPERM); go to the first one
            container.seek(int((origin or 0.0) / tb), stream=s, backward=True)
            last = True
        frames = _decoded(container, s, damaged)
        first = next(frames, None)
        if first is None:
            return
        t = float(first.pts * tb) if first.pts is not None else None
        at_start = origin is not None and t is not None and t <= origin + 1e-3     # nothing before it
        if t is None or t <= start_s + 1e-6 or at_start or last:
            yield first
            yield from frames
            return


def iter_frames(path: str, color: bool = False, start_s: float | None = None,
                end_s: float | None = None, threads: int = 0,
                damaged: list[float | None] | None = None) -> Iterator[Frame]:
    """Stream upright frames; `color` adds BGR (only rendering needs it). `threads`: the decoder's
    threads (0: FFmpeg's choice, one per core and one more). An actor that decodes many streams
    at once gives each one or a few: its cores are already shared among the streams, and
    one-thread decoding spends less CPU a frame (at 640x480 here: 8 streams on 2 cores decode
    3,300 fps together with one thread each, 2,700 with FFmpeg's choice).

    With `start_s`, seek to the keyframe before it and drop frames before it; with `end_s`, stop
    at it. Frame indices then count from the first returned frame. Read whole, a video that
    decodes no frame, or far fewer than its container indexes, raises VideoError. Packets the
    decoder rejects are skipped (`_decoded`); `damaged`, when given, gets their times.
    """
    container, s = open_video(path)
    with container:
        s.thread_type = "AUTO"
        if threads:
            s.codec_context.thread_count = threads
        tb, step = s.time_base, 1.0 / frame_rate(s)
        size = (s.codec_context.width, s.codec_context.height)     # the stream's, as `probe` reports it
        damaged = [] if damaged is None else damaged
        frames = _decoded(container, s, damaged) if not start_s else _sought(container, s, start_s, damaged)
        index, t = 0, None
        try:
            for f in frames:
                pts = f.pts
                # no PTS: the frame rate's time after the previous frame
                t = float(pts * tb) if pts is not None else (0.0 if t is None else t + step)
                last_shown_s = float(f.duration * tb) if f.duration else step    # a slide may stay for seconds
                if start_s is not None and t < start_s - 1e-6:
                    continue
                if end_s is not None and t >= end_s - 1e-6:
                    break
                o = orientation_from_matrix(display_matrix(f))
                gray = _gray(f)
                bgr = f.to_ndarray(format="bgr24") if color else None
                if (f.width, f.height) != size and all(size):
                    gray, bgr = _resized(gray, size), _resized(bgr, size)
                if not o.identity:
                    gray = np.ascontiguousarray(o.apply(gray))
                    bgr = np.ascontiguousarray(o.apply(bgr)) if bgr is not None else None
                yield Frame(index, pts, t, gray, bgr)
                index += 1
        except av.error.FFmpegError as e:
            # the container itself fails to read on (the decoder's own rejections are skipped):
            # after a first frame the frames before it stand, and the checks below (or, for a
            # segment, the job's whole-video count) name what was lost
            if index == 0 or not isinstance(e, av.error.InvalidDataError):
                raise VideoError(f"{path}: decoding failed at frame {index} ({e})") from e
        if start_s is None and end_s is None:
            if index == 0 and damaged:
                raise VideoError(f"{path}: no frame decodes: the decoder rejected {len(damaged)} packets "
                                 f"as invalid data and made no frame of the rest")
            if index == 0:
                raise VideoError(f"{path}: the video stream holds no frames")
            check_complete(path, index, indexed_frames(s))
        if end_s is None and t is not None:          # read to the end (whole, or the last segment)
            check_reaches_end(path, t + last_shown_s, stated_seconds(s))
