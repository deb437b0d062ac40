"""Shared fixtures: where ../shared is, and tiny real videos made with PyAV from YTF-68 test images.

Tests that need ../shared skip when it is absent on a user's machine; in CI
(FACETRACKS_REQUIRE_SHARED=1, set by .ci/run) they fail instead, so nothing is skipped quietly.
"""
from __future__ import annotations

import functools
import os
from fractions import Fraction

import cv2
import numpy as np
import pytest

from facetracks.jobs import clips

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


@pytest.fixture(scope="session")
def predictor():
    """The default model, loaded once: LandmarkPredictor keeps no state between calls."""
    from facetracks.models.inference import LandmarkPredictor
    return LandmarkPredictor.load()


# The tests' clips: explicit millisecond PTS, no B-frames (presentation order = decode order)
write_video = functools.partial(clips.write_video, time_base=Fraction(1, 1000), bframes=False)


def face_canvas(img: np.ndarray, pts: np.ndarray, size=(320, 240), at=(0, 0), bg: int = 110
                ) -> tuple[np.ndarray, np.ndarray]:
    """Paste a gray test image into a grey canvas at `at`; returns BGR canvas and shifted points."""
    canvas = np.full((size[1], size[0], 3), bg, np.uint8)
    h, w = img.shape[:2]
    canvas[at[1]:at[1] + h, at[0]:at[0] + w] = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return canvas, pts + np.array(at, np.float32)
