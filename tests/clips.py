"""Tiny real videos made from YTF-68 identity-test images, with their ground truth."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from facetracks.jobs.clips import AUDIO_RATE, audio_stream, encode_audio, pick_faces  # noqa: F401 - pick_faces: for the tests

from .conftest import face_canvas, write_video


@dataclass
class Clip:
    path: str
    pts_s: list[float]            # presentation time of each frame, seconds
    truth: list[list[np.ndarray]]  # per frame, the ground-truth points of each face (left to right)


def moving_clip(path: str, faces, frames_each: int = 5, step: int = 2, **kw) -> Clip:
    """Each face for `frames_each` frames, sliding right by `step` px a frame."""
    frames, truth = [], []
    for s in faces:
        for k in range(frames_each):
            img, pts = face_canvas(s.gray, s.points, at=(4 + step * k, 4))
            frames.append(img)
            truth.append([pts])
    pts = write_video(path, frames, **kw)
    tb = kw.get("time_base", Fraction(1, 1000))
    return Clip(path, [float(p * tb) for p in pts], truth)


def two_face_clip(path: str, a, b, n: int = 10) -> Clip:
    frames, truth = [], []
    for k in range(n):
        left, pa = face_canvas(a.gray, a.points, at=(4 + k, 4))
        right, pb = face_canvas(b.gray, b.points, at=(4, 4 + k // 2))
        frames.append(np.hstack([left, right]))
        truth.append([pa, pb + np.array([320, 0], np.float32)])
    pts = write_video(path, frames)
    return Clip(path, [p / 1000 for p in pts], truth)


def rotated_clip(path: str, face, n: int = 6) -> Clip:
    """Stored rotated a quarter turn clockwise, with a display matrix that turns it back upright."""
    img, pts = face_canvas(face.gray, face.points, at=(8, 4))
    stored = np.ascontiguousarray(np.rot90(img, -1))
    ts = write_video(path, [stored] * n, rotation=90)
    return Clip(path, [p / 1000 for p in ts], [[pts]] * n)


def vfr_clip(path: str, face) -> Clip:
    img, pts = face_canvas(face.gray, face.points)
    ts = [0, 40, 120, 133, 200, 400, 433, 1000]
    write_video(path, [img] * len(ts), pts=ts, time_base=Fraction(1, 1000))
    return Clip(path, [t / 1000 for t in ts], [[pts]] * len(ts))


def audio_only(path: str) -> None:
    import av
    with av.open(path, "w") as c:
        encode_audio(c, audio_stream(c), np.zeros(AUDIO_RATE, np.float32))


def truncated_copy(src: str, dst: str, share: float = 0.3) -> None:
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[: int(len(data) * share)])


def damaged_copy(src: str, dst: str, at: float = 0.5, size: int = 3000, seed: int = 0) -> None:
    """`src` with `size` bytes at `at` of its length overwritten by seeded noise: a damaged file
    whose container still reads (bit rot, a broken download), not a truncated one."""
    with open(src, "rb") as f:
        data = bytearray(f.read())
    k = int(len(data) * at)
    data[k:k + size] = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    with open(dst, "wb") as f:
        f.write(data)


def gray_frames(path: str, n: int, every: int) -> list[np.ndarray]:
    """Every `every`-th frame of a file, as full-range gray, until `n` of them."""
    import av
    out = []
    with av.open(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(f.to_ndarray(format="gray"))
            if len(out) == n:
                break
    return out
