"""Synthetic clips made from real images, for the bench, the steadiness check and the tests: one
video writer and one way of picking labelled faces, so what the bench measures on and what the
tests assert on are made the same way.
"""
from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

from facetracks.pipeline.detect import FaceDetector, HaarDetector
from facetracks.pipeline.video import iter_frames
from facetracks.training.boxes import match_detection
from facetracks.training.data import Sample, load_split

AUDIO_RATE = 16000


def write_video(path: str, frames: Iterable[np.ndarray], fps: int = 25, pts: list[int] | None = None,
                time_base: Fraction | None = None, rotation: int = 0, audio_seconds: float = 0.0,
                codec: str = "libx264", bframes: bool = True, preset: str | None = None,
                gop: int | None = None) -> list[int] | None:
    """Encode BGR frames (a list, or a generator: frames are streamed). With `time_base`, frames get
    explicit PTS (`pts`, default 1/fps steps), which are returned; without, the encoder numbers them.
    `bframes=False` keeps presentation order equal to decode order (x264 `bf=0`); `audio_seconds`
    adds a 440 Hz mono AAC track. `preset` (x264's, e.g. "ultrafast": cheap to write, bigger) and
    `gop` (frames between keyframes at most) are the encoder's own options, left to it when None."""
    it = iter(frames)
    first = next(it)
    h, w = first.shape[:2]
    with av.open(path, "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if time_base is not None:
            s.time_base = time_base
            s.codec_context.time_base = time_base
        opts = {}
        if codec == "libx264" and not bframes:
            opts["bf"] = "0"
        if preset is not None:
            opts["preset"] = preset
        if gop is not None:
            opts["g"] = str(gop)
        if opts:
            s.options = opts
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


def letterboxed(source: str, size: tuple[int, int], frames: int, loop: bool = True) -> Iterator[np.ndarray]:
    """`frames` BGR frames of `source` (upright), each scaled to fit `size` (w, h) and centred on
    black; the source starts again from its first frame when it ends (`loop`), else stops there."""
    n = 0
    while n < frames:
        before = n
        for f in iter_frames(source, color=True):
            h, w = f.bgr.shape[:2]
            s = min(size[0] / w, size[1] / h)
            img = cv2.resize(f.bgr, (round(w * s), round(h * s)))
            canvas = np.zeros((size[1], size[0], 3), np.uint8)
            y, x = (size[1] - img.shape[0]) // 2, (size[0] - img.shape[1]) // 2
            canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
            yield canvas
            n += 1
            if n == frames:
                return
        if not loop or n == before:
            return


def loop_video(src: str, dst: str, frames: int) -> int:
    """`dst`: the video stream of `src` played again and again, `frames` frames in all, by copying
    its packets with shifted timestamps (nothing re-encoded). `src` must keep presentation order
    equal to decode order (no B-frames: `write_video(bframes=False)`, or x264's ultrafast preset),
    so that stopping after any packet leaves no frame without its reference. Returns `frames`."""
    with av.open(src) as i, av.open(dst, "w") as o:
        si = i.streams.video[0]
        so = o.add_stream_from_template(si)
        pkts = [(bytes(p), p.pts, p.dts, p.duration, p.is_keyframe) for p in i.demux(si) if p.size]
        if not pkts:
            raise ValueError(f"{src}: no video packets")
        if any(p[1] != p[2] for p in pkts):
            raise ValueError(f"{src}: has B-frames (pts != dts); write it with bframes=False")
        period = max(p[1] + p[3] for p in pkts) - min(p[1] for p in pkts)
        n, k = 0, 0
        while n < frames:
            for data, pts, dts, dur, key in pkts[:frames - n]:
                q = av.Packet(data)
                q.pts, q.dts, q.duration, q.is_keyframe = pts + k * period, dts + k * period, dur, key
                q.time_base, q.stream = si.time_base, so
                o.mux(q)
            n, k = min(frames, n + len(pkts)), k + 1
    return frames


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
               part: str = "test", detector: FaceDetector | None = None) -> list[Sample]:
    """The first `n` labelled images of the split's part (identity test: never seen in training)
    that fit a `max_w` x `max_h` canvas and that the Haar detector finds (`detector`, default
    OpenCV's with default settings; `TorchHaarDetector` gives the same boxes where OpenCV 5 has none)."""
    det, out = detector if detector is not None else HaarDetector(), []
    for s in load_split(data_dir, split, part):
        h, w = s.gray.shape
        if w <= max_w and h <= max_h and match_detection(det.detect(s.gray), s.points) is not None:
            out.append(s)
            if len(out) == n:
                return out
    raise RuntimeError(f"{data_dir}: only {len(out)} {split}/{part} faces fit {max_w}x{max_h} and are detected, "
                       f"{n} wanted")
