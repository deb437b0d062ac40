"""Photos as one-frame inputs: read upright, landmarked like a video's frame, rendered in their own format.

A photo's rows have the video schema with `frame_index` 0, `pts` 0 and `time_s` 0, so every reader
of track files takes them unchanged. OpenCV's decoder applies the EXIF orientation (IMREAD_COLOR
without IMREAD_IGNORE_ORIENTATION), so points are in the upright image a viewer shows, as a
video's are after its display matrix. The file is read into memory once: decoding from bytes also
takes paths OpenCV's own file reader would not.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np
import pyarrow as pa

from facetracks.models.inference import LandmarkPredictor

from .annotate import annotate_frames
from .detect import FaceDetector
from .filters import FilterFn
from . import sources
from .video import Frame, VideoError

if TYPE_CHECKING:
    from .follow import FollowParams, FollowStats

JPEG_QUALITY = 95          # a rendered JPEG: close to the source, a fraction of a lossless file's size


class PhotoError(VideoError):
    """A file that cannot be read as an image (a VideoError: every input error is one kind for callers)."""


ANIMATED_FORMATS = (".png", ".webp")    # what holds an animation (APNG, animated WebP) and OpenCV writes one to


@dataclass
class Photo:
    bgr: np.ndarray        # (H, W, 3) uint8, upright; an animation's first frame
    info: dict             # what a track file's `source` metadata says of it
    frames: list[np.ndarray] = field(default_factory=list)    # an animation's frames (BGR), else empty
    durations_ms: list[int] = field(default_factory=list)     # how long each of them shows
    alphas: list[np.ndarray] = field(default_factory=list)    # their alpha planes, where they have them
    loop_count: int = 0                                       # plays this often (0: for ever)


def _animated(data: np.ndarray) -> bool:
    """An APNG (an acTL chunk before the first IDAT) or an animated WebP (VP8X's animation flag),
    by content: a sticker or a screen capture saved as one. Read as a still, its frames after the
    first were lost without a word."""
    head = data[:32].tobytes()
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        pos = 8
        while pos + 8 <= len(data):       # chunks: length, type, data, CRC; acTL comes before any IDAT
            kind = data[pos + 4:pos + 8].tobytes()
            if kind in (b"acTL", b"IDAT"):
                return kind == b"acTL"
            pos += 12 + int.from_bytes(data[pos:pos + 4].tobytes(), "big")
        return False
    return head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and len(head) > 20 and bool(head[20] & 0x02)


ANIMATION_BYTES = 2 ** 30     # most an animation's frames may take decoded (BGR): read whole, then annotated


def _animation(data: np.ndarray, path: str, size: tuple[int, int]) -> Photo | None:
    """The frames of an animation whose first frame is `size` (w, h), decoded whole; None where
    they do not decode (a file cut short: its first frame stands as a still). PhotoError past
    ANIMATION_BYTES (a minute of 1080p screen capture would take 20 GB): a video it is then."""
    most = max(2, ANIMATION_BYTES // (size[0] * size[1] * 3))
    ok, anim = cv2.imdecodeanimation(data.reshape(1, -1), 0, most + 1)
    if not ok or len(anim.frames) < 2:
        return None
    if len(anim.frames) > most:
        raise PhotoError(f"{path}: an animation of more than {most} frames of {size[0]}x{size[1]}: more than "
                         f"{ANIMATION_BYTES / 2 ** 30:g} GB decoded; convert it to a video (.mp4) to annotate it")
    frames, alphas = list(anim.frames), []
    durations, loop = [max(int(d), 1) for d in anim.durations], int(anim.loop_count)
    del anim
    for i, f in enumerate(frames):       # one frame at a time: never the 4-channel and the 3-channel sets at once
        if f.ndim == 3 and f.shape[2] == 4:
            alphas.append(np.ascontiguousarray(f[..., 3]))
            frames[i] = cv2.cvtColor(f, cv2.COLOR_BGRA2BGR)
        elif f.ndim == 2:
            frames[i] = cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)
    return Photo(frames[0], {}, frames, durations, alphas if len(alphas) == len(frames) else [], loop)


@dataclass
class PhotoResult:
    table: pa.Table
    info: dict
    stats: FollowStats
    seconds: float


def read_photo(path: str) -> Photo:
    """Raises PhotoError naming the file and the cause."""
    try:
        data = np.frombuffer(sources.read_bytes(path), np.uint8)
        st = sources.info(path)
    except FileNotFoundError:
        raise PhotoError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise PhotoError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if not len(data):
        raise PhotoError(f"{path}: empty file (0 bytes)")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)      # EXIF orientation applied
    if bgr is None:
        raise PhotoError(f"{path}: not a readable image (corrupt, or not the format its name says)")
    photo = _animation(data, path, (bgr.shape[1], bgr.shape[0])) if _animated(data) else None
    photo = photo or Photo(bgr, {})
    frames, durations = photo.frames, photo.durations_ms
    h, w = photo.bgr.shape[:2]
    ext = os.path.splitext(sources.name_of(path))[1].lower()
    info = {"path": sources.absolute(path), "size_bytes": st.size, "mtime": st.mtime, "width": w,
            "height": h, "kind": "photo", "format": ext.lstrip("."), "header_frames": 1, "timing": "photo"}
    if frames:      # frames at their own times, in ms: `pts` counts ms, as a GIF's counts 1/100 s
        info.update(kind="animation", header_frames=len(frames), time_base="1/1000",
                    avg_fps=len(frames) * 1000 / sum(durations))
    photo.info = info
    return photo


def annotate_photo(photo: Photo, name: str, detector: FaceDetector, predictor: LandmarkPredictor,
                   params: FollowParams | None = None, on_frames: Callable[[int], None] | None = None
                   ) -> PhotoResult:
    """`name` is what the `video` column says, as for a video."""
    t0 = time.perf_counter()
    starts = np.concatenate([[0], np.cumsum(photo.durations_ms)[:-1]]).astype(int) if photo.frames else [0]
    frames = [Frame(i, int(t), t / 1000, cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
              for i, (img, t) in enumerate(zip(photo.frames or [photo.bgr], starts))]
    size = (photo.info["width"], photo.info["height"])
    table, stats = annotate_frames(frames, name, size, detector, predictor, params, on_frames)
    return PhotoResult(table, photo.info, stats, time.perf_counter() - t0)


def render_photo(photo: Photo, faces: dict[int, list[np.ndarray]], filt: FilterFn, ext: str) -> bytes:
    """The filtered photo encoded as `ext` (the source's format); upright pixels, so no EXIF tag.
    `faces`: by frame index (`render.faces_by_frame`); an animation is drawn frame by frame and
    stays one, at its own frame times."""
    if photo.frames:
        if ext.lower() not in ANIMATED_FORMATS:
            raise PhotoError(f"{photo.info['path']}: an animation ({len(photo.frames)} frames) renders to "
                             f"{' or '.join(ANIMATED_FORMATS)}, not {ext}")
        anim = cv2.Animation()
        drawn = [filt(img.copy(), faces.get(i, [])) for i, img in enumerate(photo.frames)]
        if photo.alphas:                 # a sticker stays transparent where it was
            drawn = [np.dstack([img, a]) for img, a in zip(drawn, photo.alphas)]
        anim.frames, anim.durations, anim.loop_count = drawn, list(photo.durations_ms), photo.loop_count
        ok, buf = cv2.imencodeanimation(ext.lower(), anim)
        if not ok:
            raise PhotoError(f"{photo.info['path']}: cannot encode the rendered animation as {ext}")
        return buf.tobytes()
    out = filt(photo.bgr.copy(), faces.get(0, []))
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, out, params)
    if not ok:
        raise PhotoError(f"{photo.info['path']}: cannot encode the rendered photo as {ext}")
    return buf.tobytes()
