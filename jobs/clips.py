"""Synthetic clips made from real images, for the bench, the steadiness check and the tests: one
video writer and one way of picking labelled faces, so what the bench measures on and what the
tests assert on are made the same way.
"""
from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Iterable

import av
import numpy as np

from facetracks.pipeline.detect import HaarDetector
from facetracks.training.boxes import match_detection
from facetracks.training.data import Sample, load_split

AUDIO_RATE = 16000


def write_video(path: str, frames: Iterable[np.ndarray], fps: int = 25, pts: list[int] | None = None,
                time_base: Fraction | None = None, rotation: int = 0, audio_seconds: float = 0.0,
                codec: str = "libx264", bframes: bool = True) -> list[int] | None:
    """Encode BGR frames (a list, or a generator: frames are streamed). With `time_base`, frames get
    explicit PTS (`pts`, default 1/fps steps), which are returned; without, the encoder numbers them.
    `bframes=False` keeps presentation order equal to decode order (x264 `bf=0`); `audio_seconds`
    adds a 440 Hz mono AAC track."""
    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    with av.open(path, "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if time_base is not None:
            s.time_base = time_base
            s.codec_context.time_base = time_base
        if codec == "libx264" and not bframes:
            s.options = {"bf": "0"}
        if rotation:
            s.set_display_rotation(rotation)
        a = audio_stream(c) if audio_seconds else None
        written = []
        for i, img in enumerate(itertools.chain([first], it)):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            if time_base is not None:
                p = pts[i] if pts is not None else round(i / fps / time_base)
                f.pts, f.time_base = p, time_base
                written.append(p)
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
        if a is not None:
            t = np.arange(int(audio_seconds * AUDIO_RATE)) / AUDIO_RATE
            encode_audio(c, a, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    return written if time_base is not None else None


def audio_stream(c: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    """A mono AAC stream (added before anything is muxed)."""
    a = c.add_stream("aac", rate=AUDIO_RATE)
    a.layout = "mono"
    return a


def encode_audio(c: av.container.OutputContainer, a: av.audio.stream.AudioStream, samples: np.ndarray) -> None:
    """Mono float32 samples at AUDIO_RATE into `a`, flushed."""
    samples = samples[None]
    for k in range(0, samples.shape[1], 1024):
        f = av.AudioFrame.from_ndarray(samples[:, k:k + 1024], format="flt", layout="mono")
        f.sample_rate, f.pts = AUDIO_RATE, k
        for pkt in a.encode(f):
            c.mux(pkt)
    for pkt in a.encode(None):
        c.mux(pkt)


def pick_faces(data_dir: str, n: int, max_w: int = 300, max_h: int = 230, split: str = "identity",
               part: str = "test") -> list[Sample]:
    """The first `n` labelled images of the split's part (identity test: never seen in training)
    that fit a `max_w` x `max_h` canvas and that the Haar detector finds."""
    det, out = HaarDetector(), []
    for s in load_split(data_dir, split, part):
        h, w = s.gray.shape
        if w <= max_w and h <= max_h and match_detection(det.detect(s.gray), s.points) is not None:
            out.append(s)
            if len(out) == n:
                return out
    raise RuntimeError(f"{data_dir}: only {len(out)} {split}/{part} faces fit {max_w}x{max_h} and are detected, "
                       f"{n} wanted")
