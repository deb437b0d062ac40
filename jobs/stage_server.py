"""The GPU stages in a process of their own: one `StageServer` per GPU, fed by CPU actors.

Why: a GPU actor that follows 16 streams on threads runs its batches on one more thread, and
every tensor call of a batch waits for the GIL while the streams run their Python. On the H100 a
`fast` detector call of 3.4 frames took 45 ms in the job against 5.8 ms for 4 frames alone, and
more streams made it slower (README, "On a GPU"). A server process has no stream threads: its
calls take what they take alone. The CPU actors (`AnnotateWorker` on a CPU, one core each, a few
streams each) decode, follow, batch their streams' calls (pipeline/batching.py) and cut the crops
themselves, so a call carries crops (12.5 KB a face), not frames; the server runs the network on
them (`LandmarkPredictor.forward_crops`) and, where the CPU actors have no OpenCV cascade (OpenCV 5),
the torch cascade on whole frames.

`StageServer` imports no Ray (`ray_runner.py` wraps it in an actor, one call at a time);
`RemoteStages` is what a CPU actor holds: the server's handle and the calls through it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import ray
import torch

from facetracks.models.inference import LandmarkPredictor
from facetracks.pipeline.profiles import make_detector


class StageServer:
    """The network (and the torch cascade) on this process's device, for crops and frames sent in."""

    def __init__(self, weights: bytes | str | None, detector: dict, predictor: dict, device: str | None = None):
        self.predictor = LandmarkPredictor.load(weights, device=device, **predictor)
        self.detector = make_detector({**detector, "backend": "torch"}, self.predictor.device)
        self.calls = {"forward": 0, "crops": 0, "forward_s": 0.0, "detect": 0, "frames": 0, "detect_s": 0.0}

    def forward(self, crops: np.ndarray, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
        t = time.perf_counter()
        out = self.predictor.forward_crops(crops, mirror)
        self.calls["forward"] += 1
        self.calls["crops"] += len(crops)
        self.calls["forward_s"] += time.perf_counter() - t
        return out

    def detect_batch(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        t = time.perf_counter()
        out = self.detector.detect_batch(grays)
        self.calls["detect"] += 1
        self.calls["frames"] += len(grays)
        self.calls["detect_s"] += time.perf_counter() - t
        return out

    def stats(self) -> dict:
        return dict(self.calls)

    def device(self) -> str:
        d = self.predictor.device
        name = f" ({torch.cuda.get_device_name()})" if d.type == "cuda" else ""
        return f"{d}{name}, {self.predictor.precision}"


@dataclass
class RemoteStages:
    """A CPU actor's way to its `StageServer`: the network always, the detector when `detect` is
    set (the CPU actor has no OpenCV cascade of its own). Sent to the actor with its handle."""
    server: object                  # the StageServer actor's handle
    detect: bool = False
    device: str = ""                # the server's (StageServer.device), for the run's summary

    # Ray hands arrays back read-only (zero-copy from its object store); the caller's fill them in place
    def forward(self, crops: np.ndarray, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
        out, contrast = ray.get(self.server.forward.remote(crops, mirror))
        return out.copy(), contrast.copy()

    def detect_batch(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        return [b.copy() for b in ray.get(self.server.detect_batch.remote(grays))]

    def detector(self) -> "RemoteDetector":
        return RemoteDetector(self)


@dataclass
class RemoteDetector:
    """A `FaceDetector` whose cascade runs in the server; batched calls go there in one message."""
    stages: RemoteStages

    def detect(self, gray: np.ndarray) -> np.ndarray:
        return self.stages.detect_batch([gray])[0]

    def detect_batch(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        return self.stages.detect_batch(grays)
