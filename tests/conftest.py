"""Shared fixtures: where ../shared is, and tiny real videos made with PyAV from YTF-68 test images.

Tests that need ../shared skip when it is absent on a user's machine; in CI
(FACETRACKS_REQUIRE_SHARED=1, set by .ci/run) they fail instead, so nothing is skipped quietly.
"""
from __future__ import annotations

import os
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
DATA = os.path.join(SHARED, "data", "ytf68")
VIDEOS = os.path.join(SHARED, "videos")


def need(path: str) -> str:
    if not os.path.exists(path):
        if os.environ.get("FACETRACKS_REQUIRE_SHARED"):
            pytest.fail(f"{path} is missing and FACETRACKS_REQUIRE_SHARED is set (CI)")
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def data_dir() -> str:
    return need(DATA)


@pytest.fixture(scope="session")
def videos_dir() -> str:
    return need(VIDEOS)


def write_video(path: str, frames: list[np.ndarray], pts: list[int] | None = None,
                time_base: Fraction = Fraction(1, 1000), rotation: int = 0, fps: int = 25,
                audio_seconds: float = 0.0, codec: str = "libx264") -> list[int]:
    """Encode BGR frames with explicit PTS (default: 1/fps steps); returns the PTS written."""
    h, w = frames[0].shape[:2]
    pts = pts if pts is not None else [round(i / fps / time_base) for i in range(len(frames))]
    with av.open(path, "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.time_base = time_base
        s.codec_context.time_base = time_base
        if codec == "libx264":
            s.options = {"bf": "0"}
        if rotation:
            s.set_display_rotation(rotation)
        a = None
        if audio_seconds:
            a = c.add_stream("aac", rate=16000)
            a.layout = "mono"
        for img, p in zip(frames, pts):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
            f.pts, f.time_base = p, time_base
            for pkt in s.encode(f):
                c.mux(pkt)
        for pkt in s.encode(None):
            c.mux(pkt)
        if a is not None:
            n = int(audio_seconds * 16000)
            t = np.arange(n) / 16000
            samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for k in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(samples[:, k:k + 1024], format="flt", layout="mono")
                af.sample_rate, af.pts = 16000, k
                for pkt in a.encode(af):
                    c.mux(pkt)
            for pkt in a.encode(None):
                c.mux(pkt)
    return pts


def face_canvas(img: np.ndarray, pts: np.ndarray, size=(320, 240), at=(0, 0), bg: int = 110
                ) -> tuple[np.ndarray, np.ndarray]:
    """Paste a gray test image into a grey canvas at `at`; returns BGR canvas and shifted points."""
    canvas = np.full((size[1], size[0], 3), bg, np.uint8)
    h, w = img.shape[:2]
    canvas[at[1]:at[1] + h, at[0]:at[0] + w] = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return canvas, pts + np.array(at, np.float32)
