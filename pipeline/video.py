"""Decoding with PyAV: stream metadata, and frames as upright grayscale straight from the Y plane.

Timestamps are each frame's PTS times the stream time base (right for variable frame rate, B-frame
reordering and 1 ms WMV time bases); the frame count is what decodes, never the header. Rotation
from the display matrix is applied, so every coordinate downstream is in the upright frame a
viewer sees.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Iterator

import av
import numpy as np

# Formats whose first plane is 8-bit luma: the gray image is a view of it, no conversion.
_Y8_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21",
               "yuv411p", "yuv410p", "yuv440p", "yuvj440p", "gray", "yuva420p"}


# Headers over-count by a few frames in real files (95 of 98 decode in one of ours); a file where far
# fewer decode than its index lists has lost data.
TRUNCATED_SHARE = 0.9


@dataclass
class VideoInfo:
    path: str
    size_bytes: int
    mtime: float
    width: int            # upright (after rotation)
    height: int
    rotation: int         # degrees counter-clockwise applied to stored frames for display
    codec: str
    time_base: str
    avg_fps: float
    header_frames: int    # what the container claims; may be wrong

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Frame:
    index: int            # position in decode-output (presentation) order, from 0
    pts: int | None
    time_s: float
    gray: np.ndarray      # (H, W) uint8, upright
    bgr: np.ndarray | None = None


class VideoError(RuntimeError):
    """A file that cannot be decoded as video: message names the file and the cause."""


def _open(path: str) -> av.container.InputContainer:
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(path)
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: not a readable video ({e.strerror or e})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: no video stream (audio-only or data file)")
    return container


def probe(path: str) -> VideoInfo:
    with _open(path) as c:
        s = c.streams.video[0]
        rotation = 0
        try:
            for f in c.decode(s):
                rotation = int(round((f.rotation or 0) / 90)) * 90 % 360
                break
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: cannot decode the first frame ({e})") from e
        w, h = s.codec_context.width, s.codec_context.height
        if rotation in (90, 270):
            w, h = h, w
        st = os.stat(path)
        rate = s.average_rate or s.guessed_rate
        return VideoInfo(path=os.path.abspath(path), size_bytes=st.st_size, mtime=st.st_mtime, width=w, height=h,
                         rotation=rotation, codec=s.codec_context.name, time_base=str(s.time_base),
                         avg_fps=float(rate) if rate else 0.0, header_frames=int(s.frames or 0))


def keyframe_times(path: str) -> list[float]:
    """Times of the video's keyframes, from packets alone (no decoding): where segments may start."""
    with _open(path) as c:
        s = c.streams.video[0]
        try:
            return sorted({float(p.pts * s.time_base) for p in c.demux(s) if p.is_keyframe and p.pts is not None})
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: cannot read packets ({e})") from e


def _gray(frame: av.VideoFrame) -> np.ndarray:
    if frame.format.name in _Y8_FORMATS:
        plane = frame.planes[0]
        # planes may be padded: view rows of line_size, then cut to width
        buf = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
        return buf[:, :frame.width]
    return frame.to_ndarray(format="gray")


def iter_frames(path: str, color: bool = False, start_s: float | None = None,
                end_s: float | None = None) -> Iterator[Frame]:
    """Stream upright frames; `color` adds BGR (only rendering needs it).

    With `start_s`, seek to the keyframe before it and drop frames before it; with `end_s`, stop
    at it. Frame indices then count from the first returned frame.
    """
    with _open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        tb = s.time_base
        if start_s:
            c.seek(int(start_s / tb), stream=s, backward=True)
        index = 0
        try:
            for f in c.decode(s):
                pts = f.pts
                t = float(pts * tb) if pts is not None else (float(f.time) if f.time is not None else float("nan"))
                if start_s is not None and t < start_s - 1e-6:
                    continue
                if end_s is not None and t >= end_s - 1e-6:
                    break
                k = int(round((f.rotation or 0) / 90)) % 4
                gray = _gray(f)
                bgr = f.to_ndarray(format="bgr24") if color else None
                if k:
                    gray = np.rot90(gray, k)
                    bgr = np.rot90(bgr, k) if bgr is not None else None
                yield Frame(index, pts, t, np.ascontiguousarray(gray) if k else gray, bgr)
                index += 1
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: decoding failed at frame {index} ({e})") from e
        indexed = int(s.frames or 0)
        if start_s is None and end_s is None and indexed and index < TRUNCATED_SHARE * indexed - 2:
            raise VideoError(f"{path}: truncated or corrupt: the container indexes {indexed} frames, "
                             f"only {index} decode")
