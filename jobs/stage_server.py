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

import threading
from dataclasses import dataclass

import numpy as np
import ray
import torch

from facetracks.models.inference import LandmarkPredictor
from facetracks.pipeline.batching import SharedStages
from facetracks.pipeline.profiles import make_detector

SERVER_CALLS = 32        # calls a server takes at once (Ray's max_concurrency): what one batch can merge


class StageServer:
    """The network (and the torch cascade) on this process's device, for crops and frames sent in.
    Calls that arrive together (the actor runs `SERVER_CALLS` at once) go through the GPU as one
    batch (`SharedStages`, the "forward" and multi-frame "detect" calls): a call that comes while
    a batch runs joins the next one, so a busy server runs fewer, larger passes and an idle one
    answers at once. Its threads only wait on each other; no stream's Python runs here."""

    def __init__(self, weights: bytes | str | None, detector: dict, predictor: dict, device: str | None = None):
        self.predictor = LandmarkPredictor.load(weights, device=device, **predictor)
        self.detector = make_detector({**detector, "backend": "torch"}, self.predictor.device)
        self.shared = SharedStages(self.detector, self.predictor)
        self._lock = threading.Lock()
        self.rpcs = {"forward": 0, "detect": 0}

    def _count(self, kind: str) -> None:
        with self._lock:
            self.rpcs[kind] += 1

    def forward(self, crops: np.ndarray, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
        self._count("forward")
        with self.shared.stream():
            return self.shared.call("forward", crops, mirror)

    def detect_batch(self, grays: list[np.ndarray]) -> list[np.ndarray]:
        self._count("detect")
        with self.shared.stream():
            return self.shared.call("detect", list(grays))

    def stats(self) -> dict:
        """Calls received (`forward`, `detect`), and the batches they made (BatchStats' fields:
        `landmark_calls`/`landmark_crops` are forward passes and crops, `detect_calls`/`detect_frames`
        the cascade's calls and frames, with their seconds)."""
        with self._lock:
            return {**self.rpcs, **self.shared.stats.to_dict()}

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
